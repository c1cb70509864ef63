"""Kalman filter over token log-ratios: spec §8 tests 1-6 (loop/scan/associative_scan parity,
causality, data-free gains, closed-form limits, steady-state noise, switch frequency)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.rl import (filter_weight_matrix, kalman_filter, kalman_filter_loop, kalman_gains,
                       steady_state_gain, switch_frequency, mean_run_length,
                       low_freq_power_fraction)
from jaxlab.rl.kalman import combine, ema_gains


def _ref_filter(z, Q, V, P0, x0):
    """Textbook scalar Kalman filter, one row, float64, gains recomputed alongside (no table)."""
    x, P, out = float(x0), float(P0), []
    for zt in z:
        Pp = P + Q
        K = Pp / (Pp + V)
        x = x + K * (zt - x)
        P = (1 - K) * Pp
        out.append(x)
    return np.array(out)


@pytest.mark.parametrize("T", [1, 7, 128])
@pytest.mark.parametrize("parallel", [False, True])
def test_filter_matches_float64_loop_in_float32(T, parallel):
    rng = np.random.default_rng(T)
    for trial in range(3):
        Q, V, P0 = 10 ** rng.uniform(-6, 0), 10 ** rng.uniform(-1, 1), rng.uniform(0.1, 2)
        x0 = rng.normal(size=4)
        z = rng.normal(size=(4, T)) * 0.5
        K = kalman_gains(T, Q=Q, V=V, P0=P0)
        out = np.asarray(kalman_filter(jnp.asarray(z, jnp.float32), K, x0=jnp.asarray(x0, jnp.float32),
                                       parallel=parallel))
        ref = np.stack([_ref_filter(z[b], Q, V, P0, x0[b]) for b in range(4)])
        np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("parallel", [False, True])
def test_filter_matches_loop_1e12_in_x64(parallel):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for T in (1, 7, 128):
            Q, V, P0 = 1e-3, 0.7, 1.3
            z = rng.normal(size=(3, T))
            K = kalman_gains(T, Q=Q, V=V, P0=P0)
            out = np.asarray(kalman_filter(jnp.asarray(z), K, x0=0.25, parallel=parallel))
            assert out.dtype == np.float64
            ref = np.stack([_ref_filter(z[b], Q, V, P0, 0.25) for b in range(3)])
            np.testing.assert_allclose(out, ref, atol=1e-12, rtol=0)
            np.testing.assert_allclose(kalman_filter_loop(z, K, x0=0.25), ref, atol=1e-12, rtol=0)


def test_scan_equals_associative_scan_equals_loop_with_padded_rows():
    rng = np.random.default_rng(1)
    B, T = 5, 40
    lengths = np.array([40, 1, 17, 33, 0])
    mask = np.arange(T)[None, :] < lengths[:, None]
    z = np.where(mask, rng.normal(size=(B, T)), 0.0).astype(np.float32)
    K = kalman_gains(T, Q=1e-2, V=1.0, P0=1.0)
    seq = np.asarray(jax.jit(lambda z, m: kalman_filter(z, K, mask_bt=m, parallel=False))(z, mask))
    par = np.asarray(jax.jit(lambda z, m: kalman_filter(z, K, mask_bt=m, parallel=True))(z, mask))
    loop = kalman_filter_loop(z, K, mask_bt=mask)
    np.testing.assert_allclose(seq, par, atol=1e-6)
    np.testing.assert_allclose(par, loop, atol=1e-5)
    for b in range(B):  # batched, padded rows == each row filtered alone at its own length
        n = lengths[b]
        if n == 0:
            np.testing.assert_array_equal(par[b], 0.0)
            continue
        alone = np.asarray(kalman_filter(z[b:b + 1, :n], K))[0]
        np.testing.assert_allclose(par[b, :n], alone, atol=1e-6)
        np.testing.assert_allclose(par[b, n:], alone[-1], atol=1e-6)  # masked positions hold


def test_combine_is_associative():
    rng = np.random.default_rng(2)
    e = [tuple(rng.normal(size=3)) for _ in range(3)]
    e = [(np.array(a), np.array(b)) for a, b, _ in e]
    left = combine(combine(e[0], e[1]), e[2])
    right = combine(e[0], combine(e[1], e[2]))
    np.testing.assert_allclose(left, right, atol=1e-12)


@pytest.mark.parametrize("parallel", [False, True])
def test_filter_is_causal(parallel):
    T = 12
    K = kalman_gains(T, Q=1e-2, V=1.0, P0=1.0)
    z = jnp.asarray(np.random.default_rng(3).normal(size=(T,)), jnp.float32)
    f = lambda z_t: kalman_filter(z_t[None], K, parallel=parallel)[0]
    J = np.asarray(jax.jacfwd(f)(z))
    assert np.all(np.triu(J, k=1) == 0.0)
    assert np.all(np.diag(J) > 0)
    # Jacobian == the explicit weight matrix W[t, s] = K_s prod_{u=s+1..t} (1 - K_u).
    np.testing.assert_allclose(J, filter_weight_matrix(K), atol=1e-6)
    for t in (0, 5, 10):  # changing the future leaves the past bitwise equal
        z2 = z.at[t + 1:].set(100.0)
        a, b = np.asarray(f(z)), np.asarray(f(z2))
        assert np.array_equal(a[:t + 1], b[:t + 1])
        assert not np.array_equal(a[t + 1:], b[t + 1:])


def test_gains_are_data_independent_and_converge_to_steady_state():
    Q, V = 1e-3, 1.0
    K = kalman_gains(4000, Q=Q, V=V, P0=1.0)
    # The same table is the one the filter uses for any data: the filter is linear in z.
    rng = np.random.default_rng(4)
    z1, z2 = rng.normal(size=(1, 50)), rng.normal(size=(1, 50))
    lin = lambda z: np.asarray(kalman_filter(jnp.asarray(z, jnp.float32), K))
    np.testing.assert_allclose(lin(z1 + 2 * z2), lin(z1) + 2 * lin(z2), atol=1e-5)
    assert np.all(np.diff(K) <= 0)
    P = (-Q + math.sqrt(Q * Q + 4 * Q * V)) / 2
    K_inf = (P + Q) / (P + Q + V)
    assert steady_state_gain(Q, V) == pytest.approx(K_inf, rel=1e-12)
    assert K[-1] == pytest.approx(K_inf, rel=1e-6)
    assert K[-1] >= K_inf * (1 - 1e-9)
    assert kalman_gains(4000, Q=Q, V=V, P0=1.0) is K  # cached


def test_spec_gain_values():
    K = kalman_gains(1000, Q=1e-6, V=1.0, P0=1.0)
    np.testing.assert_allclose(K[:5], [0.5, 1 / 3, 0.25, 0.2, 1 / 6], rtol=1e-3)
    assert K[99] == pytest.approx(0.0099, abs=2e-4)
    assert K[999] == pytest.approx(0.0013, abs=2e-4)
    assert kalman_gains(3, Q=0.0, V=1.0, init="first_obs")[0] == 1.0


def test_limits_prefix_mean_identity_and_constant():
    rng = np.random.default_rng(5)
    T = 64
    z = rng.normal(size=(3, T)).astype(np.float32)
    K0 = kalman_gains(T, Q=0.0, V=1.0, P0=1.0)
    np.testing.assert_allclose(K0, 1.0 / np.arange(2, T + 2), rtol=1e-12)
    x = np.asarray(kalman_filter(z, K0))
    np.testing.assert_allclose(x, np.cumsum(z, axis=1) / np.arange(2, T + 2), atol=1e-5)
    x_id = np.asarray(kalman_filter(z, kalman_gains(T, Q=1e6, V=1.0, P0=1.0)))
    np.testing.assert_allclose(x_id, z, atol=1e-5)
    c = np.full((1, 2000), 0.7, np.float32)
    x_c = np.asarray(kalman_filter(c, kalman_gains(2000, Q=1e-3, V=1.0)))
    assert abs(x_c[0, -1] - 0.7) < 1e-4
    # first_obs starts exactly at the first observation
    x_f = np.asarray(kalman_filter(z, kalman_gains(T, Q=1e-2, V=1.0, init="first_obs")))
    np.testing.assert_allclose(x_f[:, 0], z[:, 0], atol=1e-7)


def test_steady_state_noise_variance():
    Q, V, c = 1e-4, 1.0, 0.3
    T = 4000
    K = kalman_gains(T, Q=Q, V=V, P0=1.0)
    z = c + jax.random.normal(jax.random.PRNGKey(0), (64, T))
    x = np.asarray(kalman_filter(z, K))
    K_inf = steady_state_gain(Q, V)
    predicted = K_inf / (2 - K_inf) * V
    measured = np.var(x[:, 1000:] - c)  # pooled over 64 rows (mean error ~0)
    assert abs(measured / predicted - 1) < 0.2, (measured, predicted)


def test_filtering_cuts_switches_and_keeps_slow_drift():
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    B, T = 32, 200
    drift = jnp.linspace(0, 0.1, T)[None, :]
    spikes = jax.random.bernoulli(k1, 0.3, (B, T)) * jax.random.normal(k2, (B, T))
    z = drift + spikes
    mask = jnp.ones((B, T), bool)
    x = kalman_filter(z, kalman_gains(T, Q=1e-3, V=1.0))
    raw, filt = float(switch_frequency(z, mask)), float(switch_frequency(x, mask))
    assert raw > 0.3 and filt < raw / 4, (raw, filt)
    assert float(mean_run_length(x, mask)) > 4 * float(mean_run_length(z, mask))
    assert float(low_freq_power_fraction(z, mask)) == pytest.approx(0.25, abs=0.05)  # white
    assert float(low_freq_power_fraction(x, mask)) > 0.8
    assert float(jnp.mean(x[:, -20:])) == pytest.approx(0.1, abs=0.05)  # still tracks the drift


@pytest.mark.parametrize("kwargs, name", [
    (dict(T=0, Q=1.0), "T"), (dict(T=3, Q=-1.0), "Q"), (dict(T=3, Q=1.0, V=0.0), "V"),
    (dict(T=3, Q=1.0, V=-1.0), "V"), (dict(T=3, Q=1.0, P0=-1.0), "P0"),
    (dict(T=3, Q=1.0, init="zero"), "init")])
def test_bad_gain_arguments_raise(kwargs, name):
    T = kwargs.pop("T")
    with pytest.raises(ValueError, match=name):
        kalman_gains(T, **kwargs)


def test_bad_filter_inputs_raise():
    K = kalman_gains(5, Q=1e-2)
    with pytest.raises(ValueError, match="z_bt"):
        kalman_filter(jnp.zeros((5,)), K)
    with pytest.raises(ValueError, match="gains_t"):
        kalman_filter(jnp.zeros((2, 6)), K)
    with pytest.raises(ValueError, match="mask_bt"):
        kalman_filter(jnp.zeros((2, 5)), K, mask_bt=jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match="alpha"):
        ema_gains(5, alpha=1.5)


# ------------------------------------------------------------------ issue 19: the chunked filter
def _mask_batches(T, rng):
    """Two [5, T] masks: rows of suffix pads only (full, L=0, L=1, L=T-1, L=T//2), and one with holes
    and leading pads (takes the run-time fallback branch)."""
    L = np.array([T, 0, 1, max(T - 1, 0), T // 2])
    suffix = np.arange(T)[None, :] < L[:, None]
    holes = rng.random((5, T)) < 0.7
    holes[0, : T // 3] = False                        # leading pads
    holes[1] = suffix[1]
    return suffix, holes


@pytest.mark.parametrize("T, gains", [(1, "prior"), (65, "prior"), (300, "prior"), (300, "first_obs"),
                                      (300, "Q=1"), (300, "Q=1e6")])
def test_chunked_matches_scan_associative_and_loop_with_masks(T, gains):
    rng = np.random.default_rng(T)
    K = {"prior": kalman_gains(T, Q=1e-3), "first_obs": kalman_gains(T, Q=1e-2, init="first_obs"),
         "Q=1": kalman_gains(T, Q=1.0), "Q=1e6": kalman_gains(T, Q=1e6)}[gains]
    z = rng.normal(size=(5, T)).astype(np.float32)
    x0 = rng.normal(size=5).astype(np.float32)
    f = jax.jit(lambda z, m, x0, method: kalman_filter(z, K, mask_bt=m, x0=x0, method=method),
                static_argnames="method")
    for m in (np.ones((5, T), bool),) + _mask_batches(T, rng):
        ref = kalman_filter_loop(z, K, mask_bt=m, x0=x0)
        methods = ("chunked", "scan", "associative") if T == 65 else ("chunked",)
        outs = {meth: np.asarray(f(z, m, x0, meth)) for meth in methods}
        for meth, out in outs.items():
            np.testing.assert_allclose(out, ref, atol=2e-5, err_msg=meth)
        for meth in methods[1:]:
            np.testing.assert_allclose(outs["chunked"], outs[meth], atol=2e-5, err_msg=meth)
    unmasked = np.asarray(jax.jit(lambda z: kalman_filter(z, K, x0=x0, method="chunked"))(z))
    np.testing.assert_allclose(unmasked, kalman_filter_loop(z, K, x0=x0), atol=2e-5)


def test_chunked_pads_hold_and_never_affect_valid_positions():
    T = 200
    rng = np.random.default_rng(7)
    K = kalman_gains(T, Q=1e-3)
    suffix, _ = _mask_batches(T, rng)
    z = rng.normal(size=(5, T)).astype(np.float32)
    z2 = np.where(suffix, z, 1e3).astype(np.float32)   # garbage in the pads
    f = jax.jit(lambda z, m: kalman_filter(z, K, mask_bt=m, method="chunked"))
    a, b = np.asarray(f(z, suffix)), np.asarray(f(z2, suffix))
    assert np.array_equal(a, b)
    np.testing.assert_array_equal(a[1], 0.0)            # L = 0: the state stays x0
    for r, n in ((2, 1), (3, T - 1), (4, T // 2)):
        np.testing.assert_array_equal(a[r, n:], a[r, n - 1])


@pytest.mark.parametrize("masked", ["none", "suffix", "holes"])
def test_chunked_gradients_match_scan(masked):
    T = 150
    rng = np.random.default_rng(11)
    K = kalman_gains(T, Q=1e-2, init="first_obs" if masked == "holes" else "prior")
    suffix, holes = _mask_batches(T, rng)
    m = {"none": None, "suffix": suffix, "holes": holes}[masked]
    z = jnp.asarray(rng.normal(size=(5, T)), jnp.float32)
    x0 = jnp.asarray(rng.normal(size=5), jnp.float32)
    w = jnp.asarray(rng.normal(size=(5, T)), jnp.float32)

    def grads(method):
        loss = lambda z, x0: jnp.sum(w * jnp.exp(kalman_filter(z, K, mask_bt=m, x0=x0, method=method)))
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(z, x0)
    gc, gs = grads("chunked"), grads("scan")
    np.testing.assert_allclose(gc[0], gs[0], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(gc[1], gs[1], atol=1e-4, rtol=1e-4)
    if m is not None:                                   # no gradient reaches a masked input
        assert np.all(np.asarray(gc[0])[~m] == 0.0)


def test_chunked_is_causal_and_matches_weight_matrix():
    T = 140                                             # > the dense limit: two chunk levels
    K = kalman_gains(T, Q=1e-2)
    z = jnp.asarray(np.random.default_rng(3).normal(size=(T,)), jnp.float32)
    f = lambda z_t: kalman_filter(z_t[None], K, method="chunked")[0]
    J = np.asarray(jax.jacfwd(f)(z))
    assert np.all(np.triu(J, k=1) == 0.0)
    np.testing.assert_allclose(J, filter_weight_matrix(K), atol=1e-6)
    for t in (0, 63, 64, 100):
        a, b = np.asarray(f(z)), np.asarray(f(z.at[t + 1:].set(100.0)))
        assert np.array_equal(a[:t + 1], b[:t + 1])


def test_chunked_matches_loop_1e12_in_x64():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for T in (130, 700):
            K = kalman_gains(T, Q=1e-3, V=0.7, P0=1.3)
            z = rng.normal(size=(3, T))
            out = np.asarray(kalman_filter(jnp.asarray(z), K, x0=0.25, method="chunked"))
            assert out.dtype == np.float64
            np.testing.assert_allclose(out, kalman_filter_loop(z, K, x0=0.25), atol=1e-12, rtol=0)


def test_bad_method_raises_and_traced_gains_fall_back():
    K = kalman_gains(80, Q=1e-2)
    with pytest.raises(ValueError, match="method"):
        kalman_filter(jnp.zeros((2, 80)), K, method="fft")
    z = jnp.asarray(np.random.default_rng(1).normal(size=(2, 80)), jnp.float32)
    traced = jax.jit(lambda z, K: kalman_filter(z, K, method="chunked"))(z, jnp.asarray(K, jnp.float32))
    np.testing.assert_allclose(traced, kalman_filter_loop(z, K), atol=1e-5)


# ------------------------------------------------- issue 19 items 1-2: the faster chunked filter
@pytest.mark.parametrize("gains", ["Q=1e-6", "first_obs", "Q=1"])
def test_chunked_three_levels_and_level_two_fallback_match_loop(gains):
    """T = 3000: chunk ends recurse through a second chunked level (Q=1e-6, first_obs), or (Q=1, whose
    16-chunk products underflow) through the associative-scan fallback; every mask kind, float32."""
    T = 3000
    rng = np.random.default_rng(19)
    K = {"Q=1e-6": kalman_gains(T, Q=1e-6), "first_obs": kalman_gains(T, Q=1e-3, init="first_obs"),
         "Q=1": kalman_gains(T, Q=1.0)}[gains]
    z = (rng.normal(size=(5, T)) + 0.3).astype(np.float32)
    x0 = rng.normal(size=5).astype(np.float32)
    f = jax.jit(lambda z, m, x0: kalman_filter(z, K, mask_bt=m, x0=x0, method="chunked"))
    for m in (None,) + _mask_batches(T, rng):
        ref = kalman_filter_loop(z, K, mask_bt=m, x0=x0)
        out = np.asarray(f(z, m, x0))
        np.testing.assert_allclose(out, ref, atol=2e-6 * max(1.0, np.abs(ref).max()), rtol=0)


def test_chunked_masked_pads_may_hold_inf_and_nan():
    T = 400
    rng = np.random.default_rng(5)
    K = kalman_gains(T, Q=1e-3)
    suffix, _ = _mask_batches(T, rng)
    z = rng.normal(size=(5, T)).astype(np.float32)
    bad = np.where(suffix, z, np.where(rng.random((5, T)) < 0.5, np.inf, np.nan)).astype(np.float32)
    f = jax.jit(lambda z, m: kalman_filter(z, K, mask_bt=m, method="chunked"))
    out = np.asarray(f(bad, suffix))
    np.testing.assert_array_equal(out, np.asarray(f(np.where(suffix, z, 0.0), suffix)))
    np.testing.assert_allclose(out, kalman_filter_loop(np.where(suffix, z, 0.0), K, mask_bt=suffix), atol=2e-6)
    g = jax.jit(jax.grad(lambda z: jnp.sum(kalman_filter(z, K, mask_bt=suffix, method="chunked"))))(bad)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[~suffix] == 0.0)


def test_unmasked_chunked_is_right_whatever_its_internal_branch():
    """The unmasked path materializes its scale pass behind a `lax.cond` on z[0, 0] == z[0, 0]; a NaN
    there takes the other (identical) branch: row 0 is NaN from t = 0, the other rows are unchanged."""
    T = 300
    K = kalman_gains(T, Q=1e-3)
    z = np.random.default_rng(8).normal(size=(4, T)).astype(np.float32)
    f = jax.jit(lambda z: kalman_filter(z, K, method="chunked"))
    z_nan = z.copy()
    z_nan[0, 0] = np.nan
    a, b = np.asarray(f(z)), np.asarray(f(z_nan))
    np.testing.assert_allclose(a, kalman_filter_loop(z, K), atol=2e-6)
    np.testing.assert_array_equal(b[1:], a[1:])
    assert np.all(np.isnan(b[0]))


@pytest.mark.parametrize("T", [1, 2, 7, 300, 65537])
def test_prefix_lengths_matches_brute_force(T):
    from jaxlab.rl.kalman import _prefix_lengths
    rng = np.random.default_rng(T)
    B = 6
    L = rng.integers(0, T + 1, size=B)
    L[:2] = (0, T)
    prefix = np.arange(T)[None, :] < L[:, None]
    cases = [prefix, np.zeros((B, T), bool), np.ones((B, T), bool)]
    if T > 1:
        shifted = np.roll(prefix, 1, axis=1)             # leading pad (or wrap-around) in some rows
        swapped = prefix.copy()
        swapped[2, [0, T - 1]] = [False, True]           # same count and a hole: still not a prefix
        cases += [shifted, swapped, rng.random((B, T)) < 0.5]
    for m in cases:
        ok, n_b = jax.jit(_prefix_lengths)(m)
        want = bool(np.all(m[:, 1:] <= m[:, :-1])) if T > 1 else True
        assert bool(ok) == want
        np.testing.assert_array_equal(np.asarray(n_b), m.sum(1))


def test_chunked_masked_matches_loop_1e12_in_x64():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        T = 700
        K = kalman_gains(T, Q=1e-3, V=0.7, P0=1.3)
        z = rng.normal(size=(5, T))
        for m in _mask_batches(T, rng):
            out = np.asarray(kalman_filter(jnp.asarray(z), K, mask_bt=m, x0=0.25, method="chunked"))
            assert out.dtype == np.float64
            np.testing.assert_allclose(out, kalman_filter_loop(z, K, mask_bt=m, x0=0.25), atol=1e-12, rtol=0)


def test_auto_method_picks_scan_only_for_tiny_arrays():
    from jaxlab.rl.kalman import _auto_method
    assert _auto_method(8, 256, True) == "scan"
    assert _auto_method(256, 32, True) == "scan"         # T < 64
    assert _auto_method(128, 96, True) == "chunked"
    assert _auto_method(256, 4096, True) == "chunked"
    assert _auto_method(256, 4096, False) == "associative"
