"""Self-compression: tag parsing / clamping, the compression reward (Eq. 8, Alg. 1), per-step GRPO
advantages normalised across the steps of a group, and the clipped policy loss on (action, c) pairs.

The c chosen at step t resizes the history image seen at step t+1; its reward lambda*ln(c_t) is credited
to step t (the sample that chose it).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxlab.rl import group_advantages, grpo_loss

C_SET = (1.0, 1.2, 1.5, 2.0, 3.0)
C_MIN, C_MAX = 1.0, 5.0
_TAG_RE = re.compile(r"<compression>(.*?)</compression>", re.S)


class CompressionHParams(NamedTuple):
    lam: float = 0.01     # lambda, weight of ln c
    every_k: int = 5      # K: the term is on at iterations with iter % K == 0
    clip_eps: float = 0.2


def parse_compression(text: str, *, c_min: float = C_MIN, c_max: float = C_MAX) -> float:
    """Reads `<compression>c</compression>` from a response (the paper's projection.py):
    a missing or garbled tag, NaN or inf -> 1.0; values clamped to [c_min, c_max].

    >>> parse_compression("go <compression>1.2</compression>"), parse_compression("<compression>9</compression>")
    (1.2, 5.0)
    """
    m = _TAG_RE.search(str(text))
    if not m:
        return 1.0
    try:
        c = float(m.group(1).strip())
    except ValueError:
        return 1.0
    if not math.isfinite(c):
        return 1.0
    return float(min(max(c, c_min), c_max))


def c_index(c: float) -> int:
    """Index of c in C_SET; raises ValueError for a c outside the set."""
    for i, v in enumerate(C_SET):
        if abs(float(c) - v) < 1e-9:
            return i
    raise ValueError(f"c: expected one of {C_SET}, got {c}")


def compression_reward(c_n, success_n, *, iteration: int, hp: CompressionHParams = CompressionHParams()):
    """lambda * ln(c_t) * 1[success] * 1[iteration % K == 0]. c_n: [N] >= 1; success_n: [N] bool. -> [N]."""
    if hp.every_k < 1:
        raise ValueError(f"every_k: expected K >= 1, got {hp.every_k}")
    c_n = jnp.asarray(c_n, jnp.float32)
    on = 1.0 if iteration % hp.every_k == 0 else 0.0
    return hp.lam * on * jnp.log(c_n) * jnp.asarray(success_n, jnp.float32)


def step_scores(return_n, c_n, success_n, *, iteration: int, hp: CompressionHParams = CompressionHParams()):
    """Per-step score r~ = episode return + lambda ln(c_t) 1[success] 1[on schedule]. All [N] -> [N].

    verl-agent's GRPO gives every step of an episode the episode's return; the compression bonus is the
    step's own (the c chosen at that step)."""
    return jnp.asarray(return_n, jnp.float32) + compression_reward(c_n, success_n, iteration=iteration, hp=hp)


def step_advantages(scores_n, group_n, valid_n, *, num_groups: int, eps: float = 1e-6):
    """GRPO advantages with mean/std over ALL valid steps of a group (compute_mean_std_cross_steps).

    scores_n: [N]; group_n: [N] int in [0, num_groups); valid_n: [N] bool (padding steps get 0).
    Returns adv_n [N] (zero-sum within each group; 0, not NaN, when a group's scores are all equal).
    """
    valid = jnp.asarray(valid_n, bool)
    gid = jnp.where(valid, jnp.asarray(group_n), num_groups)   # padding -> an extra, ignored group
    adv = group_advantages(jnp.asarray(scores_n, jnp.float32), gid, num_groups=num_groups + 1, eps=eps)
    return jnp.where(valid, adv, 0.0)


def policy_loss(logp_act_n, logp_c_n, old_logp_act_n, old_logp_c_n, adv_n, valid_n, *,
                clip_eps: float = 0.2, learn_c: bool = True):
    """Clipped GRPO surrogate on the two decisions of a step (action token, compression token), token-mean
    over valid steps, no KL. All inputs [N]. Returns (loss, metrics)."""
    valid = jnp.asarray(valid_n, bool)
    logp = jnp.stack([logp_act_n, logp_c_n], axis=1)
    old = jnp.stack([old_logp_act_n, old_logp_c_n], axis=1)
    mask = jnp.stack([valid, valid & learn_c], axis=1)
    return grpo_loss(logp, old, adv_n, mask, clip_eps=clip_eps, agg="token-mean")


def sample_c_index(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random c indices (behaviour-cloning augmentation). -> int [n]."""
    return rng.integers(0, len(C_SET), size=n)
