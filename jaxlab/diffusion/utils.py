"""EMA of parameters, action normalisation to [-1, 1] and the epsilon-prediction loss."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlab.diffusion.schedules import Schedule, q_sample


def ema_decay(step, *, inv_gamma: float = 1.0, power: float = 0.75, min_decay: float = 0.0,
              max_decay: float = 0.9999):
    """diffusion_policy's EMA warm-up: decay = clip(1 - (1 + step / inv_gamma)^-power, min, max); step 0 -> 0."""
    step = jnp.maximum(jnp.asarray(step, jnp.float32) - 1.0, 0.0)
    d = 1.0 - (1.0 + step / inv_gamma) ** (-power)
    return jnp.where(step <= 0, 0.0, jnp.clip(d, min_decay, max_decay))


def ema_update(ema_params, params, decay):
    """ema <- decay * ema + (1 - decay) * params, leafwise."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


class Normalizer(NamedTuple):
    """Affine min-max scaler to [-1, 1] per feature. low, high: [D]."""

    low: jnp.ndarray
    high: jnp.ndarray

    def normalize(self, x):
        """x: [..., D] -> [..., D] in [-1, 1] for x in [low, high]."""
        return 2.0 * (x - self.low) / self.span - 1.0

    def unnormalize(self, y):
        """Inverse of :meth:`normalize`."""
        return (y + 1.0) * 0.5 * self.span + self.low

    @property
    def span(self):
        return jnp.maximum(self.high - self.low, 1e-6)


def fit_normalizer(x_nd, *, low=None, high=None) -> Normalizer:
    """Min-max :class:`Normalizer` from data ``x_nd: [N, D]`` (or from given bounds)."""
    x_nd = jnp.asarray(x_nd)
    if x_nd.ndim != 2:
        raise ValueError(f"x_nd must be [N, D], got shape {x_nd.shape}")
    lo = jnp.min(x_nd, axis=0) if low is None else jnp.broadcast_to(jnp.asarray(low, jnp.float32), x_nd.shape[1:])
    hi = jnp.max(x_nd, axis=0) if high is None else jnp.broadcast_to(jnp.asarray(high, jnp.float32), x_nd.shape[1:])
    return Normalizer(lo.astype(jnp.float32), hi.astype(jnp.float32))


def eps_loss(eps_fn, schedule: Schedule, key, x0):
    """Epsilon-prediction DDPM loss E_{t, eps} ||eps - eps_fn(x_t, t)||^2 (mean over all elements).

    Args:
      eps_fn: (x_t [B, ...], t [B]) -> eps [B, ...]; x0: [B, ...] clean (normalised) samples.
    Returns:
      scalar loss.
    """
    k_t, k_e = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, schedule.num_steps)
    eps = jax.random.normal(k_e, x0.shape)
    return jnp.mean((eps_fn(q_sample(schedule, x0, t, eps), t) - eps) ** 2)
