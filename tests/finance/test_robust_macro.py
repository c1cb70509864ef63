"""Macro data with release lags and the synthetic regime-switching macro world (paper B)."""

import numpy as np
import pytest

from jaxlab.finance import macro as M


def test_release_lag_value_used_on_date_d_was_published_by_d():
    dates = np.arange(np.datetime64("2006-01-01"), np.datetime64("2009-12-31"))
    mp = M.real_macro(dates)
    ok = ~np.isnat(mp.source_release)
    assert ok.all()                                         # every series has history before 2006
    assert (mp.source_release <= dates[:, None]).all()
    # CPI for January 2008 (period start 2008-01-01) is first used on 2008-03-01 (period end + 1 month)
    src = M.real_macro_sources()
    start, v, _ = src["core_cpi_yoy"]
    jan = v[np.nonzero(start == np.datetime64("2008-01-01"))[0][0]]
    i_feb, i_mar = np.nonzero(dates == np.datetime64("2008-02-29"))[0][0], np.nonzero(dates == np.datetime64("2008-03-01"))[0][0]
    col = mp.names.index("core_cpi_yoy")
    assert mp.values[i_mar, col] == pytest.approx(jan)
    assert mp.values[i_feb, col] != pytest.approx(jan)
    # quarterly: 2008Q1 (start 2008-01-01) is released 2008-07-01
    assert M.release_dates(np.array(["2008-01-01"], "datetime64[D]"), freq="Q")[0] == np.datetime64("2008-07-01")


def test_align_released_forward_fills_and_is_nan_before_first_release():
    rel = np.array(["2000-02-01", "2000-03-01"], "datetime64[D]")
    out, idx = M.align_released(rel, np.array([1.0, 2.0]), np.array(["2000-01-15", "2000-02-01", "2000-02-20",
                                                                       "2000-03-05"], "datetime64[D]"))
    assert np.isnan(out[0]) and idx[0] == -1
    np.testing.assert_array_equal(out[1:], [1.0, 1.0, 2.0])


def test_french_index_conversion():
    idx = np.array([192607, 201811], "datetime64[ns]")
    np.testing.assert_array_equal(M.french_dates(idx), np.array(["1926-07-01", "2018-11-01"], "datetime64[D]"))
    with pytest.raises(ValueError, match="index"):
        M.french_dates(np.array(["2018-11-01"], "datetime64[ns]"))


def test_minmax_uses_train_rows_only():
    x = np.random.default_rng(0).standard_normal((100, 3))
    lo, hi = M.minmax_fit(x, 60)
    x2 = np.concatenate([x, 50 * np.ones((10, 3))])
    lo2, hi2 = M.minmax_fit(x2, 60)
    np.testing.assert_array_equal(lo, lo2)
    np.testing.assert_array_equal(hi, hi2)
    s = M.minmax_apply(x[:60], lo, hi)
    assert s.min() == pytest.approx(0.0) and s.max() == pytest.approx(1.0)


def test_synthetic_world_volatility_rises_with_spread_and_bars_are_valid():
    from jaxlab.finance.data import kline_valid_np
    w = M.synthetic_macro_world(0, num_days=1500, stress_window=(1300, 1400))
    assert w.macro.shape == (1500, 4) and w.panel.ohlcv.shape == (1500, 3, 5)
    assert (w.regimes[1300:1400] == 1).all()
    r = np.diff(np.log(w.panel.ohlcv[:, :, 3]), axis=0)
    hi = w.macro[1:, 0] > np.median(w.macro[:, 0])
    assert (r[hi].std(0) > 1.5 * r[~hi].std(0)).all()
    assert kline_valid_np(w.panel.ohlcv).all()
    assert w.macro[w.regimes == 1, 0].mean() > w.macro[w.regimes == 0, 0].mean() + 1.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="stress_window"):
        M.synthetic_macro_world(0, num_days=200, stress_window=(150, 300))
    with pytest.raises(ValueError, match="freq"):
        M.release_dates(np.array(["2000-01-01"], "datetime64[D]"), freq="W")
    with pytest.raises(ValueError, match="names"):
        M.real_macro(np.array(["2000-01-03"], "datetime64[D]"), names=("vix",))


def test_tfds_builder_reproduces_the_world(tmp_path):
    from jaxlab.core.datasets import prepare
    from jaxlab.finance.tfds_macro import SyntheticMacroWorldBuilder, world_from_sources
    w = world_from_sources(prepare(SyntheticMacroWorldBuilder, data_dir=str(tmp_path), config="tiny"))
    ref = M.synthetic_macro_world(0, num_days=200, stress_window=(170, 190))
    np.testing.assert_array_equal(w.panel.ohlcv, ref.panel.ohlcv)
    np.testing.assert_array_equal(w.macro, ref.macro)
    np.testing.assert_array_equal(w.regimes, ref.regimes)


def test_real_macro_world_is_the_sp500_with_lagged_macro_and_the_crisis_as_stress_window():
    w = M.real_macro_world()
    d = w.panel.dates
    assert w.panel.names == ("sp500",) and w.macro.shape == (d.size, len(M.REAL_WORLD_MACRO))
    assert str(d[0]) == "1999-01-04" and str(d[-1]) == "2009-12-31"
    a, b = w.stress
    assert str(d[a]) == "2008-09-02" and str(d[b - 1]) == "2009-06-30"  # first/last trading days inside the window
    # the macro on each day is the lagged panel of `real_macro` (nothing published after that day)
    mp = M.real_macro(d, names=M.REAL_WORLD_MACRO)
    np.testing.assert_array_equal(w.macro, mp.values)
    assert (mp.source_release <= d[:, None]).all()
    # the stress variable: the default spread in the window sits far above its 1999-2006 range
    n_train = M.first_row_on_or_after(d, "2007-01-01")
    assert str(d[n_train - 1]) == "2006-12-29" and str(d[n_train]) == "2007-01-03"
    assert w.macro[a:b, 0].mean() > w.macro[:n_train, 0].max()
    assert (w.regimes == -1).all() and np.isnan(w.sigma).all()        # no ground truth on real data


def test_real_macro_world_bad_inputs_raise():
    with pytest.raises(ValueError, match="assets"):
        M.real_macro_world(assets=("dax",))
    with pytest.raises(ValueError, match="stress"):
        M.real_macro_world(stress=("2015-01-01", "2015-06-30"))
    with pytest.raises(ValueError, match="start/end"):
        M.real_macro_world("2009-12-01", "2009-12-31")
    with pytest.raises(ValueError, match="names"):
        M.real_macro_world(names=("vix",))
    with pytest.raises(ValueError, match="names"):                     # macrodata ends in 2009Q3
        M.real_macro_world("2011-01-03", "2013-12-31", names=("tbilrate",), stress=("2012-01-01", "2012-06-30"))
