"""Small shared Flax building blocks."""

from typing import Callable, Sequence

import flax.linen as nn


class MLP(nn.Module):
    """``x [..., d] -> [..., out]``: Dense + `activation` per hidden width, then a linear Dense."""
    hidden: Sequence[int]
    out: int
    activation: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = self.activation(nn.Dense(h)(x))
        return nn.Dense(self.out)(x)
