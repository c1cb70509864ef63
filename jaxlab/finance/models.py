"""Task models k(j(x)) for next-day return forecasting (paper A §IV; the CPU miniature of spec A7).

Every model maps normalised window features `[B, T, F]` to `(pred [B], h [B, H])`, where h is the
penultimate representation j(x) the planner reads.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

MODELS = ("gru", "dlinear", "transformer")


def window_features(x_tf):
    """Raw window [.., T+1, 5] -> features [.., T, 5]: log close return, log(O/C), log(H/C), log(L/C),
    log volume minus its window mean. Prices are clipped at 1e-6 before the logs."""
    p = jnp.maximum(x_tf[..., :4], 1e-6)
    lc = jnp.log(p[..., 3])
    r = jnp.diff(lc, axis=-1)
    o = jnp.log(p[..., 0] / p[..., 3])[..., 1:]
    h = jnp.log(p[..., 1] / p[..., 3])[..., 1:]
    lo = jnp.log(p[..., 2] / p[..., 3])[..., 1:]
    v = x_tf[..., 1:, 4] - jnp.mean(x_tf[..., 1:, 4], axis=-1, keepdims=True)
    return jnp.stack([r, o, h, lo, v], axis=-1)


class GRUForecaster(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x_btf):
        out = nn.RNN(nn.GRUCell(features=self.hidden))(x_btf)
        h = nn.relu(nn.Dense(self.hidden)(out[:, -1]))
        return nn.Dense(1)(h)[:, 0], h


class DLinear(nn.Module):
    """Moving-average trend/seasonal split, one linear map over time per channel (Zeng et al. 2023);
    the per-channel forecasts [B, F] are j(x) and a final Dense(1) is k."""
    kernel: int = 5

    @nn.compact
    def __call__(self, x_btf):
        B, T, F = x_btf.shape
        pad = self.kernel // 2
        xp = jnp.concatenate([jnp.repeat(x_btf[:, :1], pad, 1), x_btf, jnp.repeat(x_btf[:, -1:], pad, 1)], 1)
        trend = sum(xp[:, k:k + T] for k in range(self.kernel)) / self.kernel
        seas = x_btf - trend
        wt = self.param("w_trend", nn.initializers.constant(1.0 / T), (T, F))
        ws = self.param("w_seasonal", nn.initializers.constant(1.0 / T), (T, F))
        b = self.param("bias", nn.initializers.zeros, (F,))
        h = jnp.einsum("btf,tf->bf", trend, wt) + jnp.einsum("btf,tf->bf", seas, ws) + b
        return nn.Dense(1)(h)[:, 0], h


class TransformerForecaster(nn.Module):
    d_model: int = 32
    heads: int = 2

    @nn.compact
    def __call__(self, x_btf):
        T = x_btf.shape[1]
        z = nn.Dense(self.d_model)(x_btf) + self.param("pos", nn.initializers.normal(0.02), (T, self.d_model))
        z = z + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(z))
        y = nn.LayerNorm()(z)
        z = z + nn.Dense(self.d_model)(nn.gelu(nn.Dense(2 * self.d_model)(y)))
        h = jnp.mean(nn.LayerNorm()(z), axis=1)
        return nn.Dense(1)(h)[:, 0], h


def make_model(name: str, **kw) -> nn.Module:
    """'gru' | 'dlinear' | 'transformer'."""
    if name == "gru":
        return GRUForecaster(**kw)
    if name == "dlinear":
        return DLinear(**kw)
    if name == "transformer":
        return TransformerForecaster(**kw)
    raise ValueError(f"model: expected one of {MODELS}, got {name!r}")


class Planner(nn.Module):
    """g_phi: [task features h, window stats] -> (p [B, Q] softmax over op pairs, lam [B, Q] sigmoid).
    An MLP with `hidden` units (spec A7 allows an MLP); the last layer starts at zero, so the initial
    policy is uniform with lam = 0.5."""
    num_pairs: int = 16
    hidden: int = 64

    @nn.compact
    def __call__(self, h_bh, stats_bs):
        z = jnp.concatenate([h_bh, stats_bs], axis=-1)
        z = nn.relu(nn.Dense(self.hidden)(z))
        z = nn.relu(nn.Dense(self.hidden)(z))
        out = nn.Dense(2 * self.num_pairs, kernel_init=nn.initializers.zeros)(z)
        logits, lam_logits = out[:, :self.num_pairs], out[:, self.num_pairs:]
        return nn.softmax(logits, axis=-1), nn.sigmoid(lam_logits)


def window_stats(x_tf):
    """Planner statistics of a raw window's log close returns [.., T+1, 5] -> [.., 6]: mean, volatility,
    momentum C_last - C_first, skew, excess kurtosis, OLS trend slope of C (all scaled to O(1))."""
    c = jnp.maximum(x_tf[..., 3], 1e-6)
    r = jnp.diff(jnp.log(c), axis=-1)
    m = r.mean(-1, keepdims=True)
    s = r.std(-1, keepdims=True) + 1e-8
    zr = (r - m) / s
    skew = jnp.mean(zr ** 3, -1)
    kurt = jnp.mean(zr ** 4, -1) - 3.0
    t = jnp.arange(c.shape[-1], dtype=c.dtype)
    tc = t - t.mean()
    slope = jnp.sum(tc * (c - c.mean(-1, keepdims=True)), -1) / jnp.sum(tc * tc)
    mom = c[..., -1] - c[..., 0]
    return jnp.stack([100 * m[..., 0], 100 * s[..., 0], 10 * mom, skew / 3, kurt / 10, 100 * slope], axis=-1)
