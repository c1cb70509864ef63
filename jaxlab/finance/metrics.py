"""Forecast, ranking, backtest and trading metrics (paper A §V; IC/RankIC/MDD are jaxlab additions).

Shared by the dataflow paper (A) and the robust-trading paper (B). Pure jnp functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mse(pred, y):
    """mean (pred - y)^2 over all elements."""
    return jnp.mean((pred - y) ** 2)


def mae(pred, y):
    """mean |pred - y|."""
    return jnp.mean(jnp.abs(pred - y))


def risk_aware_loss(losses_n, *, gamma=0.05):
    """Paper eq. 15: mean(l) + gamma * std(l). With gamma = 0 this is the plain mean (MSE for squared l)."""
    return jnp.mean(losses_n) + gamma * jnp.std(losses_n)


def _pearson(a, b, eps=1e-12):
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    return jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1) + eps)


def _ranks(x):
    return jnp.argsort(jnp.argsort(x, axis=-1), axis=-1).astype(jnp.float32)


def information_coefficient(pred_ds, y_ds):
    """Cross-sectional IC_t = Pearson(pred_t, y_t) per day. pred_ds, y_ds: [D, S] -> [D]."""
    return _pearson(pred_ds, y_ds)


def rank_information_coefficient(pred_ds, y_ds):
    """RankIC_t = Spearman (Pearson of ranks; ties broken by order). [D, S] -> [D]."""
    return _pearson(_ranks(pred_ds), _ranks(y_ds))


def ic_summary(ic_d):
    """(mean IC, ICIR = mean / std)."""
    m = jnp.mean(ic_d)
    return m, m / (jnp.std(ic_d) + 1e-12)


def long_short_returns(pred_ds, y_ds, *, top_k=5, cost=1e-3):
    """Daily return of an equal-weight long top-k / short bottom-k portfolio minus turnover costs.

    Weights w_t: +1/k on the k highest predictions, -1/k on the k lowest (k capped at S // 2);
    r_t = w_t . y_t - cost * sum |w_t - w_{t-1}| (w_{-1} = 0). [D, S] -> [D].
    """
    S = pred_ds.shape[-1]
    k = int(max(1, min(top_k, S // 2)))
    r = _ranks(pred_ds)
    w = jnp.where(r >= S - k, 1.0 / k, 0.0) - jnp.where(r < k, 1.0 / k, 0.0)
    prev = jnp.concatenate([jnp.zeros_like(w[:1]), w[:-1]], axis=0)
    turnover = jnp.sum(jnp.abs(w - prev), -1)
    return jnp.sum(w * y_ds, -1) - cost * turnover


def sharpe_ratio(r_t, *, periods=252, eps=1e-12):
    """Annualised Sharpe sqrt(periods) * mean / std (ddof=0). periods=1 gives the paper's mean/std."""
    return jnp.sqrt(periods) * jnp.mean(r_t) / (jnp.std(r_t) + eps)


def max_drawdown(values_t):
    """max_t (peak_t - V_t) / peak_t for a value path [T] (e.g. [1, 1.2, 0.9, 1.1] -> 0.25)."""
    peak = jax.lax.cummax(values_t, axis=0)
    return jnp.max((peak - values_t) / peak)


def equity_curve(r_t, *, v0=1.0):
    """V_t = v0 * prod_{s<=t}(1 + r_s), prefixed with v0. [T] -> [T+1]."""
    return v0 * jnp.concatenate([jnp.ones((1,), r_t.dtype), jnp.cumprod(1.0 + r_t)])


def total_return(values_t):
    """TR = (V_T - V_0) / V_0."""
    return values_t[-1] / values_t[0] - 1.0
