"""Manipulation module M of paper A (arXiv 2601.10143 §III) as pure JAX functions.

A window is `x_tf: [T, 5]` (open, high, low, close relative to the window's first close; log volume).
Single-stock ops run in this raw space and leave the label unchanged; mix-ups run in the per-asset
z-scored space and mix labels. Every op is controlled by a strength `lam` (a scalar in [0, 1]).

Gradients w.r.t. `lam`: exact for jitter and scaling (reparametrised noise), magnitude warp, linear,
amplitude and proposed mixes; the discrete ops (permutation, cut mix, STL bootstrap) use the
straight-through estimator d out / d lam := 1 (paper eq. 17). `st_all=True` in `manipulate` applies the
straight-through estimator to every op, which is what the paper does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

SINGLE_OPS = ("jitter", "scaling", "magnitude_warp", "permutation")
MIX_OPS = ("cut_mix", "linear_mix", "amplitude_mix", "proposed_mix")
EXACT_OPS = ("jitter", "scaling", "magnitude_warp", "linear_mix", "amplitude_mix", "proposed_mix")
NUM_PAIRS = len(SINGLE_OPS) * len(MIX_OPS)


def check_op_names(names, allowed, arg="ops"):
    """Raises ValueError naming unknown op names."""
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"{arg}: unknown op names {bad}; expected names from {tuple(allowed)}")


def straight_through(out, lam):
    """Value `out`, gradient d out / d lam := 1 elementwise (paper eq. 17)."""
    return jax.lax.stop_gradient(out) + (lam - jax.lax.stop_gradient(lam))


# ------------------------------------------------------------------------------------------ K-lines
def kline_valid(x_tf):
    """bool [T]: low <= min(open, close) <= max(open, close) <= high."""
    o, h, l, c = x_tf[..., 0], x_tf[..., 1], x_tf[..., 2], x_tf[..., 3]
    return (l <= jnp.minimum(o, c)) & (jnp.maximum(o, c) <= h)


def curate_kline(x_tf):
    """K-line curation: high := max of the four prices, low := min (paper A §III). [.., T, 5] -> same."""
    p = x_tf[..., :4]
    hi = jnp.max(p, axis=-1)
    lo = jnp.min(p, axis=-1)
    return x_tf.at[..., 1].set(hi).at[..., 2].set(lo)


# --------------------------------------------------------------------------------------- single ops
def jitter(x_tf, lam, key, *, sigma=0.01):
    """x + lam * sigma * eps, eps ~ N(0, 1) per element. Exact gradient in lam."""
    eps = jax.random.normal(key, x_tf.shape, x_tf.dtype)
    return x_tf + lam * sigma * eps


def scaling(x_tf, lam, key, *, sigma=0.1):
    """x * (1 + lam * sigma * eps_f), one factor per feature channel (as in the paper-B repo)."""
    eps = jax.random.normal(key, (x_tf.shape[-1],), x_tf.dtype)
    return x_tf * (1.0 + lam * sigma * eps)


@functools.lru_cache(maxsize=32)
def spline_basis(T: int, knots: int = 4) -> np.ndarray:
    """[T, knots + 2] matrix B with curve = B @ knot_values for a natural cubic spline through
    knots + 2 evenly spaced points on [0, T-1] (the paper-B repo's warp curve, built once with SciPy)."""
    from scipy.interpolate import CubicSpline
    xs = np.linspace(0, T - 1, knots + 2)
    eye = np.eye(knots + 2)
    return np.stack([CubicSpline(xs, eye[k])(np.arange(T)) for k in range(knots + 2)], axis=1)


def magnitude_warp(x_tf, lam, key, *, sigma=0.2, knots=4):
    """x * curve_f(t), curve = cubic spline through knots + 2 points N(1, (lam sigma)^2), per channel."""
    T, F = x_tf.shape[-2], x_tf.shape[-1]
    basis = jnp.asarray(spline_basis(T, knots), x_tf.dtype)
    eps = jax.random.normal(key, (knots + 2, F), x_tf.dtype)
    curve = basis @ (1.0 + lam * sigma * eps)                   # [T, F]
    return x_tf * curve


def permutation(x_tf, lam, key, *, max_segments=5):
    """Splits time into nseg = clip(round(lam * max_segments), 1, max_segments) equal segments and
    shuffles them (nseg = 1 is the identity). Discrete in lam: use `straight_through` for gradients."""
    x_tf = jnp.asarray(x_tf)
    T = x_tf.shape[-2]
    lam = jax.lax.stop_gradient(lam)
    nseg = jnp.clip(jnp.round(lam * max_segments), 1, max_segments).astype(jnp.int32)
    seg = (jnp.arange(T) * nseg) // T                           # [T] segment id, 0..nseg-1
    order = jax.random.permutation(key, max_segments)           # random rank for every possible id
    rank = jnp.argsort(jnp.argsort(jnp.where(jnp.arange(max_segments) < nseg, order, max_segments + order)))
    sort_key = rank[seg] * T + jnp.arange(T)
    return x_tf[jnp.argsort(sort_key)]


def stl_bootstrap(trend_seasonal_t, resid_t, lam, key, *, block=5):
    """STL residual bootstrap: trend + seasonal + ((1 - lam) resid + lam * moving-block-bootstrapped resid).

    trend_seasonal_t, resid_t: [T] or [T, F] components fitted on train (see data.stl_components).
    Block starts are drawn uniformly; lam blends original and bootstrapped residuals (exact gradient).
    """
    T = resid_t.shape[0]
    nblocks = -(-T // block)
    starts = jax.random.randint(key, (nblocks,), 0, max(T - block + 1, 1))
    idx = (starts[:, None] + jnp.arange(block)[None]).reshape(-1)[:T]
    boot = resid_t[idx]
    return trend_seasonal_t + (1.0 - lam) * resid_t + lam * boot


SINGLE_FNS = {"jitter": jitter, "scaling": scaling, "magnitude_warp": magnitude_warp,
              "permutation": permutation}


# ----------------------------------------------------------------------------------------- mix-ups
def linear_mix(a_tf, b_tf, ya, yb, lam, key=None):
    """lam * a + (1 - lam) * b on inputs and labels (convex)."""
    del key
    return lam * a_tf + (1.0 - lam) * b_tf, lam * ya + (1.0 - lam) * yb


def cut_mix(a_tf, b_tf, ya, yb, lam, key):
    """Replaces exactly n = floor(lam * T) consecutive steps of a (random start) by b's; labels are
    weighted by the fraction taken: y = (1 - n/T) ya + (n/T) yb. Discrete in lam."""
    T = a_tf.shape[-2]
    lam = jax.lax.stop_gradient(lam)
    n = jnp.floor(lam * T + 1e-6).astype(jnp.int32)
    n = jnp.clip(n, 0, T)
    start = jax.random.randint(key, (), 0, T - n + 1)
    t = jnp.arange(T)
    mask = (t >= start) & (t < start + n)
    frac = n.astype(a_tf.dtype) / T
    return jnp.where(mask[:, None], b_tf, a_tf), (1.0 - frac) * ya + frac * yb


def _polar(z):
    return jnp.abs(z), jnp.angle(z)


def amplitude_mix(a_tf, b_tf, ya, yb, lam, key=None):
    """rFFT over time: magnitudes lam |A| + (1 - lam) |B| with the phase of a; y = lam ya + (1-lam) yb."""
    del key
    T = a_tf.shape[-2]
    fa = jnp.fft.rfft(a_tf, axis=-2)
    fb = jnp.fft.rfft(b_tf, axis=-2)
    ma, pa = _polar(fa)
    mb = jnp.abs(fb)
    pa = jax.lax.stop_gradient(pa)
    mag = lam * ma + (1.0 - lam) * mb
    out = jnp.fft.irfft(mag * jnp.exp(1j * pa), n=T, axis=-2)
    return out.astype(a_tf.dtype), lam * ya + (1.0 - lam) * yb


def wrap_phase(d):
    """Wraps angles to [-pi, pi)."""
    return (d + jnp.pi) % (2 * jnp.pi) - jnp.pi


def proposed_mix(a_tf, b_tf, ya, yb, lam, key=None, *, threshold=0.1):
    """The paper's phase-shifting mix: on a's bins with |A| > threshold * max|A| (per channel), magnitude
    (1 - lam)|A| + lam |B| and phase phi_a + lam * wrap(phi_b - phi_a); other bins keep a's spectrum.
    Labels: (1 - lam) ya + lam yb."""
    del key
    T = a_tf.shape[-2]
    fa = jnp.fft.rfft(a_tf, axis=-2)
    fb = jnp.fft.rfft(b_tf, axis=-2)
    ma, pa = _polar(fa)
    mb, pb = _polar(fb)
    pa, pb = jax.lax.stop_gradient(pa), jax.lax.stop_gradient(pb)
    dom = jax.lax.stop_gradient(ma > threshold * jnp.max(ma, axis=-2, keepdims=True))
    mag = jnp.where(dom, (1.0 - lam) * ma + lam * mb, ma)
    ph = jnp.where(dom, pa + lam * wrap_phase(pb - pa), pa)
    out = jnp.fft.irfft(mag * jnp.exp(1j * ph), n=T, axis=-2)
    return out.astype(a_tf.dtype), (1.0 - lam) * ya + lam * yb


MIX_FNS = {"cut_mix": cut_mix, "linear_mix": linear_mix, "amplitude_mix": amplitude_mix,
           "proposed_mix": proposed_mix}


# --------------------------------------------------------------------------------------- Alg. 1, 2
def target_scores(pvals_s, src, lam):
    """Alg. 1 scores: beta = 1 - lam if lam <= .5 else lam; S_j = -p^beta (lam <= .5) else p^(1/beta).
    The source gets -inf. pvals_s: [S] p-values of the source against every asset -> [S]."""
    lam = jax.lax.stop_gradient(lam)
    beta = jnp.where(lam <= 0.5, 1.0 - lam, lam)
    p = jnp.clip(pvals_s, 1e-12, 1.0)
    s = jnp.where(lam <= 0.5, -p ** beta, p ** (1.0 / beta))
    return jnp.where(jnp.arange(p.shape[0]) == src, -jnp.inf, s)


def target_probs(pvals_s, src, lam, *, k=5, temperature=1.0):
    """Softmax over the top-k scores (others 0); k is capped at S - 1. Returns [S] probabilities."""
    S = pvals_s.shape[0]
    k = int(min(k, S - 1))
    s = target_scores(pvals_s, src, lam)
    kth = jnp.sort(s)[S - k]
    keep = (s >= kth) & (jnp.arange(S) != src)
    logits = jnp.where(keep, s / temperature, -jnp.inf)
    return jax.nn.softmax(logits)


def sample_target(pvals_s, src, lam, key, *, k=5, temperature=1.0):
    """Alg. 1: samples the mix target b != src from `target_probs`. Returns an int32 scalar."""
    probs = target_probs(pvals_s, src, lam, k=k, temperature=temperature)
    return jax.random.choice(key, pvals_s.shape[0], p=probs).astype(jnp.int32)


def _hist_ids(v, bins):
    lo, hi = jnp.min(v), jnp.max(v)
    return jnp.clip(jnp.floor((v - lo) / (hi - lo + 1e-12) * bins), 0, bins - 1).astype(jnp.int32)


def mutual_information(u_t, v_t, *, bins=20):
    """Plug-in MI (nats) of two series from a bins x bins histogram; MI(u, u) is the entropy of u."""
    pu = jax.nn.one_hot(_hist_ids(u_t, bins), bins)
    pv = jax.nn.one_hot(_hist_ids(v_t, bins), bins)
    joint = pu.T @ pv / u_t.shape[0]
    mu, mv = joint.sum(1), joint.sum(0)
    ratio = joint / (mu[:, None] * mv[None, :] + 1e-30)
    return jnp.sum(jnp.where(joint > 0, joint * jnp.log(jnp.where(joint > 0, ratio, 1.0)), 0.0))


def binary_mix_weight(x_t, y_t, *, b_max=0.5, bins=20):
    """Alg. 2: b_mix = b_max - (MI_xy / MI_xx) b_max, clipped to [0, b_max] (no gradient)."""
    mi_xy = mutual_information(x_t, y_t, bins=bins)
    mi_xx = mutual_information(x_t, x_t, bins=bins)
    b = b_max - mi_xy / jnp.maximum(mi_xx, 1e-12) * b_max
    return jax.lax.stop_gradient(jnp.clip(b, 0.0, b_max))


def binary_mix(x_tf, mixed_tf, y, y_mixed, key, *, b_max=0.5, bins=20):
    """Alg. 2 compensation on a random feature k: x' = b x + (1 - b) x_mixed, same weight on labels."""
    k = jax.random.randint(key, (), 0, x_tf.shape[-1])
    b = binary_mix_weight(x_tf[:, k], mixed_tf[:, k], b_max=b_max, bins=bins)
    return b * x_tf + (1.0 - b) * mixed_tf, b * y + (1.0 - b) * y_mixed, b


# ----------------------------------------------------------------------------------------- M(x, i, j)
def apply_single(name, x_tf, lam, key, *, st=False):
    """One single-stock op with the gradient rule of the module docstring."""
    check_op_names([name], SINGLE_OPS, "single op")
    out = SINGLE_FNS[name](x_tf, lam, key)
    if st or name not in EXACT_OPS:
        out = straight_through(out, lam)
    return out


def apply_mix(name, a_tf, b_tf, ya, yb, lam, key, *, st=False):
    """One mix-up with the gradient rule of the module docstring (labels keep their exact gradient)."""
    check_op_names([name], MIX_OPS, "mix op")
    out, y = MIX_FNS[name](a_tf, b_tf, ya, yb, lam, key)
    if st or name not in EXACT_OPS:
        out = straight_through(out, lam)
    return out, y


def manipulate(x_tf, y, src, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf, i, j, lam, key, *,
               st_all=False, k_targets=5, b_max=0.5):
    """M(x, i, j, lam) for one sample and one static (single op i, mix op j) pair (paper A, Alg. 1-2).

    1. y1 = curate(single_i(x)) in raw space; 2. b ~ Alg. 1 from the train-fitted p-values of src;
    3. z = mix_j(z(y1), z(x_b)) in the per-asset z-scored space, labels mixed; 4. de-normalise with
    src's statistics, Alg. 2 compensation against the original x, and a final K-line curation.

    Args:
      x_tf: [T, 5] window; y: [] label; src: [] asset id; panel_x_stf: [S, T, 5] every asset's window at
      the same day; panel_y_s: [S]; pvals_ss: [S, S]; mu_sf, sd_sf: [S, 5]; i, j: python ints; lam: [].
    Returns:
      (x' [T, 5], y' [], b [] int32 target asset).
    """
    x_tf, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf = (
        jnp.asarray(a) for a in (x_tf, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf))
    k_single, k_target, k_mix, k_bin = jax.random.split(key, 4)
    x1 = curate_kline(apply_single(SINGLE_OPS[i], x_tf, lam, k_single, st=st_all))
    b = jax.lax.stop_gradient(sample_target(pvals_ss[src], src, lam, k_target, k=k_targets))
    za = (x1 - mu_sf[src]) / sd_sf[src]
    zb = (panel_x_stf[b] - mu_sf[b]) / sd_sf[b]
    z, y_mix = apply_mix(MIX_OPS[j], za, zb, y, panel_y_s[b], lam, k_mix, st=st_all)
    x_mix = z * sd_sf[src] + mu_sf[src]
    out, y_out, _ = binary_mix(x_tf, x_mix, y, y_mix, k_bin, b_max=b_max)
    return curate_kline(out), y_out, b


def manipulate_all_pairs(x_tf, y, src, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf, lam_p, key, *,
                         st_all=False, k_targets=5, b_max=0.5, no_mix=False):
    """All n x m pairs for one sample, vectorised. lam_p: [16] -> (x' [16, T, 5], y' [16], b [16]).

    Pair index q = i * len(MIX_OPS) + j uses key fold_in(key, q) split into (single, target, mix, binary)
    keys, exactly as `manipulate`; each single op is vmapped over the 4 pairs that share it and each
    mix-up over the 4 pairs that share it (a 4x smaller graph than unrolling `manipulate` 16 times).
    no_mix=True is the paper's "w/o mixup" ablation: step 3 is skipped (z = z(y1), the label is kept, b = src),
    so pair (i, j) is the curated single op i followed by the binary mix with the original; same keys."""
    x_tf, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf = (
        jnp.asarray(a) for a in (x_tf, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf))
    nI, nJ = len(SINGLE_OPS), len(MIX_OPS)
    ks = jax.vmap(lambda q: jax.random.split(jax.random.fold_in(key, q), 4))(jnp.arange(NUM_PAIRS))
    lam_ij = lam_p.reshape(nI, nJ)
    k_ij = ks.reshape(nI, nJ, *ks.shape[1:])
    x1 = jnp.stack([jax.vmap(lambda l, k, nm=nm: apply_single(nm, x_tf, l, k, st=st_all))(lam_ij[i], k_ij[i, :, 0])
                    for i, nm in enumerate(SINGLE_OPS)])                       # [nI, nJ, T, 5]
    x1 = curate_kline(x1)
    b = jax.vmap(jax.vmap(lambda l, k: sample_target(pvals_ss[src], src, l, k, k=k_targets)))(lam_ij, k_ij[:, :, 1])
    b = jax.lax.stop_gradient(b)                                              # [nI, nJ]
    za = (x1 - mu_sf[src]) / sd_sf[src]
    zb = (panel_x_stf[b] - mu_sf[b][:, :, None]) / sd_sf[b][:, :, None]
    yb = panel_y_s[b]
    if no_mix:
        z, y_mix = za.reshape(NUM_PAIRS, *x_tf.shape), jnp.full((NUM_PAIRS,), y, za.dtype)
        b = jnp.full_like(b, src)
    else:
        zs, ys = [], []
        for j, nm in enumerate(MIX_OPS):
            z, ym = jax.vmap(lambda a_, b_, yb_, l, k, nm=nm: apply_mix(nm, a_, b_, y, yb_, l, k, st=st_all))(
                za[:, j], zb[:, j], yb[:, j], lam_ij[:, j], k_ij[:, j, 2])
            zs.append(z)
            ys.append(ym)
        z = jnp.stack(zs, axis=1).reshape(NUM_PAIRS, *x_tf.shape)             # [16, T, 5], q = i*nJ + j
        y_mix = jnp.stack(ys, axis=1).reshape(NUM_PAIRS)
    x_mix = z * sd_sf[src] + mu_sf[src]
    out, y_out, _ = jax.vmap(lambda xm, ym, k: binary_mix(x_tf, xm, y, ym, k, b_max=b_max))(
        x_mix, y_mix, ks[:, 3])
    return curate_kline(out), y_out, b.reshape(NUM_PAIRS)


def manipulate_pair(x_tf, y, src, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf, q, lam, key, *,
                    st_all=False, k_targets=5, b_max=0.5, no_mix=False):
    """M for a traced pair index q in [0, 16): computes all pairs at strength lam and takes row q
    (under vmap a lax.switch would evaluate every branch anyway; this keeps the graph small)."""
    xs, ys, bs = manipulate_all_pairs(x_tf, y, src, panel_x_stf, panel_y_s, pvals_ss, mu_sf, sd_sf,
                                      jnp.full((NUM_PAIRS,), lam), key, st_all=st_all, k_targets=k_targets,
                                      b_max=b_max, no_mix=no_mix)
    return xs[q], ys[q], bs[q]
