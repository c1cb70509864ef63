"""One-sided upper confidence bounds (UCBs) on the mean of a loss in [0, 1] at level 1 - alpha.

Each function is pure and elementwise (broadcasts over any leading axes: candidates, splits, groups),
so a whole grid of bounds is one jitted call. Every bound returns values in [0, 1]: a mean of losses
in [0, 1] never exceeds 1, so each one CLIPS at 1 (stated per function), and n = 0 gives 1 (no data,
no guarantee).

  clopper_pearson_ucb(k, n)      exact binomial: BetaInv(1 - alpha; k + 1, n - k), 1 at k = n.
                                 JAX has no inverse incomplete beta: we bisect (60 steps) on
                                 `jax.scipy.special.betainc`, which is increasing in p.
  hoeffding_ucb(mean, n)         mean + sqrt(log(1/alpha) / (2 n)).
  hoeffding_bentkus_ucb(mean, n) RCPS (Bates et al. 2021, Prop. 5 / Thm. 1): the largest R whose
                                 p-value min(exp(-n h1(mean ^ R, R)), e * P(Bin(n, R) <= ceil(n mean)))
                                 is >= alpha. The public rcps code (`core/bounds.py: HB_mu_plus`) uses
                                 floor(n mean); we follow the paper (ceil). Both agree for binary losses.
  wsr_ucb(x)                     Waudby-Smith & Ramdas betting (the `WSR_mu_plus` of rcps/pac-labels):
                                 needs the samples in order, not only their mean.
  clt_ucb(mean, std, n)          mean + z_{1-alpha} std / sqrt(n): asymptotic only, undercovers for
                                 small n (std = 0 when every loss is 0 gives UCB = mean).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, ndtri, xlogy

BOUNDS = ("cp", "hb", "hoeffding", "wsr", "clt")
_BISECT = 40


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_level(name: str, value) -> float:
    """Raises ValueError unless 0 < value < 1 (alpha, eps-style levels)."""
    if not _concrete(value):
        return value
    v = float(value)
    if not (0.0 < v < 1.0) or math.isnan(v):
        raise ValueError(f"{name}: expected a number in (0, 1), got {value}")
    return v


def _check_counts(k, n) -> None:
    if _concrete(k) and _concrete(n):
        k_, n_ = np.asarray(k, np.float64), np.asarray(n, np.float64)
        if np.any(n_ < 0):
            raise ValueError(f"n: expected >= 0, got min {n_.min()}")
        if np.any(k_ < 0) or np.any(k_ > n_):
            raise ValueError("k: expected 0 <= k <= n elementwise")


def _check_mean(mean) -> None:
    if _concrete(mean):
        m = np.asarray(mean, np.float64)
        if np.any(~(m >= 0.0)) or np.any(m > 1.0 + 1e-6):
            raise ValueError("mean: expected values in [0, 1] (losses must lie in [0, 1])")


_CHUNK = 4096


def _chunked(core, a, b, alpha):
    """Runs an elementwise jitted core on concrete inputs in fixed [4096] chunks: ONE compile per bound
    whatever the input shape (betainc-heavy bisections are slow to compile). Tracers go straight in."""
    if not (_concrete(a) and _concrete(b)):
        return core(a, b, alpha)
    a, b = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32))
    shape, a, b = a.shape, a.reshape(-1), b.reshape(-1)
    pad = (-a.size) % _CHUNK
    a, b = np.concatenate([a, np.zeros(pad, np.float32)]), np.concatenate([b, np.ones(pad, np.float32)])
    out = [np.asarray(core(a[i:i + _CHUNK], b[i:i + _CHUNK], alpha)) for i in range(0, a.size, _CHUNK)]
    return jnp.asarray(np.concatenate(out)[:int(np.prod(shape))].reshape(shape))


def _bisect(f, lo, hi, steps: int = _BISECT):
    """Smallest x in [lo, hi] with f(x) True for f monotone False -> True (elementwise); returns hi-side."""
    def body(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        t = f(mid)
        return jnp.where(t, lo, mid), jnp.where(t, mid, hi)
    lo, hi = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return hi


def binom_cdf(k, n, p):
    """P(Bin(n, p) <= k) for real k (floored), elementwise; = 1 for k >= n, 0 for k < 0."""
    k = jnp.floor(jnp.asarray(k, jnp.float32))
    n = jnp.asarray(n, jnp.float32)
    p = jnp.asarray(p, jnp.float32)
    inside = (k >= 0) & (k < n)
    a = jnp.where(inside, n - k, 1.0)
    b = jnp.where(inside, k + 1.0, 1.0)
    val = betainc(a, b, jnp.clip(1.0 - p, 0.0, 1.0))
    return jnp.where(k >= n, 1.0, jnp.where(k < 0, 0.0, val))


@jax.jit
def _cp_core(k, n, alpha):
    k = jnp.asarray(k, jnp.float32)
    n = jnp.asarray(n, jnp.float32)
    k, n = jnp.broadcast_arrays(k, n)
    full = k >= n
    a, b = k + 1.0, jnp.where(full, 1.0, n - k)
    u = _bisect(lambda p: betainc(a, b, p) >= 1.0 - alpha, jnp.zeros_like(k), jnp.ones_like(k))
    return jnp.where(full, 1.0, u)


def clopper_pearson_ucb(k, n, *, alpha: float):
    """Exact one-sided Clopper-Pearson UCB of a binomial proportion. Clips: equals 1 at k = n (and n = 0).

    u = BetaInv(1 - alpha; k + 1, n - k), i.e. the p with P(Bin(n, p) <= k) = alpha.
    Computed by a 40-step bisection on jax.scipy.special.betainc (float32; |error| < 1e-5 against
    scipy.stats.beta.ppf in tests).

    Args:
      k: [...] number of losses equal to 1 (integer-valued), 0 <= k <= n.
      n: [...] sample size (broadcasts with k).
      alpha: miscoverage level in (0, 1).
    Returns:
      [...] float32 upper bound in [0, 1].
    >>> round(float(clopper_pearson_ucb(0, 10, alpha=0.1)), 4)  # 1 - 0.1 ** (1 / 10)
    0.2057
    """
    alpha = check_level("alpha", alpha)
    _check_counts(k, n)
    return _chunked(_cp_core, k, n, jnp.float32(alpha) if _concrete(alpha) else alpha)


def hoeffding_ucb(mean, n, *, alpha: float):
    """Hoeffding UCB mean + sqrt(log(1/alpha) / (2 n)), clipped at 1; 1 for n = 0.

    Args: mean: [...] empirical mean of losses in [0, 1]; n: [...] sample size; alpha in (0, 1).
    Returns: [...] float32.
    """
    alpha = check_level("alpha", alpha)
    _check_mean(mean)
    mean = jnp.asarray(mean, jnp.float32)
    n = jnp.asarray(n, jnp.float32)
    u = mean + jnp.sqrt(jnp.log(1.0 / jnp.float32(alpha)) / (2.0 * jnp.maximum(n, 1.0)))
    return jnp.where(n > 0, jnp.minimum(u, 1.0), 1.0)


def _h1(y, mu):
    """Bernoulli KL divergence h1(y, mu) = y log(y/mu) + (1-y) log((1-y)/(1-mu))."""
    return xlogy(y, y) - xlogy(y, mu) + xlogy(1.0 - y, 1.0 - y) - xlogy(1.0 - y, 1.0 - mu)


def hoeffding_bentkus_ucb(mean, n, *, alpha: float):
    """Hoeffding-Bentkus UCB (RCPS, Bates et al. 2021). Clips at 1; 1 for n = 0.

    p_HB(R) = min( exp(-n h1(min(mean, R), R)), e * P(Bin(n, R) <= ceil(n mean)) );
    UCB = sup{R in [mean, 1]: p_HB(R) >= alpha}, found by bisection (p_HB decreases in R >= mean).

    Args: mean: [...] empirical mean in [0, 1]; n: [...] sample size; alpha in (0, 1).
    Returns: [...] float32.
    """
    alpha = check_level("alpha", alpha)
    _check_mean(mean)
    return _chunked(_hb_core, mean, n, jnp.float32(alpha) if _concrete(alpha) else alpha)


@jax.jit
def _hb_core(mean, n, alpha):
    mean = jnp.asarray(mean, jnp.float32)
    n = jnp.asarray(n, jnp.float32)
    mean, n = jnp.broadcast_arrays(mean, n)
    kk = jnp.ceil(n * mean - 1e-4)       # ceil(n * mean), robust to float round-off of integers
    log_alpha = jnp.log(alpha)

    def rejected(r):
        r = jnp.clip(r, 1e-7, 1.0 - 1e-7)
        hoef = -n * _h1(jnp.minimum(mean, r), r)
        bent = 1.0 + jnp.log(jnp.maximum(binom_cdf(kk, n, r), 1e-37))
        return jnp.minimum(hoef, bent) < log_alpha

    u = _bisect(rejected, mean, jnp.ones_like(mean))
    never = ~rejected(jnp.ones_like(mean))
    return jnp.where((n > 0) & ~never, jnp.minimum(u, 1.0), 1.0)


def wsr_ucb(x_n, *, alpha: float, mask_n=None):
    """Waudby-Smith-Ramdas betting UCB of the mean of x in [0, 1] (the rcps/pac-labels WSR). Clips at 1.

    Predictable plug-in bets: muhat_t = (sum_{s<=t} x_s + 1/2) / (t + 1),
    sigma2_t = (sum_{s<=t} (x_s - muhat_s)^2 + 1/4) / (t + 1), nu_t = min(1, sqrt(2 log(1/alpha) /
    (n sigma2_{t-1}))) (sigma2_0 = 1/4); wealth K_t(m) = prod_{s<=t} (1 - nu_s (x_s - m)). The UCB is the
    smallest m with max_t K_t(m) >= 1/alpha (bisection; K increases in m), 1 if no m < 1 qualifies.
    The bound depends on the ORDER of the samples (a random calibration order is fine).

    Args:
      x_n: [..., n] losses in [0, 1]; leading axes are batch axes (candidates, repetitions).
      alpha: level in (0, 1).
      mask_n: optional [..., n] bool/0-1; masked-out entries are skipped (a group's subset).
    Returns:
      [...] float32.
    """
    alpha = check_level("alpha", alpha)
    x = jnp.asarray(x_n, jnp.float32)
    if _concrete(x) and (np.any(~(np.asarray(x) >= 0)) or np.any(np.asarray(x) > 1 + 1e-6)):
        raise ValueError("x_n: expected losses in [0, 1]")
    m = jnp.ones_like(x) if mask_n is None else jnp.broadcast_to(jnp.asarray(mask_n, jnp.float32), x.shape)
    return _wsr_core(x, m, jnp.float32(alpha) if _concrete(alpha) else alpha)


@jax.jit
def _wsr_core(x, m, alpha):
    t = jnp.cumsum(m, axis=-1)
    n = t[..., -1:]
    muhat = (jnp.cumsum(x * m, axis=-1) + 0.5) / (1.0 + t)
    s2 = (jnp.cumsum(m * (x - muhat) ** 2, axis=-1) + 0.25) / (1.0 + t)
    s2_prev = jnp.concatenate([jnp.full_like(s2[..., :1], 0.25), s2[..., :-1]], axis=-1)
    nu = jnp.minimum(jnp.sqrt(2.0 * jnp.log(1.0 / alpha) / (jnp.maximum(n, 1.0) * s2_prev)), 1.0)
    target = jnp.log(1.0 / alpha)

    def rejected(mu):
        logw = jnp.cumsum(m * jnp.log1p(-nu * (x - mu[..., None])), axis=-1)
        return jnp.max(logw, axis=-1) >= target

    shape = x.shape[:-1]
    u = _bisect(rejected, jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), steps=24)
    ok = rejected(jnp.full(shape, 1.0 - 1e-6, jnp.float32))
    return jnp.where((n[..., 0] > 0) & ok, u, 1.0)


def clt_ucb(mean, std, n, *, alpha: float):
    """CLT (Wald) UCB mean + z_{1-alpha} std / sqrt(n), clipped at 1; 1 for n = 0. Asymptotic only.

    Args: mean: [...] empirical mean; std: [...] sample std (ddof=1); n: [...]; alpha in (0, 1).
    Returns: [...] float32.
    """
    alpha = check_level("alpha", alpha)
    _check_mean(mean)
    mean = jnp.asarray(mean, jnp.float32)
    n = jnp.asarray(n, jnp.float32)
    z = ndtri(1.0 - jnp.float32(alpha))
    u = mean + z * jnp.asarray(std, jnp.float32) / jnp.sqrt(jnp.maximum(n, 1.0))
    return jnp.where(n > 0, jnp.minimum(u, 1.0), 1.0)


def ucb_from_sums(bound: str, s1, s2, n, *, alpha: float):
    """UCB of a mean from sufficient statistics: s1 = sum of losses, s2 = sum of squares, n = count.

    `bound` in ("cp", "hb", "hoeffding", "clt", "naive"); "naive" returns the empirical mean itself
    (no confidence correction; the baseline). "cp" needs binary losses (s1 integer). "wsr" needs the
    samples, see `wsr_ucb`. Every entry is 1 where n = 0.
    """
    n = jnp.asarray(n, jnp.float32)
    s1 = jnp.asarray(s1, jnp.float32)
    mean = jnp.clip(s1 / jnp.maximum(n, 1.0), 0.0, 1.0)
    if bound == "cp":
        out = clopper_pearson_ucb(jnp.clip(jnp.round(s1), 0.0, n), n, alpha=alpha)
    elif bound == "hoeffding":
        out = hoeffding_ucb(mean, n, alpha=alpha)
    elif bound == "hb":
        out = hoeffding_bentkus_ucb(mean, n, alpha=alpha)
    elif bound == "clt":
        var = (jnp.asarray(s2, jnp.float32) - n * mean ** 2) / jnp.maximum(n - 1.0, 1.0)
        out = clt_ucb(mean, jnp.sqrt(jnp.maximum(var, 0.0)), n, alpha=alpha)
    elif bound == "naive":
        out = mean
    else:
        raise ValueError(f"bound: expected one of ('cp', 'hb', 'hoeffding', 'clt', 'naive'), got {bound!r}")
    return jnp.where(n > 0, out, 1.0)
