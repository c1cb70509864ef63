"""Data layer: validation errors, chronological splits, no leakage, drift ground truth, metrics goldens."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import data, metrics, monitor


def _bars(T=10, S=2):
    c = np.linspace(10, 20, T)[:, None] * np.ones((1, S))
    return np.stack([c, c * 1.01, c * 0.99, c, np.full_like(c, 1e6)], axis=-1)


def test_validate_panel_names_offending_rows():
    dates = np.datetime64("2020-01-01") + np.arange(10)
    data.validate_panel(dates, _bars())
    x = _bars()
    x[3, 1, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*rows 3 \(2020-01-04\)"):
        data.validate_panel(dates, x)
    d2 = dates.copy()
    d2[6] = d2[4]
    with pytest.raises(ValueError, match=r"dates: expected strictly increasing.*rows 6 \(2020-01-05\)"):
        data.validate_panel(d2, _bars())
    x = _bars()
    x[7, 0, 1] = x[7, 0, 3] * 0.5                      # high below close
    with pytest.raises(ValueError, match=r"invalid bars in rows 7.*assets \['a'\]"):
        data.make_panel(dates, x, ["a", "b"])
    with pytest.raises(ValueError, match="ohlcv: expected shape"):
        data.validate_panel(dates, np.ones((10, 2, 4)))
    x = _bars()
    x[2, 0, 2] = -1.0
    with pytest.raises(ValueError, match=r"positive prices.*rows 2"):
        data.validate_panel(dates, x)


def test_real_panel_is_valid_and_reports_dropped_days():
    p = data.real_panel()
    assert p.names == ("sp500", "nasdaq", "wti")
    assert p.num_days > 4900
    assert p.meta["dropped_days"]["wti_missing_or_closed"] > 0   # excluded days are counted, not hidden
    data.validate_panel(p.dates, p.ohlcv)


def test_windows_are_causal_and_labels_next_day():
    panel, _ = data.synthetic_universe(0, num_assets=2, num_days=80)
    w = data.make_windows(panel, 10, 0, 80)
    c = panel.ohlcv[..., 3]
    t = w.days[5]
    np.testing.assert_allclose(w.panel_y[5], c[t + 1] / c[t] - 1, rtol=1e-5)
    np.testing.assert_allclose(w.panel_x[5, :, -1, 3], c[t] / c[t - 10], rtol=1e-5)
    w2 = data.make_windows(panel, 10, 0, 40)
    assert (w2.days + 1 < 40).all()
    with pytest.raises(ValueError, match="fractions"):
        data.chronological_split(100, (0.5, 0.5, 0.2))


def test_no_leakage_train_fitted_statistics_unchanged_by_appended_rows():
    panel, _ = data.synthetic_universe(3, num_assets=4, num_days=400)
    lc = np.log(panel.ohlcv[..., 3])
    n_tr = 240
    short = lc[:n_tr + 1]                              # train rows + one
    p_full = data.cointegration_pvalues(lc, n_tr)
    p_short = data.cointegration_pvalues(short, n_tr)
    np.testing.assert_array_equal(p_full, p_short)
    m1, s1 = data.fit_scaler(lc, n_tr)
    m2, s2 = data.fit_scaler(lc[:n_tr], n_tr)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(s1, s2)
    w = data.make_windows(panel, 20, 0, 400)
    a = data.fit_window_stats(w.panel_x, 150)
    b = data.fit_window_stats(w.panel_x[:150], 150)
    np.testing.assert_array_equal(a[0], b[0])
    st1 = data.stl_components(lc[:, 0], n_tr)
    st2 = data.stl_components(lc[:n_tr, 0], n_tr)
    np.testing.assert_array_equal(st1["trend"], st2["trend"])
    # mutation check: fitting on everything does change the statistics
    assert not np.allclose(data.fit_scaler(lc, len(lc))[0], m1)


def test_synthetic_planted_pairs_are_the_most_cointegrated():
    panel, truth = data.synthetic_universe(0, num_assets=6, num_days=600)
    pv = data.cointegration_pvalues(np.log(panel.ohlcv[..., 3]), 360)
    for a, b in truth.coint_pairs:
        assert pv[a, b] < 0.01
        others = [pv[a, j] for j in range(6) if j not in (a, b)]
        assert pv[a, b] < min(others)


def test_drift_validation_closer_to_test_than_train_on_regime_universe():
    panel, _ = data.synthetic_universe(1, num_assets=8, num_days=1500, drift_strength=2.0)
    f = data.daily_features(panel).reshape(panel.num_days - 1, -1)
    a, b = data.chronological_split(len(f))
    tr, va, te = f[:a], f[a:b], f[b:]
    d_tr = monitor.drift_distances(tr, te)
    d_va = monitor.drift_distances(va, te)
    for k in ("psi", "ks", "mmd"):
        assert d_va[k] < d_tr[k], (k, d_va, d_tr)


def test_drift_distances_closed_forms():
    x = np.random.default_rng(0).normal(size=2000)
    assert float(monitor.psi(x, x)) < 1e-9
    assert float(monitor.ks_statistic(np.array([0.0, 1.0]), np.array([2.0, 3.0]))) == 1.0
    assert float(monitor.mmd2(x[:200, None], x[:200, None])) < 1e-6
    assert float(monitor.mmd2(x[:200, None], x[:200, None] + 3.0)) > 0.5


def test_metric_goldens():
    np.testing.assert_allclose(float(metrics.max_drawdown(jnp.array([1.0, 1.2, 0.9, 1.1]))), 0.25, rtol=1e-6)
    r = jnp.array([0.01, -0.02, 0.03, 0.0])
    want = np.sqrt(252) * np.mean(r) / np.std(r)
    np.testing.assert_allclose(float(metrics.sharpe_ratio(r)), want, rtol=1e-5)
    np.testing.assert_allclose(float(metrics.risk_aware_loss(jnp.array([1.0, 3.0]), gamma=0.0)), 2.0)
    np.testing.assert_allclose(float(metrics.risk_aware_loss(jnp.array([1.0, 3.0]), gamma=0.5)), 2.5)
    pred = jnp.array([[0.1, 0.2, 0.3, 0.4]])
    y = jnp.array([[1.0, 2.0, 3.0, 5.0]])
    assert float(metrics.rank_information_coefficient(pred, y)[0]) == pytest.approx(1.0)
    assert float(metrics.information_coefficient(pred, -y)[0]) < -0.9
    # long top-1 short bottom-1 of S=4 with 10bp cost: day 0 turnover 2 (open both legs)
    ls = metrics.long_short_returns(jnp.concatenate([pred, pred]), jnp.concatenate([y, y]), top_k=1, cost=1e-3)
    np.testing.assert_allclose(np.asarray(ls), [5.0 - 1.0 - 2e-3, 4.0], rtol=1e-6)
