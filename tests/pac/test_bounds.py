"""Bounds: closed forms, agreement with scipy, coverage over 5,000 repetitions, monotonicity, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxlab.pac import bounds

ALPHA = 0.1
PS = (0.01, 0.05, 0.2)
NS = (20, 100, 1000)
REPS = 5000


def test_cp_at_zero_is_closed_form_and_matches_scipy():
    n = np.array([20, 100, 1000])
    u0 = np.asarray(bounds.clopper_pearson_ucb(np.zeros(3), n, alpha=ALPHA))
    np.testing.assert_allclose(u0, 1 - ALPHA ** (1 / n), atol=2e-5)
    k = np.array([0, 1, 3, 10, 57, 99, 100])
    u = np.asarray(bounds.clopper_pearson_ucb(k, 100, alpha=ALPHA))
    ref = np.where(k == 100, 1.0, stats.beta.ppf(1 - ALPHA, k + 1, np.maximum(100 - k, 1)))
    np.testing.assert_allclose(u, ref, atol=2e-5)
    assert u[-1] == 1.0


def test_hb_and_hoeffding_closed_forms():
    # Hoeffding: mean + sqrt(log(1/alpha)/(2n)), clipped at 1
    u = np.asarray(bounds.hoeffding_ucb(np.array([0.0, 0.2, 0.99]), 50, alpha=ALPHA))
    np.testing.assert_allclose(u, np.minimum([0.0, 0.2, 0.99] + np.sqrt(np.log(10) / 100), 1), atol=1e-6)
    # HB at mean 0: min(exp(-n h1(0,R)) = (1-R)^n, e (1-R)^n) = alpha  ->  R = 1 - alpha^(1/n)
    n = 100
    hb = float(bounds.hoeffding_bentkus_ucb(0.0, n, alpha=ALPHA))
    assert abs(hb - (1 - ALPHA ** (1 / n))) < 1e-4
    # HB is never tighter than CP for binary losses, and tighter than sqrt-Hoeffding for small means
    k = np.arange(0, 30)
    hb = np.asarray(bounds.hoeffding_bentkus_ucb(k / n, n, alpha=ALPHA))
    cp = np.asarray(bounds.clopper_pearson_ucb(k, n, alpha=ALPHA))
    ho = np.asarray(bounds.hoeffding_ucb(k / n, n, alpha=ALPHA))
    assert np.all(hb >= cp - 1e-5) and np.all(hb[:10] < ho[:10])


@pytest.fixture(scope="module")
def bernoulli_draws():
    """k ~ Bin(n, p) for every (p, n) pair: [len(PS), len(NS), REPS]."""
    key = jax.random.PRNGKey(0)
    p = jnp.asarray(PS)[:, None, None]
    n = jnp.asarray(NS, jnp.float32)[None, :, None]
    k = jax.random.binomial(key, jnp.broadcast_to(n, (3, 3, REPS)), jnp.broadcast_to(p, (3, 3, REPS)))
    return np.asarray(k), np.asarray(p), np.asarray(n)


def _se():
    return np.sqrt(ALPHA * (1 - ALPHA) / REPS)


@pytest.mark.parametrize("name", ["cp", "hb", "hoeffding"])
def test_coverage_count_bounds(bernoulli_draws, name):
    k, p, n = bernoulli_draws
    # The bound is a function of (k, n) only: evaluate it once per distinct pair (a few hundred instead
    # of 45,000 bisections), then map back to every repetition. Same miss rates, a fraction of the time.
    nn = np.broadcast_to(n, k.shape)
    pairs, inv = np.unique(np.stack([k.ravel(), nn.ravel()], 1), axis=0, return_inverse=True)
    ku, nu = pairs[:, 0], pairs[:, 1]
    if name == "cp":
        u = bounds.clopper_pearson_ucb(ku, nu, alpha=ALPHA)
    elif name == "hb":
        u = bounds.hoeffding_bentkus_ucb(ku / nu, nu, alpha=ALPHA)
    else:
        u = bounds.hoeffding_ucb(ku / nu, nu, alpha=ALPHA)
    u = np.asarray(u)[inv.ravel()].reshape(k.shape)
    miss = (u < p).mean(-1)                                  # [3 p, 3 n]
    assert np.all(miss <= ALPHA + 3 * _se()), (name, miss)


def _wsr_worst_miss(ns):
    key = jax.random.PRNGKey(1)
    worst = 0.0
    for n in ns:
        for i, p in enumerate(PS):
            x = jax.random.bernoulli(jax.random.fold_in(key, 10 * n + i), p, (REPS, n)).astype(jnp.float32)
            miss = float((bounds.wsr_ucb(x, alpha=ALPHA) < p).mean())
            worst = max(worst, miss)
    return worst


def test_coverage_wsr():
    worst = _wsr_worst_miss((20, 100))
    assert worst <= ALPHA + 3 * _se(), worst


@pytest.mark.slow
def test_coverage_wsr_n1000():
    worst = _wsr_worst_miss((1000,))
    assert worst <= ALPHA + 3 * _se(), worst


def test_clt_undercovers_small_n_rare_events(bernoulli_draws):
    """The reason CLT is not a default: with n=20, p=0.05, k=0 is common and gives UCB=0 < p."""
    k, p, n = bernoulli_draws
    mean = k / n
    std = np.sqrt(np.maximum(n * mean * (1 - mean) / np.maximum(n - 1, 1), 0))
    u = np.asarray(bounds.clt_ucb(mean, std, n, alpha=ALPHA))
    assert (u[1, 0] < p[1, 0]).mean() > 0.3


def test_wsr_masked_equals_subset():
    x = (np.random.default_rng(0).random((4, 60)) < 0.2).astype(np.float32)
    mask = np.zeros_like(x, bool)
    mask[:, ::2] = True
    a = np.asarray(bounds.wsr_ucb(x, alpha=ALPHA, mask_n=mask))
    b = np.asarray(bounds.wsr_ucb(x[:, ::2], alpha=ALPHA))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_ucbs_monotone_in_k():
    n = 200
    k = np.arange(n + 1)
    for u in (bounds.clopper_pearson_ucb(k, n, alpha=ALPHA), bounds.hoeffding_ucb(k / n, n, alpha=ALPHA),
              bounds.hoeffding_bentkus_ucb(k / n, n, alpha=ALPHA)):
        u = np.asarray(u)
        assert np.all(np.diff(u) >= -1e-6) and u.max() <= 1.0 and u[-1] == 1.0


def test_empty_sample_gives_one():
    assert float(bounds.clopper_pearson_ucb(0, 0, alpha=ALPHA)) == 1.0
    assert float(bounds.hoeffding_ucb(0.0, 0, alpha=ALPHA)) == 1.0
    assert float(bounds.ucb_from_sums("hb", 0.0, 0.0, 0, alpha=ALPHA)) == 1.0


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        bounds.clopper_pearson_ucb(1, 10, alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        bounds.hoeffding_ucb(0.1, 10, alpha=alpha)


def test_bad_counts_and_means():
    with pytest.raises(ValueError, match="k"):
        bounds.clopper_pearson_ucb(11, 10, alpha=ALPHA)
    with pytest.raises(ValueError, match="mean"):
        bounds.hoeffding_bentkus_ucb(1.5, 10, alpha=ALPHA)
    with pytest.raises(ValueError, match="x_n"):
        bounds.wsr_ucb(np.array([0.2, -0.1]), alpha=ALPHA)
    with pytest.raises(ValueError, match="bound"):
        bounds.ucb_from_sums("bogus", 1.0, 1.0, 10, alpha=ALPHA)
