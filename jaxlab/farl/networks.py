"""Small MLPs: Gaussian task/recovery policy, value, world-model ensemble, twin risk critics (flax.linen)."""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.core import nets


MLP = functools.partial(nets.MLP, activation=nn.tanh)   # tanh hidden layers (PPO networks)


class GaussianPolicy(nn.Module):
    """mean = tanh(MLP(obs)) in [-1, 1]^A, state-independent log std. obs [..., D] -> (mean, log_std) [..., A]."""
    action_dim: int = 2
    hidden: Sequence[int] = (64, 64)
    init_log_std: float = -1.0

    @nn.compact
    def __call__(self, obs):
        mean = jnp.tanh(MLP(self.hidden, self.action_dim)(obs))
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


def gaussian_logp(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(action; mean, exp(log_std)^2) summed over the last axis. [..., A] -> [...]."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


class Value(nn.Module):
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden, 1)(obs)[..., 0]


class WorldModelMember(nn.Module):
    """One ensemble member: (obs, action) -> (delta obs [D], reward [], failure logit [])."""
    obs_dim: int = 12
    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, obs, action):
        y = MLP(self.hidden, self.obs_dim + 2)(jnp.concatenate([obs, action], -1))
        return y[..., : self.obs_dim], y[..., self.obs_dim], y[..., self.obs_dim + 1]


class TwinRisk(nn.Module):
    """Recovery RL's twin safety critics: (obs, action) -> sigmoid risks [..., 2]."""
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)
        return jax.nn.sigmoid(jnp.stack([MLP(self.hidden, 1)(x)[..., 0], MLP(self.hidden, 1)(x)[..., 0]], -1))
