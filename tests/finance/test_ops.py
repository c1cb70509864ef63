"""Closed forms and invariants of the manipulation module (spec A8)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import ops


def _pair(T=32, F=5, seed=0, dtype=jnp.float32):
    ka, kb = jax.random.split(jax.random.PRNGKey(seed))
    return (jax.random.normal(ka, (T, F), dtype), jax.random.normal(kb, (T, F), dtype))


def test_linear_mix_is_convex_and_mixes_labels():
    a, b = _pair()
    for lam in (0.0, 0.3, 0.8, 1.0):
        x, y = ops.linear_mix(a, b, 1.0, -2.0, lam)
        np.testing.assert_allclose(x, lam * a + (1 - lam) * b, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(y, lam * 1.0 + (1 - lam) * -2.0, rtol=1e-6)
        assert bool(jnp.all(x <= jnp.maximum(a, b) + 1e-6) and jnp.all(x >= jnp.minimum(a, b) - 1e-6))


@pytest.mark.parametrize("lam", [0.0, 0.13, 0.5, 0.77, 1.0])
def test_cut_mix_takes_exactly_floor_lambda_T_steps(lam):
    a, b = _pair(T=30)
    b = b + 100.0                               # b's rows are unmistakable
    x, y = ops.cut_mix(a, b, 0.0, 1.0, lam, jax.random.PRNGKey(3))
    from_b = np.asarray(jnp.all(x == b, axis=1))
    n = int(np.floor(lam * 30 + 1e-6))
    assert from_b.sum() == n
    if n:
        idx = np.nonzero(from_b)[0]
        assert idx[-1] - idx[0] + 1 == n          # one contiguous patch
    np.testing.assert_allclose(float(y), n / 30, rtol=1e-6)


def test_amplitude_mix_keeps_source_phase_float64():
    with jax.enable_x64(True):
        a, b = _pair(T=64, dtype=jnp.float64)
        lam = 0.35
        x, _ = ops.amplitude_mix(a, b, 0.0, 1.0, lam)
        fa, fb, fx = (jnp.fft.rfft(v, axis=0) for v in (a, b, x))
        mag = lam * jnp.abs(fa) + (1 - lam) * jnp.abs(fb)
        np.testing.assert_allclose(np.abs(fx), mag, rtol=1e-9, atol=1e-9)
        nz = np.abs(fa) > 1e-8
        # DC/Nyquist bins of a real signal are real: irfft drops any imaginary part there, so compare the
        # phase as a unit complex number on the non-zero bins.
        ua, ux = fa / jnp.abs(fa), fx / jnp.maximum(jnp.abs(fx), 1e-300)
        np.testing.assert_allclose(np.asarray(ux)[nz], np.asarray(ua)[nz], atol=1e-9)


def test_proposed_mix_limits_and_phase_shift():
    with jax.enable_x64(True):
        a, b = _pair(T=64, dtype=jnp.float64)
        x0, y0 = ops.proposed_mix(a, b, 2.0, 5.0, 0.0)
        np.testing.assert_allclose(x0, a, atol=1e-10)
        assert float(y0) == 2.0
        lam = 0.4
        x, y = ops.proposed_mix(a, b, 2.0, 5.0, lam)
        np.testing.assert_allclose(float(y), 0.6 * 2 + 0.4 * 5)
        fa, fb, fx = (jnp.fft.rfft(v, axis=0) for v in (a, b, x))
        dom = np.array(jnp.abs(fa) > 0.1 * jnp.max(jnp.abs(fa), axis=0, keepdims=True))
        dom[0] = dom[-1] = False                           # real-only bins
        want = jnp.angle(fa) + lam * ops.wrap_phase(jnp.angle(fb) - jnp.angle(fa))
        np.testing.assert_allclose(np.asarray(ops.wrap_phase(jnp.angle(fx) - want))[dom], 0.0, atol=1e-8)


def test_curation_makes_all_bars_valid_where_raw_ops_break_some(sp500_windows):
    x = jnp.asarray(sp500_windows.x[:64])                 # [N, 31, 5] real S&P 500 bars
    assert bool(jnp.all(ops.kline_valid(x)))
    keys = jax.random.split(jax.random.PRNGKey(0), x.shape[0])
    for op in (ops.jitter, ops.scaling):
        raw = jax.vmap(lambda xx, k: op(xx, 1.0, k))(x, keys)
        assert not bool(jnp.all(ops.kline_valid(raw)))      # mutation check: the op alone breaks bars
        assert bool(jnp.all(ops.kline_valid(ops.curate_kline(raw))))


def test_permutation_is_a_segment_shuffle():
    x = jnp.arange(30.0)[:, None] * jnp.ones((1, 5))
    same = ops.permutation(x, 0.0, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(same, x)                  # lam=0 -> 1 segment -> identity
    out = ops.permutation(x, 1.0, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(np.sort(out[:, 0]), x[:, 0])
    jumps = np.sum(np.diff(np.asarray(out[:, 0])) != 1)
    assert 1 <= jumps <= 4                                    # 5 contiguous segments, reordered


def test_magnitude_warp_spline_basis_interpolates():
    B = ops.spline_basis(30, 4)
    np.testing.assert_allclose(B.sum(1), 1.0, atol=1e-10)     # constants are reproduced
    x = jnp.ones((30, 5))
    np.testing.assert_allclose(ops.magnitude_warp(x, 0.0, jax.random.PRNGKey(0)), x, atol=1e-6)


def test_lambda_gradients_exact_ops_nonzero_and_st_identity():
    a, b = _pair(T=32)
    a = jnp.abs(a) + 1.0
    key = jax.random.PRNGKey(0)
    for name in ("jitter", "scaling", "magnitude_warp"):
        g = jax.grad(lambda l: jnp.sum(ops.apply_single(name, a, l, key) ** 2))(0.5)
        assert np.isfinite(g) and abs(float(g)) > 1e-6, name
    for name in ("linear_mix", "amplitude_mix", "proposed_mix"):
        g = jax.grad(lambda l: jnp.sum(ops.apply_mix(name, a, b, 0.0, 1.0, l, key)[0] ** 2))(0.5)
        assert np.isfinite(g) and abs(float(g)) > 1e-6, name
    for name in ops.SINGLE_OPS:
        jac = jax.jacobian(lambda l: ops.apply_single(name, a, l, key, st=True))(0.5)
        np.testing.assert_allclose(jac, np.ones_like(a), atol=1e-6)
    for name in ops.MIX_OPS:
        jac = jax.jacobian(lambda l: ops.apply_mix(name, a, b, 0.0, 1.0, l, key, st=True)[0])(0.5)
        np.testing.assert_allclose(jac, np.ones_like(a), atol=1e-6)
    # a discrete op uses straight-through even without st_all
    jac = jax.jacobian(lambda l: ops.apply_single("permutation", a, l, key))(0.5)
    np.testing.assert_allclose(jac, np.ones_like(a))


def test_alg1_prefers_strong_cointegration_at_small_lambda_and_never_source():
    pv = jnp.array([1.0, 0.001, 0.01, 0.05, 0.2, 0.4, 0.7, 0.95])
    src = 0
    means = []
    for lam in (0.1, 0.3, 0.7, 0.9):
        pr = ops.target_probs(pv, src, lam, k=5)
        np.testing.assert_allclose(float(pr.sum()), 1.0, rtol=1e-6)
        assert float(pr[src]) == 0.0
        assert int(jnp.sum(pr > 0)) == 5
        means.append(float(jnp.sum(pr * pv)))
        draws = jax.vmap(lambda k: ops.sample_target(pv, src, lam, k))(jax.random.split(jax.random.PRNGKey(1), 400))
        assert not bool(jnp.any(draws == src))
    # small lam -> low p (strong cointegration): every lam <= .5 mean is below every lam > .5 mean
    assert max(means[:2]) < min(means[2:])
    # Spec finding: Alg. 1 as written is NOT monotone within a half. beta = 1 - lam (lam <= .5) or lam
    # (lam > .5) makes the scores sharpest at lam = .5, so E[p] at lam = .7 exceeds E[p] at lam = .9.
    # Pin the algorithm's actual behaviour so a change to it is noticed (notes/finance_dataflow.md).
    assert means[2] > means[3]


def test_binary_mix_weight_limits():
    x = jax.random.normal(jax.random.PRNGKey(0), (4000,))
    np.testing.assert_allclose(float(ops.binary_mix_weight(x, x)), 0.0, atol=1e-6)
    xt = jnp.stack([x] * 5, axis=1)
    out, yy, b = ops.binary_mix(xt, xt, 1.0, 1.0, jax.random.PRNGKey(1))
    np.testing.assert_allclose(out, xt)
    assert float(b) == 0.0
    y_ind = jax.random.normal(jax.random.PRNGKey(2), (4000,))
    b_ind = float(ops.binary_mix_weight(x, y_ind))
    assert 0.4 < b_ind <= 0.5                                 # ~ b_max for independent series


def test_manipulate_shapes_validity_and_unknown_op():
    from jaxlab.finance import data
    panel, _ = data.synthetic_universe(1, num_assets=4, num_days=120)
    w = data.make_windows(panel, 20, 0, 120)
    mu, sd = data.fit_window_stats(w.panel_x, 60)
    pv = jnp.asarray(data.cointegration_pvalues(np.log(panel.ohlcv[..., 3]), 60))
    d = 5
    f = jax.jit(lambda s, k: ops.manipulate_all_pairs(jnp.asarray(w.panel_x[d])[s], jnp.asarray(w.panel_y[d])[s], s,
                                                      w.panel_x[d], w.panel_y[d], pv, mu, sd, jnp.full((16,), 0.7), k))
    for s in range(4):
        xs, ys, bs = f(s, jax.random.PRNGKey(s))
        assert xs.shape == (16, 21, 5) and ys.shape == (16,)
        assert bool(jnp.all(ops.kline_valid(xs)))
        assert not bool(jnp.any(bs == s))
        assert bool(jnp.all(jnp.isfinite(xs)))
    with pytest.raises(ValueError, match="unknown op names"):
        ops.apply_single("warp_drive", w.x[0], 0.5, jax.random.PRNGKey(0))


def _pair_args():
    """(manipulate's 8 leading args for asset 2 on day 7 of a 4-asset synthetic panel, lam [16], key)."""
    from jaxlab.finance import data
    panel, _ = data.synthetic_universe(4, num_assets=4, num_days=120)
    w = data.make_windows(panel, 16, 0, 120)
    mu, sd = data.fit_window_stats(w.panel_x, 60)
    pv = jnp.asarray(data.cointegration_pvalues(np.log(panel.ohlcv[..., 3]), 60))
    d, s = 7, 2
    args = (w.panel_x[d, s], w.panel_y[d, s], s, w.panel_x[d], w.panel_y[d], pv, mu, sd)
    return args, jnp.linspace(0.05, 0.95, 16), jax.random.PRNGKey(5)


def test_vectorised_all_pairs_agrees_with_reference_per_pair_manipulate():
    args, lam, key = _pair_args()
    s, mu, sd = args[2], args[6], args[7]
    xs, ys, bs = jax.jit(lambda l: ops.manipulate_all_pairs(*args, l, key))(lam)
    for q in (0, 5, 10, 15):                          # every single op and every mix-up once
        i, j = divmod(q, 4)
        xr, yr, br = ops.manipulate(*args, i, j, lam[q], jax.random.fold_in(key, q))
        assert int(br) == int(bs[q])
        np.testing.assert_allclose(xs[q], xr, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ys[q], yr, rtol=1e-4, atol=1e-7)


def test_without_mixup_pairs_keep_the_label_and_source_and_equal_the_single_op_then_binary_mix():
    """The "w/o mixup" ablation: step 3 (mix-up with a target asset) is skipped; the single op, its curation
    and the binary mix with the original use the same keys as the full manipulation."""
    args, lam, key = _pair_args()
    s, mu, sd = args[2], args[6], args[7]
    xs, ys, bs = jax.jit(lambda l: ops.manipulate_all_pairs(*args, l, key, no_mix=True))(lam)
    xm, ym, bm = jax.jit(lambda l: ops.manipulate_all_pairs(*args, l, key))(lam)
    np.testing.assert_array_equal(np.asarray(bs), np.full(16, s))           # no target asset
    np.testing.assert_allclose(ys, np.full(16, args[1]), rtol=1e-6)          # the label is kept
    assert float(jnp.max(jnp.abs(ym - ys))) > 1e-6                           # (the mix-ups move it)
    for q in (0, 7, 13):
        i, _ = divmod(q, 4)
        ks = jax.random.split(jax.random.fold_in(key, q), 4)
        x1 = ops.curate_kline(ops.apply_single(ops.SINGLE_OPS[i], jnp.asarray(args[0]), lam[q], ks[0]))
        z = (x1 - mu[s]) / sd[s]
        out, _, _ = ops.binary_mix(jnp.asarray(args[0]), z * sd[s] + mu[s], args[1], args[1], ks[3], b_max=0.5)
        np.testing.assert_allclose(xs[q], ops.curate_kline(out), rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(ops.kline_valid(xs)))
