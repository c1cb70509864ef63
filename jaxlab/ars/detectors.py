"""Hallucination detectors on embeddings (raw u, shaped z = g(u), PCA / random controls) and scores.

Label convention (one, everywhere): y = 1 means the answer is CORRECT (truthful), y = 0 a hallucination;
every detector returns a score whose sign is chosen on val so that higher = more likely correct
(`orient`), and AUROC is computed for y = 1 (hallucination-detection AUROC is the same number).

Detectors (arrays in, arrays out; numpy where a closed form or a Newton solve is enough, JAX for CCS):
* `fit_logistic` / `logistic_scores`  L2 logistic regression by Newton's method (the supervised probe;
                                       the repo's labelled "CCS" on contrast differences uses it too)
* `ccs_loss`, `fit_ccs`, `ccs_scores` label-free CCS (Burns et al.) on <yes>/<no> contrast pairs
* `haloscope_score`                    zeta = (1/k) sum_j s_j <f - mu, v_j>^2 over the top-k singular vectors
* `eigenscore`                         (1/K) sum_i log lambda_i(Sigma + alpha I), Sigma the K x K covariance
* `semantic_entropy`                   entropy of the parsed-answer clusters of K samples
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core.classification import auroc


# ----------------------------------------------------------------------------- orientation

def orient(val_scores, val_labels) -> float:
    """+1 or -1: the sign that makes AUROC(sign * score) >= 1/2 on the VAL split."""
    return 1.0 if auroc(val_scores, val_labels) >= 0.5 else -1.0


# ----------------------------------------------------------------------------- logistic probe

class Logistic(NamedTuple):
    w: np.ndarray     # [D]
    b: float
    mean: np.ndarray  # [D] standardization of the inputs
    std: np.ndarray


def fit_logistic(x_nd, y_n, *, l2: float = 1.0, iters: int = 30, sample_weight=None) -> Logistic:
    """L2-regularized logistic regression (Newton / IRLS on standardized inputs; the bias is unpenalized).

    Minimizes sum_i w_i BCE(sigmoid(x_i . w + b), y_i) + l2/2 |w|^2. x_nd: [N, D]; y_n: [N] in {0, 1}.
    """
    x = np.asarray(x_nd, np.float64)
    y = np.asarray(y_n, np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"y_n: expected [N] labels for x_nd [N, D], got {y.shape} and {x.shape}")
    sw = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
    D = xs.shape[1]
    reg = np.full(D, float(l2)); reg[-1] = 1e-8
    theta = np.zeros(D)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ theta, -30, 30)))
        g = xs.T @ (sw * (p - y)) + reg * theta
        H = (xs * (sw * p * (1 - p))[:, None]).T @ xs + np.diag(reg)
        step = np.linalg.solve(H, g)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-8:
            break
    return Logistic(theta[:-1], float(theta[-1]), mean, std)


def logistic_scores(model: Logistic, x_nd) -> np.ndarray:
    """Logit of class 1. x_nd: [N, D] -> [N]."""
    x = (np.asarray(x_nd, np.float64) - model.mean) / model.std
    return x @ model.w + model.b


# ----------------------------------------------------------------------------- CCS

def ccs_loss(p_pos: jax.Array, p_neg: jax.Array) -> jax.Array:
    """Per-pair CCS loss (p+ - (1 - p-))^2 + min(p+, p-)^2. p_pos, p_neg: [N] -> [N]."""
    return jnp.square(p_pos - (1.0 - p_neg)) + jnp.square(jnp.minimum(p_pos, p_neg))


class CCSNorm(NamedTuple):
    mu_pos: np.ndarray
    sd_pos: np.ndarray
    mu_neg: np.ndarray
    sd_neg: np.ndarray


def ccs_normalizer(xp_nd, xn_nd) -> CCSNorm:
    """Per-class normalization statistics (estimated on the unlabeled TRAIN rows)."""
    xp, xn = np.asarray(xp_nd, np.float64), np.asarray(xn_nd, np.float64)
    return CCSNorm(xp.mean(0), xp.std(0) + 1e-6, xn.mean(0), xn.std(0) + 1e-6)


def ccs_normalize(norm: CCSNorm, xp_nd, xn_nd):
    return ((np.asarray(xp_nd) - norm.mu_pos) / norm.sd_pos).astype(np.float32), \
           ((np.asarray(xn_nd) - norm.mu_neg) / norm.sd_neg).astype(np.float32)


def _ccs_fit_one(key, xp, xn, steps, lr):
    d = xp.shape[1]
    theta = {"w": jax.random.normal(key, (d,)) / jnp.sqrt(d), "b": jnp.zeros(())}
    opt = optax.adam(lr)

    def loss_fn(t):
        pp = jax.nn.sigmoid(xp @ t["w"] + t["b"])
        pn = jax.nn.sigmoid(xn @ t["w"] + t["b"])
        return jnp.mean(ccs_loss(pp, pn))

    def step(c, _):
        t, s = c
        l, g = jax.value_and_grad(loss_fn)(t)
        u, s = opt.update(g, s, t)
        return (optax.apply_updates(t, u), s), l

    (theta, _), _ = jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)
    return theta, loss_fn(theta)


@jax.jit
def _ccs_fit(keys, xp, xn):
    return jax.vmap(lambda k: _ccs_fit_one(k, xp, xn, 400, 1e-2))(keys)


def fit_ccs(key: jax.Array, xp_nd, xn_nd, *, restarts: int = 8):
    """Label-free CCS: `restarts` random inits, Adam (lr 1e-2, 400 full-batch steps), keeps the run
    with the lowest CCS loss (no labels). Inputs are already normalized [N, D]. Returns (w [D], b)."""
    keys = jax.random.split(key, restarts)
    theta, losses = _ccs_fit(keys, jnp.asarray(xp_nd, jnp.float32), jnp.asarray(xn_nd, jnp.float32))
    i = int(jnp.argmin(losses))
    return np.asarray(theta["w"][i]), float(theta["b"][i])


def ccs_scores(w, b, xp_nd, xn_nd) -> np.ndarray:
    """Prediction 1/2 (p+ + 1 - p-) [N] (sign still to be oriented on val)."""
    sig = lambda x: 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))
    return 0.5 * (sig(np.asarray(xp_nd) @ w + b) + 1.0 - sig(np.asarray(xn_nd) @ w + b))


# ----------------------------------------------------------------------------- HaloScope

class SVDBasis(NamedTuple):
    mu: np.ndarray     # [D]
    v_kd: np.ndarray   # [K, D] right singular vectors (rows)
    s_k: np.ndarray    # [K] singular values


def svd_basis(f_nd, k_max: int) -> SVDBasis:
    """Top singular vectors of the centred unlabeled embeddings f_nd [N, D]."""
    f = np.asarray(f_nd, np.float64)
    mu = f.mean(0)
    _, s, vt = np.linalg.svd(f - mu, full_matrices=False)
    k = min(int(k_max), vt.shape[0])
    return SVDBasis(mu, vt[:k], s[:k])


def haloscope_score(f_nd, basis: SVDBasis, k: int) -> np.ndarray:
    """zeta_i = (1/k) sum_{j<k} s_j <f_i - mu, v_j>^2 (HaloScope membership score). [N, D] -> [N].
    Invariant to the sign of each singular vector."""
    if not 1 <= k <= len(basis.s_k):
        raise ValueError(f"k: expected 1 <= k <= {len(basis.s_k)}, got {k}")
    proj = (np.asarray(f_nd, np.float64) - basis.mu) @ basis.v_kd[:k].T
    return (np.square(proj) * basis.s_k[:k]).mean(1)


def haloscope(f_tr, f_va, y_va, f_eval: Sequence, *, ks=range(1, 11), percentiles=(50, 70, 90)):
    """HaloScope: membership score on the unlabeled train rows -> pseudo-labels (score above the
    percentile = one class) -> logistic classifier; k, percentile and sign chosen on val labels.
    Returns (list of oriented eval scores for each array in f_eval, chosen {k, percentile, sign, val_auroc})."""
    basis = svd_basis(f_tr, max(ks))
    best = None
    zeta_tr = {k: haloscope_score(f_tr, basis, k) for k in ks if k <= len(basis.s_k)}
    for k, z in zeta_tr.items():
        for q in percentiles:
            pseudo = (z > np.percentile(z, q)).astype(float)
            if pseudo.min() == pseudo.max():
                continue
            clf = fit_logistic(f_tr, pseudo, l2=1.0)
            sv = logistic_scores(clf, f_va)
            a = auroc(sv, y_va)
            a_or = max(a, 1 - a)
            if best is None or a_or > best[0]:
                best = (a_or, k, q, 1.0 if a >= 0.5 else -1.0, clf)
    if best is None:
        raise ValueError("f_tr: HaloScope found no usable pseudo-labelling (constant scores)")
    a, k, q, sign, clf = best
    return [sign * logistic_scores(clf, f) for f in f_eval], {"k": k, "percentile": q, "sign": sign,
                                                             "val_auroc": a}


# ----------------------------------------------------------------------------- EigenScore / SE

def eigenscore(emb_bkd, *, alpha: float = 1e-3) -> np.ndarray:
    """EigenScore (INSIDE) of K generations per problem: (1/K) sum_i log lambda_i(Sigma + alpha I) with
    Sigma = C C^T / D the K x K covariance of the embeddings centred over the K samples.
    emb_bkd: [B, K, D] -> [B]. K identical embeddings give log(alpha), the minimum."""
    e = np.asarray(emb_bkd, np.float64)
    if e.ndim != 3:
        raise ValueError(f"emb_bkd: expected [B, K, D], got shape {e.shape}")
    c = e - e.mean(1, keepdims=True)
    sig = np.einsum("bkd,bjd->bkj", c, c) / e.shape[2]
    lam = np.linalg.eigvalsh(sig + alpha * np.eye(e.shape[1]))
    return np.log(np.maximum(lam, alpha * 1e-6)).mean(1)


def semantic_entropy(answers: Sequence[Sequence]) -> np.ndarray:
    """Discrete semantic entropy over parsed answers: clusters = equal parsed integers (all unparseable
    answers form one cluster). answers: B lists of K parsed values -> [B]."""
    out = []
    for row in answers:
        cnt = np.array(list(Counter(row).values()), np.float64)
        p = cnt / cnt.sum()
        out.append(float(-(p * np.log(p)).sum()))
    return np.asarray(out)
