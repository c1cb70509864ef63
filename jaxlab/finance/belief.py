"""Quantile belief network (QBN) of the robust-trading paper (B, arXiv 2601.17008).

A GRU reads the observation window o_{1:T-1} and predicts the quantiles tau in {.05, .25, .5, .75, .95}
of a target feature at the last step (the code's `ma_5`), trained with the pinball loss
  L = sum_tau mean_b max((tau - 1) e_b, tau e_b),  e = y - q_tau.
The belief is the bucket of the nearest quantile, b = argmin_k (q_k - x_T)^2 in {0..4} (a soft variant
softmax(-d^2 / temperature) is offered); the trader adds an embedding of b to its Q latent.
Quantiles are monotone by construction (q_0 + cumulative softplus increments).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

TAUS = (0.05, 0.25, 0.5, 0.75, 0.95)


def pinball_loss(q_bk, y_b, *, taus=TAUS):
    """sum_k mean_b max((tau_k - 1) e, tau_k e), e = y - q_k. q_bk: [B, K], y_b: [B] -> []."""
    taus = jnp.asarray(taus, q_bk.dtype)
    if q_bk.shape[-1] != taus.shape[0]:
        raise ValueError(f"q_bk: expected {taus.shape[0]} quantiles in the last axis, got {q_bk.shape}")
    e = y_b[:, None] - q_bk
    return jnp.sum(jnp.mean(jnp.maximum((taus - 1.0) * e, taus * e), axis=0))


def belief_bucket(q_bk, x_b):
    """Index of the nearest quantile: argmin_k (q_k - x)^2 in {0..K-1}. [B, K], [B] -> [B] int32."""
    return jnp.argmin((q_bk - x_b[:, None]) ** 2, axis=-1).astype(jnp.int32)


def soft_belief(q_bk, x_b, *, temperature=1.0):
    """softmax(-(q_k - x)^2 / temperature) over k. [B, K], [B] -> [B, K]."""
    return jax.nn.softmax(-((q_bk - x_b[:, None]) ** 2) / temperature, axis=-1)


def interval_coverage(q_bk, y_b, *, lo=0, hi=-1):
    """Fraction of y inside [q_lo, q_hi] (default [q_.05, q_.95]). [B, K], [B] -> []."""
    return jnp.mean((y_b >= q_bk[:, lo]) & (y_b <= q_bk[:, hi]))


class QuantileBeliefNet(nn.Module):
    """GRU(hidden) over x [B, T, F] -> monotone quantiles [B, len(TAUS)]."""
    hidden: int = 32
    num_quantiles: int = len(TAUS)

    @nn.compact
    def __call__(self, x_btf):
        h = nn.RNN(nn.GRUCell(features=self.hidden))(x_btf)[:, -1]
        out = nn.Dense(self.num_quantiles)(h)
        return out[:, :1] + jnp.concatenate([jnp.zeros_like(out[:, :1]),
                                             jnp.cumsum(nn.softplus(out[:, 1:]), -1)], -1)
