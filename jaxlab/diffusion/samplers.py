"""DDPM ancestral and DDIM reverse steps, and whole reverse chains in one ``lax.scan``.

The single steps follow diffusers' ``DDPMScheduler.step`` (``variance_type="fixed_small"``,
``prediction_type="epsilon"``) and ``DDIMScheduler.step`` (``set_alpha_to_one=True``,
``timestep_spacing="leading"``) exactly; the tests check this against a NumPy transcription.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.diffusion.schedules import Schedule

EpsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]  # (x_t [B, ...], t [B]) -> eps [B, ...]


def _abar_prev(schedule: Schedule, t_prev):
    """abar at ``t_prev``, or 1 when ``t_prev < 0`` (``set_alpha_to_one``)."""
    t_prev = jnp.asarray(t_prev)
    return jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 1.0)


def predict_x0(schedule: Schedule, x_t, t, eps, *, clip_sample: bool = True, clip_range: float = 1.0):
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), optionally clipped to [-clip_range, clip_range]."""
    abar_t = schedule.alphas_cumprod[t]
    x0 = (x_t - jnp.sqrt(1.0 - abar_t) * eps) / jnp.sqrt(abar_t)
    return jnp.clip(x0, -clip_range, clip_range) if clip_sample else x0


def ddpm_step(schedule: Schedule, x_t, t, eps, noise, *, clip_sample: bool = True, clip_range: float = 1.0):
    """One DDPM ancestral step x_t -> x_{t-1} with the posterior mean and fixed-small variance.

    mean = sqrt(abar_{t-1}) beta_t / (1-abar_t) x0_hat + sqrt(alpha_t) (1-abar_{t-1}) / (1-abar_t) x_t,
    var  = (1-abar_{t-1}) / (1-abar_t) beta_t (no noise at t = 0).

    Args:
      x_t, eps, noise: same shape [...]; t: scalar int timestep in [0, T).
    Returns:
      x_{t-1}: like x_t.
    """
    abar_t = schedule.alphas_cumprod[t]
    abar_prev = _abar_prev(schedule, t - 1)
    alpha_t = abar_t / abar_prev
    beta_t = 1.0 - alpha_t
    x0 = predict_x0(schedule, x_t, t, eps, clip_sample=clip_sample, clip_range=clip_range)
    mean = (jnp.sqrt(abar_prev) * beta_t / (1.0 - abar_t)) * x0 + (
        jnp.sqrt(alpha_t) * (1.0 - abar_prev) / (1.0 - abar_t)) * x_t
    var = jnp.maximum((1.0 - abar_prev) / (1.0 - abar_t) * beta_t, 1e-20)
    return mean + jnp.where(t > 0, jnp.sqrt(var), 0.0) * noise


def ddim_timesteps(num_train_steps: int, num_inference_steps: int) -> np.ndarray:
    """Leading spacing: ``t_k = k * (T // n)`` for k = n-1, ..., 0. Returns ``[n]`` int32 (descending)."""
    if not 1 <= num_inference_steps <= num_train_steps:
        raise ValueError(f"num_inference_steps must be in [1, {num_train_steps}], got {num_inference_steps}")
    ratio = num_train_steps // num_inference_steps
    return (np.arange(num_inference_steps) * ratio)[::-1].astype(np.int32)


def ddim_step(schedule: Schedule, x_t, t, t_prev, eps, noise=None, *, eta: float = 0.0,
              clip_sample: bool = True, clip_range: float = 1.0):
    """One DDIM step x_t -> x_{t_prev} (``t_prev < 0`` means the final step, abar_prev = 1).

    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma noise,
    sigma = eta * sqrt((1-abar_prev)/(1-abar_t) (1 - abar_t/abar_prev)).

    Args:
      x_t, eps, noise: [...]; t, t_prev: scalar ints. ``noise`` may be None when eta == 0.
    Returns:
      x_{t_prev}: like x_t.
    """
    abar_t = schedule.alphas_cumprod[t]
    abar_prev = _abar_prev(schedule, t_prev)
    x0 = predict_x0(schedule, x_t, t, eps, clip_sample=clip_sample, clip_range=clip_range)
    var = (1.0 - abar_prev) / (1.0 - abar_t) * (1.0 - abar_t / abar_prev)
    sigma = eta * jnp.sqrt(var)
    out = jnp.sqrt(abar_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma**2, 0.0)) * eps
    if noise is not None:
        out = out + sigma * noise
    return out


def sample_ddpm(eps_fn: EpsFn, schedule: Schedule, key, shape, *, clip_sample: bool = True,
                clip_range: float = 1.0):
    """Full DDPM ancestral chain t = T-1 .. 0 in one ``lax.scan``.

    Args:
      eps_fn: (x_t [B, ...], t [B] int32) -> eps [B, ...]; shape: (B, ...) of the samples.
    Returns:
      x_0: [B, ...].
    """
    k_init, k_steps = jax.random.split(key)
    x_T = jax.random.normal(k_init, shape)
    ts = jnp.arange(schedule.num_steps - 1, -1, -1, dtype=jnp.int32)
    keys = jax.random.split(k_steps, schedule.num_steps)

    def body(x, inp):
        t, k = inp
        eps = eps_fn(x, jnp.full((shape[0],), t, jnp.int32))
        x = ddpm_step(schedule, x, t, eps, jax.random.normal(k, shape), clip_sample=clip_sample,
                      clip_range=clip_range)
        return x, None

    x0, _ = jax.lax.scan(body, x_T, (ts, keys))
    return x0


def sample_ddim(eps_fn: EpsFn, schedule: Schedule, key, shape, *, num_inference_steps: int = 10,
                eta: float = 0.0, clip_sample: bool = True, clip_range: float = 1.0, x_T=None):
    """Full DDIM chain (leading spacing) in one ``lax.scan``; ``x_T`` may be given (else drawn from ``key``).

    Returns:
      x_0: [B, ...] with ``shape``.
    """
    k_init, k_steps = jax.random.split(key)
    if x_T is None:
        x_T = jax.random.normal(k_init, shape)
    ts = jnp.asarray(ddim_timesteps(schedule.num_steps, num_inference_steps))
    ratio = schedule.num_steps // num_inference_steps
    keys = jax.random.split(k_steps, num_inference_steps)

    def body(x, inp):
        t, k = inp
        eps = eps_fn(x, jnp.full((shape[0],), t, jnp.int32))
        noise = jax.random.normal(k, shape) if eta > 0 else None
        x = ddim_step(schedule, x, t, t - ratio, eps, noise, eta=eta, clip_sample=clip_sample,
                      clip_range=clip_range)
        return x, None

    x0, _ = jax.lax.scan(body, x_T, (ts, keys))
    return x0


def ddim_invert(eps_fn: EpsFn, schedule: Schedule, x0, *, num_inference_steps: int = 10,
                fixed_point_iters: int = 5):
    """Deterministic DDIM encoding x_0 -> x_T, the inverse of ``sample_ddim`` (eta = 0, no clipping).

    Each step solves x_t = sqrt(abar_t) x0_hat(x_t) + sqrt(1 - abar_t) eps(x_t, t) with
    x0_hat(x_t) = (x_prev - sqrt(1 - abar_prev) eps(x_t, t)) / sqrt(abar_prev) by fixed-point iteration
    (``fixed_point_iters=0`` gives the usual approximation eps(x_prev, t)). Returns x_T like x0.
    """
    ts = jnp.asarray(ddim_timesteps(schedule.num_steps, num_inference_steps)[::-1].copy())
    ratio = schedule.num_steps // num_inference_steps

    def body(x_prev, t):
        abar_p = _abar_prev(schedule, t - ratio)
        abar_t = schedule.alphas_cumprod[t]
        tb = jnp.full((x_prev.shape[0],), t, jnp.int32)

        def update(x_t, _):
            eps = eps_fn(x_t, tb)
            x0_hat = (x_prev - jnp.sqrt(1.0 - abar_p) * eps) / jnp.sqrt(abar_p)
            return jnp.sqrt(abar_t) * x0_hat + jnp.sqrt(1.0 - abar_t) * eps, None

        x_t, _ = update(x_prev, None)
        x_t, _ = jax.lax.scan(update, x_t, None, length=fixed_point_iters)
        return x_t, None

    xT, _ = jax.lax.scan(body, x0, ts)
    return xT
