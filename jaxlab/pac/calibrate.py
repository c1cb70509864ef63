"""PAC calibration of the thinking / non-thinking switch: marginal PAC, G-PAC, C-PAC, IPS, naive.

Composite model: answer directly (non-thinking f~) when U(x) < u, else think (f). With a loss l in
[0, 1] measured against the thinking answer, the routed risk R(u) = E[l 1{U < u}] is non-decreasing in
u. Calibration (PAC reasoning, reconstructed from the spec B3 — verify against the paper):

    cands = [-inf] + midpoints of the sorted scores + [+inf]      (or any fixed ascending grid)
    scan upward; STOP at the first candidate whose UCB(L_hat(u)) > eps; u_hat = the last one passed

P(R(u_hat) <= eps) >= 1 - alpha for any pointwise-valid UCB that is monotone in the count k (CP, HB,
Hoeffding); the upward scan (never "the largest u whose UCB passes") keeps this true even when a UCB
is not monotone in u (CLT). Strict "<": a point with U exactly equal to u_hat thinks.

Everything below is weighted: `weights_n` holds how often each row was drawn into the calibration set
(0 = not in it, counts > 1 for i.i.d. draws with replacement from a finite population), so R
calibrations over one population are one `vmap` over weight rows. Group variants run the same scan
per group on that group's rows (G-PAC); an empty group or one with fewer than
`min_n_for_routing(eps, alpha)` rows gets u = -inf (always think).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.pac import bounds as bounds_lib

log = logging.getLogger(__name__)
SCAN_BOUNDS = ("cp", "hb", "hoeffding", "clt", "naive", "wsr")


class PACParams(NamedTuple):
    """Typed hyperparameters of one calibration (hashable; static under jit)."""
    eps: float = 0.05          # risk tolerance epsilon
    alpha: float = 0.1         # miscoverage level
    bound: str = "cp"          # one of SCAN_BOUNDS ("naive" = no confidence correction)
    bonferroni: bool = False   # G-PAC simultaneous over groups: alpha / G per group


def check_params(p: PACParams) -> PACParams:
    """ValueError unless 0 < alpha < 1, eps > 0 (eps >= 1 allowed: route everything), bound known."""
    bounds_lib.check_level("alpha", p.alpha)
    if not (float(p.eps) > 0.0):
        raise ValueError(f"eps: expected a number in (0, 1] (>= 1 routes everything), got {p.eps}")
    if p.bound not in SCAN_BOUNDS:
        raise ValueError(f"bound: expected one of {SCAN_BOUNDS}, got {p.bound!r}")
    return p


def check_inputs(scores_n, losses_n, *others, names=()) -> None:
    """ValueError for mismatched lengths, non-finite scores or losses outside [0, 1] (host-side)."""
    s, l = np.asarray(scores_n), np.asarray(losses_n)
    if s.ndim != 1 or l.ndim != 1:
        raise ValueError(f"scores_n, losses_n: expected 1-D arrays, got shapes {s.shape} and {l.shape}")
    if s.shape != l.shape:
        raise ValueError(f"losses_n: expected the length of scores_n ({s.shape[0]}), got {l.shape[0]}")
    for name, o in zip(names, others):
        if o is not None and np.asarray(o).shape[0] != s.shape[0]:
            raise ValueError(f"{name}: expected length {s.shape[0]} (the number of scores), "
                             f"got {np.asarray(o).shape[0]}")
    if np.any(np.isnan(s)):
        raise ValueError("scores_n: expected no NaN")
    if np.any(~(l >= 0)) or np.any(l > 1):
        raise ValueError("losses_n: expected losses in [0, 1]")


def min_n_for_routing(eps: float, alpha: float) -> int:
    """Smallest n for which the CP bound can pass with zero losses: (1 - eps)^n <= alpha."""
    if eps >= 1:
        return 0
    return int(math.ceil(math.log(alpha) / math.log1p(-eps)))


def midpoint_candidates(scores) -> np.ndarray:
    """[-inf] + midpoints of the sorted unique scores + [+inf] (host, numpy; length = unique + 1)."""
    u = np.unique(np.asarray(scores, np.float64))
    mids = 0.5 * (u[1:] + u[:-1])
    return np.concatenate([[-np.inf], mids, [np.inf]]).astype(np.float32)


def sorted_candidates(scores_n):
    """jit-able: [-inf] + midpoints of the sorted scores (ties repeat) + [+inf]; [n + 1]."""
    s = jnp.sort(scores_n)
    return jnp.concatenate([jnp.array([-jnp.inf]), 0.5 * (s[1:] + s[:-1]), jnp.array([jnp.inf])])


def cumulative_sums(scores_n, losses_n, weights_n, cands_c):
    """s1_c = sum_i w_i l_i 1{U_i < u_c}, s2_c (same with l^2) and n = sum_i w_i; O(n + C).

    Args: scores_n, losses_n, weights_n: [n]; cands_c: [C] ascending.
    Returns: (s1_c [C], s2_c [C], n scalar).
    """
    C = cands_c.shape[0]
    bins = jnp.searchsorted(cands_c, scores_n, side="right")     # point i counts for c >= bins_i
    wl = weights_n * losses_n
    s1 = jnp.cumsum(jax.ops.segment_sum(wl, bins, num_segments=C + 1))[:C]
    s2 = jnp.cumsum(jax.ops.segment_sum(wl * losses_n, bins, num_segments=C + 1))[:C]
    return s1, s2, jnp.sum(weights_n)


def ucb_curve(scores_n, losses_n, weights_n, cands_c, *, bound: str, alpha):
    """UCB of the routed risk L(u_c) at every candidate; [C]. 'wsr' builds the [C, n] loss matrix."""
    if bound == "wsr":
        z = losses_n[None, :] * (scores_n[None, :] < cands_c[:, None])
        w = jnp.broadcast_to(weights_n > 0, z.shape)
        return bounds_lib.wsr_ucb(z, alpha=alpha, mask_n=w)
    s1, s2, n = cumulative_sums(scores_n, losses_n, weights_n, cands_c)
    return bounds_lib.ucb_from_sums(bound, s1, s2, n, alpha=alpha)


def first_failure_scan(ucb_c, cands_c, eps):
    """Upward scan: u_hat = the last candidate before the FIRST c >= 1 with ucb_c > eps.

    cands_c[0] must be -inf (always think); if no candidate fails, u_hat = cands_c[-1].
    Returns (u_hat scalar, number of candidates passed).
    """
    return scan_passes(ucb_c <= eps, cands_c)


CP_TABLE_MAX_N = 1 << 16


@functools.lru_cache(maxsize=64)
def cp_kmax_table(eps: float, alpha: float, max_n: int = CP_TABLE_MAX_N) -> np.ndarray:
    """kmax[n] = the largest k with CP-UCB(k, n) <= eps, i.e. P(Bin(n, eps) <= k) <= alpha; -1 if none.

    Exact (scipy, float64). The CP UCB is increasing in k, so "UCB(k, n) <= eps" == "k <= kmax[n]";
    the scan then needs no inverse beta at all. [max_n + 1] int32.
    """
    from scipy import stats
    n = np.arange(max_n + 1)
    if eps >= 1.0:
        return n.astype(np.int32)
    # n_min(k) = smallest n > k with P(Bin(n, eps) <= k) <= alpha (the cdf falls in n): bisection over n
    # for every k at once; then kmax[n] = #{k: n_min(k) <= n} - 1 (n_min increases with k).
    ks = np.arange(min(max_n, int(max_n * eps + 10 * np.sqrt(max_n) + 10)) + 1)
    lo, hi = ks + 1, np.full(ks.shape, max_n + 1)      # invariant: answer in [lo, hi]; hi = "never"
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = stats.binom.cdf(ks, mid, eps) <= alpha
        hi = np.where(ok & (lo < hi), mid, hi)
        lo = np.where(~ok & (lo < hi), mid + 1, lo)
    k = np.searchsorted(hi, n, side="right") - 1
    return np.minimum(k, n - 1).astype(np.int32)


def pass_curve(scores_n, losses_n, weights_n, cands_c, *, params: PACParams):
    """[C] bool: UCB(L_hat(u_c)) <= eps, computed without the bound's inverse where possible.

    cp: k <= kmax[n] from `cp_kmax_table` (n > 2^16 never passes: always think, which is safe);
    hb: the Hoeffding-Bentkus p-value at R = eps is < alpha (and mean <= eps); others: ucb <= eps.
    """
    eps, alpha = params.eps, params.alpha
    if params.bound in ("cp", "hb"):
        s1, _, n = cumulative_sums(scores_n, losses_n, weights_n, cands_c)
        if eps >= 1.0:
            return jnp.ones(cands_c.shape, bool)
        if params.bound == "cp":
            table = jnp.asarray(cp_kmax_table(float(eps), float(alpha)))
            ni = jnp.round(n).astype(jnp.int32)
            kmax = table[jnp.clip(ni, 0, CP_TABLE_MAX_N)]
            return (jnp.round(s1) <= kmax) & (ni <= CP_TABLE_MAX_N)
        mean = jnp.clip(s1 / jnp.maximum(n, 1.0), 0.0, 1.0)
        hoef = -n * bounds_lib._h1(jnp.minimum(mean, eps), jnp.float32(eps))
        bent = 1.0 + jnp.log(jnp.maximum(bounds_lib.binom_cdf(jnp.ceil(n * mean - 1e-4), n, eps), 1e-37))
        return (n > 0) & (mean <= eps) & (jnp.minimum(hoef, bent) < math.log(alpha))
    ucb = ucb_curve(scores_n, losses_n, weights_n, cands_c, bound=params.bound, alpha=alpha)
    return ucb <= eps


def scan_passes(pass_c, cands_c):
    """Upward scan over pass flags (pass_c[0], the -inf candidate, is ignored): (u_hat, n_pass)."""
    n_pass = jnp.sum(jnp.cumprod(pass_c[1:].astype(jnp.int32)))
    return cands_c[n_pass], n_pass


def pac_threshold(scores_n, losses_n, weights_n, cands_c, *, params: PACParams):
    """Marginal PAC threshold (jit-able, vmappable over weight rows). Returns u_hat (scalar).

    Args: scores_n, losses_n, weights_n: [n]; cands_c: [C] ascending with cands_c[0] = -inf.
    """
    return scan_passes(pass_curve(scores_n, losses_n, weights_n, cands_c, params=params), cands_c)[0]


def group_thresholds(scores_n, losses_n, groups_n, weights_n, cands_c, *, num_groups: int,
                     params: PACParams):
    """G-PAC: one PAC scan per group on that group's rows; [G] thresholds (empty group -> -inf).

    With params.bonferroni the level is alpha / G per group (simultaneous guarantee over groups).
    """
    alpha = params.alpha / num_groups if params.bonferroni else params.alpha
    p = params._replace(alpha=alpha)

    def one(g):
        w = weights_n * (groups_n == g)
        return pac_threshold(scores_n, losses_n, w, cands_c, params=p)
    return jax.vmap(one)(jnp.arange(num_groups))


def route(scores_n, groups_n, thresholds_g):
    """Direct (non-thinking) answer mask: U_i < u_{g(i)}; [n] bool."""
    return scores_n < thresholds_g[groups_n]


def group_counts(groups_n, weights_n, num_groups: int) -> np.ndarray:
    return np.asarray(jax.ops.segment_sum(jnp.asarray(weights_n, jnp.float32), jnp.asarray(groups_n),
                                          num_segments=num_groups))


def log_small_groups(groups_n, weights_n, *, num_groups: int, params: PACParams, names=None) -> list[int]:
    """Logs (and returns) the groups with fewer calibration points than routing needs: they always think."""
    need = min_n_for_routing(params.eps, params.alpha / num_groups if params.bonferroni else params.alpha)
    counts = group_counts(groups_n, weights_n, num_groups)
    small = [g for g in range(num_groups) if counts[g] < need]
    for g in small:
        name = names[g] if names is not None else g
        log.warning("group %s has %d calibration points < %d = log(alpha)/log(1-eps): it always thinks "
                    "(u = -inf)", name, int(counts[g]), need)
    return small


def calibrate_groups(scores_n, losses_n, groups_n, *, num_groups: int, params: PACParams,
                     weights_n=None, cands_c=None, names=None) -> np.ndarray:
    """Host wrapper of `group_thresholds` with input checks and the small-group log; [G] numpy."""
    check_params(params)
    check_inputs(scores_n, losses_n, groups_n, weights_n, names=("groups_n", "weights_n"))
    g = np.asarray(groups_n)
    if g.size and (g.min() < 0 or g.max() >= num_groups):
        raise ValueError(f"groups_n: expected ids in [0, {num_groups}), got range [{g.min()}, {g.max()}]")
    if params.bound == "cp" and np.any((np.asarray(losses_n) != 0) & (np.asarray(losses_n) != 1)):
        raise ValueError("losses_n: the 'cp' bound needs binary losses; use 'hb' or 'wsr' for [0, 1] losses")
    w = np.ones(len(g), np.float32) if weights_n is None else np.asarray(weights_n, np.float32)
    cands = midpoint_candidates(scores_n) if cands_c is None else np.asarray(cands_c, np.float32)
    log_small_groups(g, w, num_groups=num_groups, params=params, names=names)
    return np.asarray(_group_thresholds_jit(jnp.asarray(scores_n, jnp.float32),
                                            jnp.asarray(losses_n, jnp.float32), jnp.asarray(g),
                                            jnp.asarray(w), jnp.asarray(cands),
                                            num_groups=int(num_groups), params=params))


def calibrate_marginal(scores_n, losses_n, *, params: PACParams, weights_n=None, cands_c=None) -> float:
    """Marginal PAC reasoning (one threshold for all inputs); float (+-inf allowed)."""
    return float(calibrate_groups(scores_n, losses_n, np.zeros(len(np.asarray(scores_n)), np.int32),
                                  num_groups=1, params=params, weights_n=weights_n, cands_c=cands_c)[0])


def naive_threshold(scores_n, losses_n, weights_n, cands_c, *, eps):
    """Naive baseline: the largest u with empirical L_hat(u) <= eps (no confidence correction)."""
    return pac_threshold(scores_n, losses_n, weights_n, cands_c,
                         params=PACParams(eps=eps, alpha=0.5, bound="naive"))


def naive_group_thresholds(scores_n, losses_n, groups_n, weights_n, cands_c, *, num_groups: int, eps):
    """Naive per-group baseline (spec B4 [R]): per group, the largest u with empirical L_hat_g(u) <= eps.

    No confidence correction, so each group's risk exceeds eps about half the time. [G] thresholds.
    """
    return group_thresholds(scores_n, losses_n, groups_n, weights_n, cands_c, num_groups=num_groups,
                            params=PACParams(eps=eps, alpha=0.5, bound="naive"))


_group_thresholds_jit = jax.jit(group_thresholds, static_argnames=("num_groups", "params"))


# ----------------------------------------------------------------------------- C-PAC: learned groups
class KMeans(NamedTuple):
    centroids: jax.Array   # [M, D]
    inertia: jax.Array     # scalar: weighted sum of squared distances to the nearest centroid


def assign(x_nd, centroids_md):
    """Nearest-centroid labels [n] (int32)."""
    d = jnp.sum((x_nd[:, None, :] - centroids_md[None]) ** 2, axis=-1)
    return jnp.argmin(d, axis=-1).astype(jnp.int32)


def kmeans(key, x_nd, weights_n, *, num_clusters: int, iters: int = 25, n_init: int = 4) -> KMeans:
    """Weighted k-means (k-means++ seeding, Lloyd steps in lax.scan, best of n_init by inertia).

    Rows with weight 0 never influence the centroids (C-PAC fits on D_1 only through these weights).
    Args: key; x_nd: [n, D]; weights_n: [n] >= 0 with a positive sum. Returns KMeans.
    """
    x = jnp.asarray(x_nd, jnp.float32)
    w = jnp.asarray(weights_n, jnp.float32)

    def d2(c):                                                    # [n] squared distance to nearest
        return jnp.min(jnp.sum((x[:, None] - c[None]) ** 2, -1), -1)

    def one(key):
        k0, key = jax.random.split(key)
        first = jax.random.choice(k0, x.shape[0], p=w / w.sum())
        cent = jnp.zeros((num_clusters, x.shape[1])).at[:].set(x[first])

        def seed_step(cent, inp):
            i, k = inp
            mask = jnp.arange(num_clusters) < i
            dist = jnp.min(jnp.where(mask[None], jnp.sum((x[:, None] - cent[None]) ** 2, -1), jnp.inf), -1)
            p = w * dist
            p = jnp.where(p.sum() > 0, p / jnp.maximum(p.sum(), 1e-30), w / w.sum())
            j = jax.random.choice(k, x.shape[0], p=p)
            return cent.at[i].set(x[j]), None

        if num_clusters > 1:
            keys = jax.random.split(key, num_clusters - 1)
            cent, _ = jax.lax.scan(seed_step, cent, (jnp.arange(1, num_clusters), keys))

        def lloyd(cent, _):
            lab = assign(x, cent)
            oh = jax.nn.one_hot(lab, num_clusters) * w[:, None]          # [n, M]
            cnt = oh.sum(0)
            new = (oh.T @ x) / jnp.maximum(cnt, 1e-12)[:, None]
            return jnp.where(cnt[:, None] > 0, new, cent), None

        cent, _ = jax.lax.scan(lloyd, cent, None, length=iters)
        return KMeans(cent, jnp.sum(w * d2(cent)))

    runs = jax.vmap(one)(jax.random.split(key, n_init))
    best = jnp.argmin(runs.inertia)
    return KMeans(runs.centroids[best], runs.inertia[best])


class CPACResult(NamedTuple):
    thresholds: jax.Array   # [M] per-cluster thresholds
    centroids: jax.Array    # [M, D]
    w_cluster: jax.Array    # [n] weights of D_1 (used only to fit k-means)
    w_calib: jax.Array      # [n] weights of D_2 (used only to calibrate); joint: both = weights_n


def cpac_thresholds(key, emb_nd, scores_n, losses_n, weights_n, cands_c, *, num_clusters: int,
                    params: PACParams, cluster_frac: float = 0.3, joint: bool = False,
                    iters: int = 25, n_init: int = 4) -> CPACResult:
    """C-PAC: k-means on D_1, G-PAC on the disjoint D_2 with the learned clusters (jit-able).

    Each calibration draw goes to D_1 with probability `cluster_frac` (binomial thinning of the
    weights, so D_1 and D_2 never share a draw). `joint=True` is the HEURISTIC that clusters and
    calibrates on the same data (no split; the per-cluster guarantee is then not covered by the
    argument). Route a test x with thresholds[assign(x, centroids)].
    """
    k1, k2 = jax.random.split(key)
    w = jnp.asarray(weights_n, jnp.float32)
    if joint:
        w1 = w2 = w
    else:
        w1 = jax.random.binomial(k1, w, cluster_frac).astype(jnp.float32)
        w1 = jnp.minimum(w1, w)
        w2 = w - w1
    km = kmeans(k2, emb_nd, w1, num_clusters=num_clusters, iters=iters, n_init=n_init)
    lab = assign(jnp.asarray(emb_nd, jnp.float32), km.centroids)
    thr = group_thresholds(scores_n, losses_n, lab, w2, cands_c, num_groups=num_clusters, params=params)
    return CPACResult(thr, km.centroids, w1, w2)


def random_partition(key, num_points: int, *, num_clusters: int):
    """Random cluster labels [num_points] int32, uniform on [0, num_clusters), independent of the data.

    The C-PAC ablation with random clusters (spec B4 [R]): G-PAC on these labels is valid per random
    cluster (they do not depend on the calibration data) but, being mixtures of the true groups, they
    inherit the marginal method's failure on a hard group. Label population rows with it, then index.
    """
    return jax.random.randint(key, (num_points,), 0, num_clusters).astype(jnp.int32)


def cpac_random_thresholds(key, labels_n, scores_n, losses_n, weights_n, cands_c, *, num_clusters: int,
                           params: PACParams, cluster_frac: float = 0.3) -> CPACResult:
    """C-PAC ablation: G-PAC with random cluster labels `labels_n` (from `random_partition`) on the same
    D_2 share as C-PAC (each draw is set aside with probability `cluster_frac`, unused, so both methods
    calibrate on equally many points). centroids are empty ([M, 0]); route with thresholds[labels]."""
    w = jnp.asarray(weights_n, jnp.float32)
    w1 = jnp.minimum(jax.random.binomial(key, w, cluster_frac).astype(jnp.float32), w)
    w2 = w - w1
    thr = group_thresholds(scores_n, losses_n, labels_n, w2, cands_c, num_groups=num_clusters, params=params)
    return CPACResult(thr, jnp.zeros((num_clusters, 0)), w1, w2)


# ----------------------------------------------------------------------------- IPS label saving
def ips_losses(key, losses_n, pi_n):
    """Z_i = l_i xi_i / pi_i with xi_i ~ Bern(pi_i): unbiased for l_i; returns (z [n], xi [n] bool).

    Only rows with xi_i = 1 need a label (a thinking-model call); E[Z_i] = l_i for every fixed row.
    """
    pi = jnp.broadcast_to(jnp.asarray(pi_n, jnp.float32), jnp.shape(losses_n))
    xi = jax.random.uniform(key, pi.shape) < pi
    return jnp.where(xi, losses_n / pi, 0.0), xi


def ips_threshold(key, scores_n, losses_n, pi_n, cands_c, *, eps, alpha, bound: str = "wsr"):
    """PAC labels / PAC reasoning v1 (transductive): threshold from IPS losses of a labelled subsample.

    Z(u) = l xi 1{U < u} / pi is unbiased for the batch loss L(u); its range is [0, 1/min(pi)], so
    the UCB is taken on Z * min(pi) in [0, 1] and rescaled. bound in ("wsr", "hoeffding", "clt", "cp").
    "cp" (exact, fast): needs a constant scalar pi and binary losses; then Z * pi = l * xi is Bernoulli
    with mean pi L(u), so "CP-UCB(Z * pi) / pi <= eps" is the k_max-table scan at level pi * eps.
    Returns (u_hat, xi [n] labelled rows).
    """
    if bound not in ("wsr", "hoeffding", "clt", "cp"):
        raise ValueError(f"bound: expected 'wsr', 'hoeffding', 'clt' or 'cp' for IPS, got {bound!r}")
    if bound == "cp":
        if jnp.ndim(pi_n) != 0:
            raise ValueError("pi_n: the 'cp' IPS bound needs one constant labelling probability (a scalar)")
        xi = jax.random.uniform(key, jnp.shape(losses_n)) < pi_n
        lab = jnp.where(xi, losses_n, 0.0)                                  # = Z * pi, in {0, 1}
        pass_c = pass_curve(scores_n, lab, jnp.ones_like(lab), cands_c,
                            params=PACParams(eps=float(eps) * float(pi_n), alpha=alpha, bound="cp"))
        return scan_passes(pass_c, cands_c)[0], xi
    z, xi = ips_losses(key, losses_n, pi_n)
    scale = jnp.min(jnp.broadcast_to(jnp.asarray(pi_n, jnp.float32), jnp.shape(losses_n)))
    zs = jnp.clip(z * scale, 0.0, 1.0)
    w = jnp.ones_like(zs)
    if bound == "wsr":
        ucb = ucb_curve(scores_n, zs, w, cands_c, bound="wsr", alpha=alpha)
    else:
        s1, s2, n = cumulative_sums(scores_n, zs, w, cands_c)
        ucb = bounds_lib.ucb_from_sums(bound, s1, s2, n, alpha=alpha)
    u, _ = first_failure_scan(ucb / scale, cands_c, eps)
    return u, xi


# ----------------------------------------------------------------------------- oracle thresholds
def oracle_threshold(grid_u, risk_u, eps) -> float:
    """Largest grid point with population risk <= eps (risk non-decreasing); -inf if none."""
    grid_u, risk_u = np.asarray(grid_u), np.asarray(risk_u)
    ok = risk_u <= eps + 1e-12
    n_pass = int(np.cumprod(ok).sum())
    return -np.inf if n_pass == 0 else float(grid_u[n_pass - 1])
