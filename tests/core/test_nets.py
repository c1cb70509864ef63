"""jaxlab.core.nets.MLP equals its hand-written formula, for each activation the packages use."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.nets import MLP
from jaxlab.farl.networks import MLP as FarlMLP
from jaxlab.l2d.train import MLP as L2dMLP


def _manual(params, x, act):
    p = params["params"]
    h = act(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    h = act(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
    return h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]


def test_mlp_matches_formula_and_package_aliases_keep_their_activation():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    for module, act in ((MLP((8, 6), 3), nn.relu), (MLP((8, 6), 3, activation=nn.tanh), jnp.tanh),
                        (FarlMLP((8, 6), 3), jnp.tanh), (L2dMLP((8, 6), 3), nn.relu)):
        params = module.init(jax.random.PRNGKey(1), x)
        np.testing.assert_allclose(module.apply(params, x), _manual(params, x, act), atol=1e-5)
    params = MLP((8, 6), 3).init(jax.random.PRNGKey(1), x)
    assert not np.allclose(_manual(params, x, nn.relu), _manual(params, x, jnp.tanh))
