"""Noise schedules and the forward (noising) process of DDPM.

Conventions follow diffusers' ``DDPMScheduler``: timesteps are ``t in {0, ..., T-1}``, ``betas[t]`` is the
variance added by step ``t`` and ``alphas_cumprod[t] = prod_{s<=t} (1 - betas[s])`` (so ``t=0`` is already
slightly noisy). Reference: Ho et al. 2020 (DDPM); Nichol & Dhariwal 2021 (cosine schedule).
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Schedule(NamedTuple):
    """A discrete noise schedule. All fields are ``[T]`` float32 arrays."""

    betas: jnp.ndarray
    alphas: jnp.ndarray
    alphas_cumprod: jnp.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")


def cosine_betas(num_steps: int, *, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine ("squaredcos_cap_v2") betas.

    abar(u) = cos^2(((u + s) / (1 + s)) * pi / 2),  beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta).

    Args:
      num_steps: T.
    Returns:
      betas: [T] float64 numpy array.
    """
    _check_steps(num_steps)
    abar = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    i = np.arange(num_steps, dtype=np.float64)
    return np.minimum(1.0 - abar((i + 1) / num_steps) / abar(i / num_steps), max_beta)


def linear_betas(num_steps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linear betas ``linspace(beta_start, beta_end, T)`` (DDPM paper). Returns ``[T]`` float64."""
    _check_steps(num_steps)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def make_schedule(num_steps: int = 100, kind: str = "cosine") -> Schedule:
    """Builds a :class:`Schedule` of ``kind`` in {"cosine", "linear"} with ``num_steps`` steps."""
    if kind == "cosine":
        betas = cosine_betas(num_steps)
    elif kind == "linear":
        betas = linear_betas(num_steps)
    else:
        raise ValueError(f"kind must be 'cosine' or 'linear', got {kind!r}")
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return Schedule(f32(betas), f32(alphas), f32(abar))


def _bcast(v_b: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.reshape(v_b, v_b.shape + (1,) * (x.ndim - v_b.ndim))


def q_sample(schedule: Schedule, x0: jnp.ndarray, t_b: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    """Forward noising x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.

    Args:
      x0: [B, ...] clean samples; t_b: [B] (or scalar) integer timesteps in [0, T); eps: like x0.
    Returns:
      x_t: like x0.
    """
    abar = schedule.alphas_cumprod[jnp.asarray(t_b)]
    abar = _bcast(abar, x0)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps
