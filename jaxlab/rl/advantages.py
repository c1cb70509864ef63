"""Group-relative advantages (GRPO, Dr. GRPO), written on explicit group ids so other groupings
(e.g. Dr. MAS's per-agent statistics) are one argument away.

Pluggable interface used by the trainer: `advantage_fn(rewards_pg) -> adv_pg` ([P prompts, G samples]).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


SINGLETON_RULES = ("zero", "raw")


def group_advantages(rewards_n, group_ids_n, *, num_groups: int, eps: float = 1e-6, ddof: int = 1,
                     scale: bool = True, valid_n=None, singleton: str = "zero"):
    """A_i = (r_i - mean_g(i)) / (std_g(i) + eps) within each group (scale=False: r_i - mean only).

    Only valid rows (`valid_n`, default all) enter the group statistics; invalid rows get A = 0 and
    never change any other row's advantage.

    Args:
      rewards_n: [N] float rewards.
      group_ids_n: [N] int in [0, num_groups).
      num_groups: static number of groups.
      eps: added to the std (all-equal rewards give exactly 0, never NaN).
      ddof: std degrees of freedom (1: torch/verl/tunix default; 0: population std). Groups with
        n <= ddof get std 0.
      scale: divide by the std (GRPO) or not (Dr. GRPO).
      valid_n: optional [N] bool; False rows (absent steps) are left out of every statistic and
        get advantage 0.
      singleton: rule for a group with exactly one valid row: "zero" (A = 0, the default and the
        behaviour of r - mean) or "raw" (A = r, verl's `compute_grpo_outcome_advantage` quirk:
        mean 0 and std 1 for a singleton).
    Returns:
      adv_n: [N], zero mean within every group of >= 2 valid rows.

    >>> [round(float(a), 3) for a in group_advantages(jnp.array([1., 0., 3., 3.]), jnp.array([0, 0, 1, 1]), num_groups=2)]
    [0.707, -0.707, 0.0, 0.0]
    """
    rewards_n = jnp.asarray(rewards_n)
    group_ids_n = jnp.asarray(group_ids_n)
    if rewards_n.ndim != 1 or group_ids_n.shape != rewards_n.shape:
        raise ValueError(f"group_ids_n: expected shape {rewards_n.shape} matching a 1-D rewards_n, "
                         f"got rewards {rewards_n.shape} and ids {group_ids_n.shape}")
    if eps < 0:
        raise ValueError(f"eps: expected >= 0, got {eps}")
    if ddof < 0:
        raise ValueError(f"ddof: expected >= 0, got {ddof}")
    if singleton not in SINGLETON_RULES:
        raise ValueError(f"singleton: expected one of {SINGLETON_RULES}, got {singleton!r}")
    r = rewards_n.astype(jnp.float32) if not jnp.issubdtype(rewards_n.dtype, jnp.floating) else rewards_n
    seg = functools.partial(jax.ops.segment_sum, segment_ids=group_ids_n, num_segments=num_groups)
    if valid_n is None:                             # every row present: the masked path with an all-true mask
        valid_n = jnp.ones(rewards_n.shape, bool)
    valid_n = jnp.asarray(valid_n)
    if valid_n.shape != rewards_n.shape:
        raise ValueError(f"valid_n: expected shape {rewards_n.shape}, got {valid_n.shape}")
    v = valid_n.astype(bool)
    w = v.astype(r.dtype)
    r0 = jnp.where(v, r, 0.0)                       # absent rows may hold anything (NaN included)
    n = seg(w)
    mean = seg(r0) / jnp.maximum(n, 1.0)
    dev = jnp.where(v, r0 - mean[group_ids_n], 0.0)
    adv = dev
    if scale:
        var = seg(jnp.square(dev)) / jnp.maximum(n - ddof, 1.0)
        std = jnp.where(n > ddof, jnp.sqrt(var), 0.0)
        adv = dev / (std[group_ids_n] + eps)
    if singleton == "raw":
        adv = jnp.where(n[group_ids_n] == 1, r0, adv)
    return jnp.where(v, adv, 0.0)


def grpo_advantages(rewards_pg, *, eps: float = 1e-6, ddof: int = 1, scale: bool = True):
    """GRPO advantages for a [P, G] reward array (one group per prompt row). Returns [P, G]."""
    rewards_pg = jnp.asarray(rewards_pg)
    if rewards_pg.ndim != 2:
        raise ValueError(f"rewards_pg: expected [P, G], got shape {rewards_pg.shape}")
    P, G = rewards_pg.shape
    ids = jnp.repeat(jnp.arange(P), G)
    return group_advantages(rewards_pg.reshape(-1), ids, num_groups=P, eps=eps, ddof=ddof,
                            scale=scale).reshape(P, G)


def dr_grpo_advantages(rewards_pg):
    """Dr. GRPO: r - group mean, no std scaling. [P, G] -> [P, G]."""
    return grpo_advantages(rewards_pg, scale=False)


ADVANTAGE_FNS = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages}
