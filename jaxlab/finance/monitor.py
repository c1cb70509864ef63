"""Distribution-drift distances and the per-epoch quality monitor (paper A Table I, Table IV, A7).

PSI uses 10 quantile bins of the reference sample; KS is the two-sample sup |F1 - F2|; MMD^2 is the
biased V-statistic with an RBF kernel whose bandwidth is the median pairwise distance of the pooled
sample. Stylized facts: lag-1 ACF of r and |r| and the leverage correlation corr(r_t, |r_{t+1}|).
The discriminative score is |accuracy - 0.5| of a logistic regression on window statistics, trained on
half of the real/augmented windows and evaluated on the other half.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def psi(ref_n, other_n, *, bins=10, eps=1e-4):
    """Population stability index sum (p - q) ln(p / q) over `bins` quantile bins of ref. 1-D inputs."""
    ref_n, other_n = jnp.asarray(ref_n), jnp.asarray(other_n)
    edges = jnp.quantile(ref_n, jnp.linspace(0, 1, bins + 1)[1:-1])
    p = jnp.bincount(jnp.searchsorted(edges, ref_n), length=bins) / ref_n.shape[0]
    q = jnp.bincount(jnp.searchsorted(edges, other_n), length=bins) / other_n.shape[0]
    p, q = p + eps, q + eps
    return jnp.sum((p - q) * jnp.log(p / q))


def ks_statistic(a_n, b_n):
    """Two-sample Kolmogorov-Smirnov statistic sup_x |F_a(x) - F_b(x)|."""
    a, b = jnp.sort(jnp.asarray(a_n)), jnp.sort(jnp.asarray(b_n))
    grid = jnp.concatenate([a, b])
    fa = jnp.searchsorted(a, grid, side="right") / a.shape[0]
    fb = jnp.searchsorted(b, grid, side="right") / b.shape[0]
    return jnp.max(jnp.abs(fa - fb))


def _sqdist(x, y):
    return jnp.maximum(jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None] - 2 * x @ y.T, 0.0)


def mmd2(x_nd, y_md, *, bandwidth=None):
    """Biased MMD^2 with k(u, v) = exp(-|u - v|^2 / (2 h^2)); h = median pooled distance if None."""
    x_nd = jnp.asarray(x_nd, jnp.float32).reshape(x_nd.shape[0], -1)
    y_md = jnp.asarray(y_md, jnp.float32).reshape(y_md.shape[0], -1)
    if bandwidth is None:
        z = jnp.concatenate([x_nd, y_md])
        bandwidth = jnp.sqrt(jnp.median(_sqdist(z, z)) / 2.0 + 1e-12)
    g = 1.0 / (2 * bandwidth ** 2)
    kxx = jnp.exp(-g * _sqdist(x_nd, x_nd)).mean()
    kyy = jnp.exp(-g * _sqdist(y_md, y_md)).mean()
    kxy = jnp.exp(-g * _sqdist(x_nd, y_md)).mean()
    return kxx + kyy - 2 * kxy


def drift_distances(ref_nf, other_nf, *, max_mmd=500, seed=0):
    """Mean over features of PSI(ref -> other) and KS, plus MMD^2 on (standardised) feature vectors.

    ref_nf: [N, F], other_nf: [M, F] (numpy). Returns dict(psi, ks, mmd)."""
    ref_nf, other_nf = np.asarray(ref_nf, np.float64), np.asarray(other_nf, np.float64)
    if ref_nf.ndim != 2 or other_nf.ndim != 2 or ref_nf.shape[1] != other_nf.shape[1]:
        raise ValueError(f"ref_nf/other_nf: expected [N, F] and [M, F], got {ref_nf.shape}, {other_nf.shape}")
    F = ref_nf.shape[1]
    p = float(np.mean([psi(ref_nf[:, f], other_nf[:, f]) for f in range(F)]))
    k = float(np.mean([ks_statistic(ref_nf[:, f], other_nf[:, f]) for f in range(F)]))
    rng = np.random.default_rng(seed)
    a = ref_nf[rng.choice(len(ref_nf), min(max_mmd, len(ref_nf)), replace=False)]
    b = other_nf[rng.choice(len(other_nf), min(max_mmd, len(other_nf)), replace=False)]
    mu, sd = ref_nf.mean(0), ref_nf.std(0) + 1e-12
    m = float(mmd2((a - mu) / sd, (b - mu) / sd))
    return {"psi": p, "ks": k, "mmd": m}


# ---------------------------------------------------------------------------------------- stylized facts
def _acf1(x):
    x = x - x.mean(-1, keepdims=True)
    return jnp.sum(x[..., 1:] * x[..., :-1], -1) / (jnp.sum(x * x, -1) + 1e-12)


def stylized_facts(close_nt):
    """Mean over windows of lag-1 ACF(r), ACF(|r|) and leverage corr(r_t, |r_{t+1}|). close_nt: [N, T]."""
    r = jnp.diff(jnp.log(jnp.maximum(close_nt, 1e-8)), axis=-1)
    a = r[..., :-1] - r[..., :-1].mean(-1, keepdims=True)
    b = jnp.abs(r[..., 1:]) - jnp.abs(r[..., 1:]).mean(-1, keepdims=True)
    lev = jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1) + 1e-12)
    return {"acf_r": jnp.mean(_acf1(r)), "acf_abs_r": jnp.mean(_acf1(jnp.abs(r))), "leverage": jnp.mean(lev)}


def window_summary(x_ntf):
    """Per-window statistics for monitors/discriminators: [N, T, 5] -> [N, 8]."""
    c = jnp.maximum(x_ntf[..., 3], 1e-8)
    r = jnp.diff(jnp.log(c), axis=-1)
    rng = jnp.log(jnp.maximum(x_ntf[..., 1], 1e-8) / jnp.maximum(x_ntf[..., 2], 1e-8))
    body = jnp.log(c / jnp.maximum(x_ntf[..., 0], 1e-8))
    return jnp.stack([r.mean(-1), r.std(-1), jnp.abs(r).mean(-1), _acf1(r), rng.mean(-1), body.std(-1),
                      x_ntf[..., 4].mean(-1), x_ntf[..., 4].std(-1)], axis=-1)


def discriminative_score(real_nd, fake_nd, key, *, steps=300, lr=0.1):
    """|held-out accuracy - 0.5| of a logistic regression separating real from fake rows (features
    standardised on the training half). 0 means indistinguishable. real_nd, fake_nd: [N, D]."""
    n = min(real_nd.shape[0], fake_nd.shape[0])
    x = jnp.concatenate([real_nd[:n], fake_nd[:n]]).astype(jnp.float32)
    y = jnp.concatenate([jnp.zeros(n), jnp.ones(n)])
    perm = jax.random.permutation(key, 2 * n)
    x, y = x[perm], y[perm]
    h = n
    mu, sd = x[:h].mean(0), x[:h].std(0) + 1e-6
    x = (x - mu) / sd

    def loss(w):
        logit = x[:h] @ w[:-1] + w[-1]
        return jnp.mean(jnp.logaddexp(0.0, logit) - y[:h] * logit)

    def body(w, _):
        return w - lr * jax.grad(loss)(w), None

    w, _ = jax.lax.scan(body, jnp.zeros(x.shape[1] + 1), None, length=steps)
    acc = jnp.mean(((x[h:] @ w[:-1] + w[-1]) > 0) == (y[h:] > 0.5))
    return jnp.abs(acc - 0.5)


def quality_report(aug_ntf, train_ntf, val_ntf, key):
    """The per-epoch monitor: drift of augmented and train windows to validation, K-line validity,
    stylized-fact gaps (augmented vs train) and the discriminative score. Returns a flat dict of floats."""
    from jaxlab.finance.ops import kline_valid
    sa, st, sv = (np.asarray(window_summary(jnp.asarray(v))) for v in (aug_ntf, train_ntf, val_ntf))
    out = {}
    for name, ref in (("aug", sa), ("train", st)):
        d = drift_distances(ref, sv, max_mmd=300)
        out.update({f"{k}_{name}_val": v for k, v in d.items()})
    out["kline_valid_rate"] = float(jnp.mean(kline_valid(jnp.asarray(aug_ntf))))
    fa = stylized_facts(jnp.asarray(aug_ntf[..., 3]))
    ft = stylized_facts(jnp.asarray(train_ntf[..., 3]))
    for k in fa:
        out[f"gap_{k}"] = float(jnp.abs(fa[k] - ft[k]))
    out["disc_score"] = float(discriminative_score(jnp.asarray(st), jnp.asarray(sa), key))
    return out
