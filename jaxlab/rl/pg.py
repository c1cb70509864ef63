"""Policy-gradient primitives shared by every paper: the PPO clipped surrogate (with dual clip), the masked PPO
policy loss, GAE and masked advantage normalisation. Pure functions, arrays in, arrays out.

`jaxlab.rl.losses` (the LM's GRPO family) and `jaxlab.farl` (PPO over Brax envs) both build on these, so the
surrogate exists once.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

REDUCTIONS = ("mean", "sum", "none")


class PPOHParams(NamedTuple):
    """Hyperparameters of `ppo_policy_loss` (one default each)."""
    clip_eps: float = 0.2
    clip_eps_high: Optional[float] = None
    dual_clip: Optional[float] = None


class GAEHParams(NamedTuple):
    """Hyperparameters of `gae`."""
    gamma: float = 0.99
    lam: float = 0.95


def check_clip(clip_eps: float, clip_eps_high: Optional[float] = None, dual_clip: Optional[float] = None) -> None:
    """ValueError naming the argument when a PPO clip range is invalid."""
    if not 0 <= clip_eps < 1:
        raise ValueError(f"clip_eps: expected the lower clip range in [0, 1), got {clip_eps}")
    if clip_eps_high is not None and clip_eps_high < 0:
        raise ValueError(f"clip_eps_high: expected >= 0, got {clip_eps_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip: expected a constant > 1 (e.g. 3), got {dual_clip}")


def clipped_surrogate(ratio, adv, *, clip_eps: float = 0.2, clip_eps_high: Optional[float] = None,
                      dual_clip: Optional[float] = None):
    """PPO's clipped surrogate per element, with Ye et al.'s dual clip for negative advantages.

    surr = min(r A, clip(r, 1 - eps_low, 1 + eps_high) A); with dual_clip = c: surr = max(surr, c A) where A < 0.

    Args:
      ratio: [...] importance ratios pi / pi_old.
      adv: advantages broadcastable to `ratio`.
      clip_eps: lower clip range eps_low (and the upper one unless `clip_eps_high` is given).
      clip_eps_high: upper clip range (DAPO's clip-higher); default `clip_eps`.
      dual_clip: constant c > 1, or None.
    Returns:
      (surr, clipped): [...] surrogate (to be maximised) and a bool mask of the elements where a clip was active.

    >>> s, c = clipped_surrogate(jnp.array([1.5, 0.5]), jnp.array([1.0, 1.0]), clip_eps=0.2)
    >>> [round(float(v), 3) for v in s], c.tolist()
    ([1.2, 0.5], [True, False])
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    s1 = ratio * adv
    s2 = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + eps_high) * adv
    surr = jnp.minimum(s1, s2)
    clipped = s2 < s1
    if dual_clip is not None:
        s3 = dual_clip * adv
        dual = (adv < 0) & (s3 > surr)
        surr = jnp.where(dual, s3, surr)
        clipped = clipped | dual
    return surr, clipped


def masked_reduce(x, mask=None, *, reduction: str = "mean"):
    """Reduces per-element values: "mean" = sum(mask x) / max(sum(mask), 1), "sum" = sum(mask x), "none" = mask x.

    Args:
      x: [...] values; mask: same shape (1 keeps, 0 drops) or None (all kept).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    if mask is None:
        mask = jnp.ones_like(x)
    if reduction == "none":
        return mask * x
    total = jnp.sum(mask * x)
    return total if reduction == "sum" else total / jnp.maximum(jnp.sum(mask), 1.0)


def ppo_policy_loss(logp_n, old_logp_n, adv_n, mask_n=None, *, clip_eps: float = 0.2,
                    clip_eps_high: Optional[float] = None, dual_clip: Optional[float] = None,
                    reduction: str = "mean"):
    """Masked PPO policy loss: -reduce(mask * clipped_surrogate(exp(logp - old_logp), A)).

    Args:
      logp_n: [N] log-probs of the taken actions under the current policy.
      old_logp_n: [N] log-probs under the behaviour policy.
      adv_n: [N] advantages.
      mask_n: [N] 1 for steps that enter the loss (e.g. 0 on FARL's recovery steps), default all.
      clip_eps, clip_eps_high, dual_clip: see `clipped_surrogate`.
      reduction: "mean" (over the mask: -sum(mask surr) / max(sum(mask), 1)), "sum" or "none" ([N]).
    Returns:
      scalar loss, or [N] with reduction="none".
    """
    check_clip(clip_eps, clip_eps_high, dual_clip)
    ratio = jnp.exp(logp_n - old_logp_n)
    surr, _ = clipped_surrogate(ratio, adv_n, clip_eps=clip_eps, clip_eps_high=clip_eps_high, dual_clip=dual_clip)
    return -masked_reduce(surr, mask_n, reduction=reduction)


def gae(reward_t, value_t, next_value_t, done_t, *, gamma: float, lam: float):
    """Generalised advantage estimation, time-major.

    delta_t = r_t + gamma next_value_t - V_t (next_value_t already 0 on termination and V(terminal obs) on
    truncation); A_t = delta_t + gamma lam (1 - done_t) A_{t+1}.

    Args:
      reward_t, value_t, next_value_t, done_t: [T, ...] (done_t 1 where an episode ended at step t).
      gamma: discount; lam: GAE lambda (lam = 1 with zero values gives discounted Monte Carlo returns).
    Returns:
      (advantages [T, ...], returns = advantages + value_t [T, ...]).
    """
    delta = reward_t + gamma * next_value_t - value_t

    def body(a_next, x):
        d, dn = x
        a = d + gamma * lam * (1.0 - dn) * a_next
        return a, a

    _, adv = jax.lax.scan(body, jnp.zeros_like(delta[0]), (delta, done_t), reverse=True)
    return adv, adv + value_t


def normalize_advantages(adv, mask=None, *, eps: float = 1e-8):
    """(A - mean) / (std + eps) with the mean and the population std over the masked elements.

    Args:
      adv: [...] advantages; mask: same shape (1 counts, 0 ignored) or None. Masked-out elements are
        transformed too (they are usually dropped by the loss's own mask).
    Returns:
      [...] normalised advantages.
    """
    if mask is None:
        return (adv - adv.mean()) / (adv.std() + eps)
    m = mask
    n = jnp.maximum(m.sum(), 1.0)
    mu = jnp.sum(adv * m) / n
    sd = jnp.sqrt(jnp.sum(m * (adv - mu) ** 2) / n) + eps
    return (adv - mu) / sd
