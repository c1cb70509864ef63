"""Conditional denoisers: a small 1-D temporal U-Net (GroupNorm + FiLM, Chi et al. 2023's ConditionalUnet1D
in miniature) and an MLP denoiser with FiLM. Both map (x_t [B, Tp, A], t [B], cond [B, C]) -> eps [B, Tp, A].
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def sinusoidal_embedding(t_b: jnp.ndarray, dim: int) -> jnp.ndarray:
    """Transformer-style sinusoidal embedding of timesteps. t_b: [B]; returns [B, dim] (dim even)."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
    arg = jnp.asarray(t_b, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class FiLM(nn.Module):
    """Feature-wise linear modulation y = (1 + gamma(c)) * x + beta(c); gamma, beta zero-initialised,
    so the layer is the identity at initialisation. x: [B, ..., F]; c: [B, C]."""

    features: int

    @nn.compact
    def __call__(self, x, c):
        gb = nn.Dense(2 * self.features, kernel_init=nn.initializers.zeros, name="proj")(c)
        gamma, beta = jnp.split(gb, 2, axis=-1)
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (self.features,)
        return (1.0 + gamma.reshape(shape)) * x + beta.reshape(shape)


def _groups(features: int, n_groups: int) -> int:
    g = min(n_groups, features)
    while features % g:
        g -= 1
    return g


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish on [B, T, F]."""

    features: int
    kernel_size: int = 3
    n_groups: int = 8

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (self.kernel_size,), padding="SAME")(x)
        x = nn.GroupNorm(num_groups=_groups(self.features, self.n_groups))(x)
        return x * jnp.tanh(nn.softplus(x))


class CondResBlock1D(nn.Module):
    """Residual block with FiLM conditioning between the two conv blocks (diffusion_policy style)."""

    features: int
    kernel_size: int = 3
    n_groups: int = 8

    @nn.compact
    def __call__(self, x, c):
        h = Conv1dBlock(self.features, self.kernel_size, self.n_groups)(x)
        h = FiLM(self.features)(h, c)
        h = Conv1dBlock(self.features, self.kernel_size, self.n_groups)(h)
        res = x if x.shape[-1] == self.features else nn.Conv(self.features, (1,))(x)
        return h + res


class ConditionalUnet1D(nn.Module):
    """Small temporal U-Net. x: [B, Tp, A] (Tp divisible by 2**(len(down_dims)-1)); t: [B]; cond: [B, C].
    Returns eps: [B, Tp, A]."""

    down_dims: Sequence[int] = (32, 64)
    kernel_size: int = 3
    n_groups: int = 8
    time_dim: int = 32

    @nn.compact
    def __call__(self, x, t, cond):
        if x.ndim != 3:
            raise ValueError(f"x must be [B, Tp, A], got shape {x.shape}")
        temb = sinusoidal_embedding(t, self.time_dim)
        temb = nn.Dense(self.time_dim * 4)(temb)
        temb = nn.Dense(self.time_dim)(temb * jnp.tanh(nn.softplus(temb)))
        c = jnp.concatenate([temb, cond], axis=-1)
        blk = lambda f: CondResBlock1D(f, self.kernel_size, self.n_groups)  # noqa: E731
        h, skips = x, []
        for i, f in enumerate(self.down_dims):
            h = blk(f)(h, c)
            h = blk(f)(h, c)
            skips.append(h)
            if i < len(self.down_dims) - 1:
                h = nn.Conv(f, (3,), strides=(2,), padding="SAME")(h)
        h = blk(self.down_dims[-1])(h, c)
        h = blk(self.down_dims[-1])(h, c)
        for i, f in reversed(list(enumerate(self.down_dims))):
            h = jnp.concatenate([h, skips[i]], axis=-1)
            out_f = self.down_dims[max(i - 1, 0)]
            h = blk(out_f)(h, c)
            h = blk(out_f)(h, c)
            if i > 0:
                h = nn.ConvTranspose(out_f, (4,), strides=(2,), padding="SAME")(h)
        h = Conv1dBlock(self.down_dims[0], self.kernel_size, self.n_groups)(h)
        return nn.Conv(x.shape[-1], (1,))(h)


class MLPDenoiser(nn.Module):
    """MLP denoiser with FiLM from (cond, time embedding) after every hidden layer.
    x: [B, Tp, A]; t: [B]; cond: [B, C]. Returns eps: [B, Tp, A]."""

    hidden: Sequence[int] = (128, 128, 128)
    time_dim: int = 32

    @nn.compact
    def __call__(self, x, t, cond):
        if x.ndim != 3:
            raise ValueError(f"x must be [B, Tp, A], got shape {x.shape}")
        B = x.shape[0]
        c = jnp.concatenate([sinusoidal_embedding(t, self.time_dim), cond], axis=-1)
        c = nn.Dense(self.time_dim * 2)(c)
        c = c * jnp.tanh(nn.softplus(c))
        h = x.reshape(B, -1)
        for f in self.hidden:
            h = nn.Dense(f)(h)
            h = FiLM(f)(h, c)
            h = h * jnp.tanh(nn.softplus(h))
        return nn.Dense(x.shape[1] * x.shape[2])(h).reshape(x.shape)
