"""ARS losses (arXiv 2601.17467, Eq. 5) and the public code's SupCon-style variant, plus the head g.

Shaping head: g(u) = W u with W [k, d], k <= d, no bias (so g(0) = 0).

Eq. 5, per anchor z = g(u), one sampled positive z+ and all negatives z-_j, s = cosine:
    L = -s(z, z+)/tau + log sum_{z' in {z+} u Z-} exp(s(z, z')/tau) = log(1 + sum_j exp((s-_j - s+)/tau)) >= 0,
    exactly 0 without negatives; anchors without a positive are masked out (weight 0, never NaN).
SupCon-style (the repo's in-batch loss): for each embedding i in a batch, positives = same id and same
agreement label (the original counts as agreeing), negatives = same id with the other label plus every
embedding of another id; L_i = LSE_{j != i}(s_ij/tau) - LSE_{j in P(i)}(s_ij/tau), masked where P(i) = {}.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

_EPS = 1e-8


def _check_tau(tau) -> None:
    """tau > 0 (checked for concrete values; a traced tau, e.g. one jitted head program reused across the
    tau grid, is checked by the caller before tracing)."""
    if not isinstance(tau, jax.core.Tracer) and not float(tau) > 0:
        raise ValueError(f"tau: expected > 0, got {tau}")


class ARSHParams(NamedTuple):
    """Typed hyperparameters of the shaping head (hashable; static under jit)."""
    k: int = 32                 # output dimension of g, k <= d
    tau: float = 0.1            # temperature of the cosine logits
    lr: float = 1e-3            # Adam learning rate (cosine decay to lr * end_lr_frac)
    weight_decay: float = 1e-5
    epochs: int = 100
    batch_size: int = 128       # anchors per step (Eq. 5) / problems per step (SupCon)
    loss: str = "eq5"           # "eq5" (paper) or "supcon" (public code)
    reg: float = 0.0            # lambda ||W||_F^2 (the repo uses 1e-3 with its SupCon loss)
    end_lr_frac: float = 0.01


def init_head(key: jax.Array, d: int, k: int) -> jax.Array:
    """W [k, d] with entries N(0, 1/d) (bias-free linear head). Raises ValueError unless 1 <= k <= d."""
    if not 1 <= int(k) <= int(d):
        raise ValueError(f"k: expected 1 <= k <= d = {d}, got {k}")
    return jax.random.normal(key, (int(k), int(d)), jnp.float32) / jnp.sqrt(float(d))


def linear_head(w_kd: jax.Array, u_nd: jax.Array) -> jax.Array:
    """z = g(u) = u W^T (no bias). w_kd: [k, d]; u_nd: [..., d]; returns [..., k]."""
    if u_nd.shape[-1] != w_kd.shape[-1]:
        raise ValueError(f"u_nd: expected last dimension d = {w_kd.shape[-1]}, got {u_nd.shape}")
    return u_nd @ w_kd.T


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity along the last axis (broadcasting); 0 for a zero vector."""
    na = jnp.sqrt(jnp.sum(a * a, -1) + _EPS ** 2)
    nb = jnp.sqrt(jnp.sum(b * b, -1) + _EPS ** 2)
    return jnp.sum(a * b, -1) / (na * nb)


def ars_loss_from_similarities(s_pos_b: jax.Array, s_neg_bm: jax.Array, neg_mask_bm: jax.Array, *,
                               tau: float) -> jax.Array:
    """Eq. 5 from similarities: log(1 + sum_j mask_j exp((s-_j - s+)/tau)) per anchor.

    Args: s_pos_b [B]; s_neg_bm [B, M]; neg_mask_bm [B, M] (1 = a real negative).
    Returns: [B] per-anchor losses (>= 0; exactly 0 for an anchor without negatives).
    """
    chex.assert_rank([s_pos_b, s_neg_bm, neg_mask_bm], [1, 2, 2])
    logits = (s_neg_bm - s_pos_b[:, None]) / tau                        # [B, M]
    zeros = jnp.zeros_like(s_pos_b)[:, None]
    allv = jnp.concatenate([zeros, logits], axis=1)
    where = jnp.concatenate([jnp.ones_like(zeros, bool), neg_mask_bm.astype(bool)], axis=1)
    return jax.nn.logsumexp(jnp.where(where, allv, -jnp.inf), axis=1, where=where)


def ars_loss(z_b: jax.Array, z_pos_b: jax.Array, z_neg_bm: jax.Array, neg_mask_bm: jax.Array,
             valid_b: jax.Array, *, tau: float) -> tuple[jax.Array, jax.Array]:
    """Eq. 5 of ARS, per anchor, with the mask of anchors that have a positive.

    Args:
      z_b: [B, k] anchors g(u); z_pos_b: [B, k] one sampled positive per anchor;
      z_neg_bm: [B, M, k] negatives (padded); neg_mask_bm: [B, M] 1 = real negative;
      valid_b: [B] 1 = the anchor has at least one positive (others get loss 0 and weight 0).
      tau: temperature > 0.
    Returns:
      (per-anchor loss [B] (0 where not valid), masked mean over valid anchors (0 if none)).
    """
    _check_tau(tau)
    s_pos = cosine(z_b, z_pos_b)
    s_neg = cosine(z_b[:, None, :], z_neg_bm)
    valid = valid_b.astype(bool)
    per = jnp.where(valid, ars_loss_from_similarities(s_pos, s_neg, neg_mask_bm, tau=tau), 0.0)
    n = jnp.sum(valid)
    return per, jnp.sum(per) / jnp.maximum(n, 1)


def supcon_loss(z_nk: jax.Array, ids_n: jax.Array, agree_n: jax.Array, valid_n: jax.Array, *,
                tau: float) -> tuple[jax.Array, jax.Array]:
    """The public code's in-batch SupCon-style ARS loss (a flag; not Eq. 5).

    Args:
      z_nk: [N, k] embeddings of originals and counterfactuals in one batch; ids_n: [N] problem ids;
      agree_n: [N] agreement label (originals = 1); valid_n: [N] 1 = a real row (padding = 0).
      tau: temperature > 0.
    Returns:
      (per-row loss [N] (0 where masked), masked mean over rows with a positive (0 if none)).
    """
    _check_tau(tau)
    n = z_nk.shape[0]
    s = cosine(z_nk[:, None, :], z_nk[None, :, :]) / tau                 # [N, N]
    valid = valid_n.astype(bool)
    pair = valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
    same_id = ids_n[:, None] == ids_n[None, :]
    same_lab = agree_n[:, None] == agree_n[None, :]
    pos = pair & same_id & same_lab
    has_pos = jnp.any(pos, axis=1) & valid
    lse_all = jax.nn.logsumexp(jnp.where(pair, s, -jnp.inf), axis=1, where=pair)
    lse_pos = jax.nn.logsumexp(jnp.where(pos, s, -jnp.inf), axis=1, where=pos)
    per = jnp.where(has_pos, lse_all - jnp.where(has_pos, lse_pos, 0.0), 0.0)
    return per, jnp.sum(per) / jnp.maximum(jnp.sum(has_pos), 1)
