"""Macro data for the robust-trading paper (B, arXiv 2601.17008): real series with release lags and a
synthetic regime-switching macro world with known ground truth.

Real series (all shipped inside the pinned packages, no downloads; NumPy/pandas on the host):
  * `arch.data.core_cpi` (monthly CPILFESL) -> core CPI year-on-year inflation, percent;
  * `arch.data.default` (monthly AAA, BAA yields) -> BAA - AAA default spread and the AAA level;
  * `arch.data.frenchdata` (monthly Fama-French) -> RF and Mkt-RF. Its date index loads as nanoseconds
    whose integer value is yyyymm (e.g. 1970-01-01 00:00:00.000192607 = July 1926): `french_dates`
    converts it;
  * `statsmodels` `macrodata` (quarterly 1959Q1-2009Q3) -> tbilrate, unemp, infl and annualised real
    GDP growth (400 * log diff). It ends in 2009Q3 and is forward-filled (stale) afterwards.
  The VIX series in `arch.data` covers only 2014-2019 and is not used (it cannot serve the 2008 window).

Release lags (look-ahead control): a value for the period starting at s (a month or a quarter) is treated
as published at `s + 1 period + lag` where lag = 1 period, i.e. one month (quarter) after the period
*ended*. This is conservative (US CPI for month M is released mid M+1). Values are forward-filled to
daily dates: the value used on day d is the latest one whose release date is <= d (`align_released`).
Min-max scaling is fitted on train rows only (`minmax_fit`).

Synthetic macro world (`synthetic_macro_world`): a sticky Markov regime (calm / stress) drives a VAR(1)
macro vector of K = 4 series [spread, rate, inflation, growth] with regime-dependent means; S assets have
daily log returns r = mu_s + beta_s . m_t + sigma_s(m_t) eps with sigma_s = sigma0_s exp(kappa * spread_t)
(volatility rises with the spread: the ground truth the conditional GAN must learn). A stress window can
be forced inside the test period. Bars come from an intraday Brownian bridge (valid K-lines).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from jaxlab.finance import data as data_lib

REAL_MACRO_NAMES = ("core_cpi_yoy", "default_spread", "aaa", "rf", "mkt_rf", "tbilrate", "unemp", "infl",
                    "gdp_growth")
SYN_MACRO_NAMES = ("spread", "rate", "inflation", "growth")
FREQS = ("M", "Q")


# ----------------------------------------------------------------------------------------- release lags
def release_dates(period_start, *, freq: str, lag_periods: int = 1) -> np.ndarray:
    """Publication date of each period's value: period start + (1 + lag_periods) periods.

    Args: period_start: [N] datetime64 (first day of the month/quarter); freq: "M" or "Q".
    Returns: [N] datetime64[D].
    """
    if freq not in FREQS:
        raise ValueError(f"freq: expected one of {FREQS}, got {freq!r}")
    if lag_periods < 0:
        raise ValueError(f"lag_periods: expected >= 0, got {lag_periods}")
    months = np.asarray(period_start).astype("datetime64[M]")
    step = 1 if freq == "M" else 3
    return (months + step * (1 + lag_periods)).astype("datetime64[D]")


def align_released(release_n, values_n, dates_d) -> tuple[np.ndarray, np.ndarray]:
    """Forward-fills released values to days: value on day d = the latest value with release <= d.

    Args: release_n [N] datetime64 (sorted), values_n [N] or [N, k], dates_d [D] datetime64.
    Returns: (aligned [D] or [D, k] with NaN before the first release, source index [D], -1 if none).
    """
    release_n = np.asarray(release_n).astype("datetime64[D]")
    if np.any(release_n[1:] < release_n[:-1]):
        raise ValueError("release_n: expected non-decreasing release dates")
    values_n = np.asarray(values_n, np.float64)
    if values_n.shape[0] != release_n.shape[0]:
        raise ValueError(f"values_n: expected {release_n.shape[0]} rows, got {values_n.shape[0]}")
    idx = np.searchsorted(release_n, np.asarray(dates_d).astype("datetime64[D]"), side="right") - 1
    out = values_n[np.maximum(idx, 0)].copy()
    out[idx < 0] = np.nan
    return out, idx


def minmax_fit(x_dk, n_train: int, *, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) over rows < n_train (NaN ignored). x_dk: [D, K] -> ([K], [K])."""
    x_dk = np.asarray(x_dk, np.float64)
    if not 0 < n_train <= x_dk.shape[0]:
        raise ValueError(f"n_train: expected 1..{x_dk.shape[0]}, got {n_train}")
    lo, hi = np.nanmin(x_dk[:n_train], axis=0), np.nanmax(x_dk[:n_train], axis=0)
    return lo, np.maximum(hi, lo + eps)


def minmax_apply(x_dk, lo, hi):
    """(x - lo) / (hi - lo); values outside the train range fall outside [0, 1] (not clipped)."""
    return (np.asarray(x_dk, np.float64) - lo) / (hi - lo)


# ------------------------------------------------------------------------------------------- real series
def french_dates(index) -> np.ndarray:
    """arch.data.frenchdata's broken index (ns value = yyyymm) -> first day of each month, datetime64[D]."""
    ym = np.asarray(index).astype("datetime64[ns]").astype(np.int64)
    if np.any((ym < 100000) | (ym > 300000)):
        raise ValueError("index: expected frenchdata's yyyymm-as-nanoseconds index (e.g. 192607)")
    y, m = ym // 100, ym % 100
    return (np.array([f"{a:04d}-{b:02d}" for a, b in zip(y, m)], dtype="datetime64[M]")).astype("datetime64[D]")


@functools.lru_cache(maxsize=1)
def real_macro_sources() -> dict:
    """{name: (period_start [N] datetime64[D], values [N], freq)} for REAL_MACRO_NAMES (before any lag).
    Cached: do not modify the returned arrays."""
    import arch.data.core_cpi
    import arch.data.default
    import arch.data.frenchdata
    import statsmodels.api as sm
    out = {}
    cpi = arch.data.core_cpi.load()
    d = cpi.index.to_numpy().astype("datetime64[D]")
    lvl = cpi["CPILFESL"].to_numpy(np.float64)
    out["core_cpi_yoy"] = (d[12:], 100.0 * (lvl[12:] / lvl[:-12] - 1.0), "M")
    dflt = arch.data.default.load()
    d = dflt.index.to_numpy().astype("datetime64[D]")
    out["default_spread"] = (d, (dflt["BAA"] - dflt["AAA"]).to_numpy(np.float64), "M")
    out["aaa"] = (d, dflt["AAA"].to_numpy(np.float64), "M")
    fr = arch.data.frenchdata.load()
    d = french_dates(fr.index)
    out["rf"] = (d, fr["RF"].to_numpy(np.float64), "M")
    out["mkt_rf"] = (d, fr["Mkt-RF"].to_numpy(np.float64), "M")
    md = sm.datasets.macrodata.load_pandas().data
    d = np.array([f"{int(y):04d}-{3 * int(q) - 2:02d}" for y, q in zip(md["year"], md["quarter"])],
                 dtype="datetime64[M]").astype("datetime64[D]")
    for k in ("tbilrate", "unemp", "infl"):
        out[k] = (d, md[k].to_numpy(np.float64), "Q")
    g = 400.0 * np.diff(np.log(md["realgdp"].to_numpy(np.float64)))
    out["gdp_growth"] = (d[1:], g, "Q")
    return out


class MacroPanel(NamedTuple):
    """dates [D] datetime64[D]; values [D, K] (NaN before a series' first release); names (K,);
    source_release [D, K] datetime64[D] release date of the value used (NaT where none)."""
    dates: np.ndarray
    values: np.ndarray
    names: tuple
    source_release: np.ndarray


def real_macro(dates_d, *, names=REAL_MACRO_NAMES, lag_periods: int = 1) -> MacroPanel:
    """The real macro panel aligned to trading days with release lags. dates_d: [D] datetime64."""
    src = real_macro_sources()
    unknown = [n for n in names if n not in src]
    if unknown:
        raise ValueError(f"names: unknown macro series {unknown}; expected a subset of {REAL_MACRO_NAMES}")
    dates_d = np.asarray(dates_d).astype("datetime64[D]")
    cols, rel = [], []
    for n in names:
        start, v, freq = src[n]
        r = release_dates(start, freq=freq, lag_periods=lag_periods)
        a, idx = align_released(r, v, dates_d)
        cols.append(a)
        rr = r[np.maximum(idx, 0)].copy()
        rr[idx < 0] = np.datetime64("NaT")
        rel.append(rr)
    return MacroPanel(dates_d, np.stack(cols, -1), tuple(names), np.stack(rel, -1))


# -------------------------------------------------------------------------------------- synthetic world
class MacroWorld(NamedTuple):
    """panel: data.Panel with S assets; macro [T, K]; regimes [T] (0 calm, 1 stress; -1 unknown for real
    data); sigma [T, S] true daily volatility (NaN for real data); stress: (start, end) stress rows or (0, 0)."""
    panel: data_lib.Panel
    macro: np.ndarray
    regimes: np.ndarray
    sigma: np.ndarray
    stress: tuple


REAL_WORLD_MACRO = ("default_spread", "aaa", "core_cpi_yoy", "unemp")


def real_macro_world(start: str = "1999-01-04", end: str = "2009-12-31", *, assets=("sp500",),
                     names=REAL_WORLD_MACRO, stress=("2008-09-01", "2009-06-30"),
                     lag_periods: int = 1) -> MacroWorld:
    """The S&P 500 (and/or NASDAQ) daily OHLCV of `arch.data` with the real macro panel released with lags.

    Trading days in [start, end]; macro columns `names` (the first is the stress variable the GAN's
    conditioning check moves: the BAA - AAA default spread by default) aligned by `real_macro`; `stress`
    = (first, last) calendar dates of the stress window (default: Lehman to the NBER trough, Sep 2008 - Jun
    2009), turned into row indices [a, b). Regimes are unknown (-1) and the true volatility is NaN. A
    series whose value on some day is older than one release period (it ended, e.g. `macrodata` after
    2009Q3) is refused rather than carried forward stale.
    """
    unknown = [a for a in assets if a not in data_lib.ARCH_OHLCV]
    if not assets or unknown:
        raise ValueError(f"assets: expected a non-empty subset of {data_lib.ARCH_OHLCV}, got {list(assets)}")
    loaded = [data_lib.load_arch_ohlcv(a) for a in assets]
    days = functools.reduce(np.intersect1d, [d for d, _ in loaded])
    days = days[(days >= np.datetime64(start, "D")) & (days <= np.datetime64(end, "D"))]
    if days.size < 100:
        raise ValueError(f"start/end: expected >= 100 trading days inside [{start}, {end}], got {days.size}")
    ohlcv = np.stack([a[np.searchsorted(d, days)] for d, a in loaded], axis=1)               # [T, S, 5]
    panel = data_lib.make_panel(days, ohlcv, list(assets), {"source": "arch.data " + ",".join(assets)})
    mp = real_macro(days, names=names, lag_periods=lag_periods)
    if np.isnan(mp.values).any():
        bad = [n for n, c in zip(names, np.isnan(mp.values).any(0)) if c]
        raise ValueError(f"names: series {bad} have no released value on some day in [{start}, {end}]")
    age = (days[:, None] - mp.source_release).astype(np.int64)                       # days since release
    limit = np.array([35 if real_macro_sources()[n][2] == "M" else 95 for n in names])
    stale = [n for n, a, lim in zip(names, age.max(0), limit) if a > lim]
    if stale:
        raise ValueError(f"names: series {stale} end before {end} (their last value would be carried forward "
                         "stale); choose other series or an earlier end")
    lo, hi = np.datetime64(stress[0], "D"), np.datetime64(stress[1], "D")
    rows = np.flatnonzero((days >= lo) & (days <= hi))
    if rows.size == 0:
        raise ValueError(f"stress: expected a window inside [{start}, {end}], got {stress}")
    return MacroWorld(panel, mp.values, np.full(days.size, -1, np.int64), np.full(ohlcv.shape[:2], np.nan),
                      (int(rows[0]), int(rows[-1]) + 1))


def first_row_on_or_after(dates_d, date: str) -> int:
    """Index of the first day >= `date` in sorted dates [D] (D if none): chronological split points."""
    return int(np.searchsorted(np.asarray(dates_d).astype("datetime64[D]"), np.datetime64(date, "D"), side="left"))


def synthetic_macro_world(seed: int = 0, *, num_days: int = 1500, num_assets: int = 3, kappa: float = 0.6,
                          stay: float = 0.985, stress_window: tuple | None = None,
                          intraday_steps: int = 8) -> MacroWorld:
    """Regime-switching VAR(1) macro world (K = 4) with assets whose volatility rises with the spread.

    m_t = c_{z_t} + A (m_{t-1} - c_{z_t}) + 0.15 e_t, A = 0.97 I, c_calm = [-1, .5, 0, .5],
    c_stress = [1.5, -.5, .5, -1] (spread in standard-ish units); z_t a sticky Markov chain (`stay`);
    rows in `stress_window` = (start, end) are forced to the stress regime.
    r_{t,s} = 2e-4 + 2e-4 beta_s . m_t (growth-driven drift, spread drag) + sigma_{t,s} eps,
    sigma_{t,s} = sigma0_s exp(kappa * spread_t), sigma0_s ~ U(.006, .012).
    Returns a MacroWorld (macro is observed daily here: the synthetic world has no release lag).
    """
    if num_days < 100:
        raise ValueError(f"num_days: expected >= 100, got {num_days}")
    if num_assets < 1:
        raise ValueError(f"num_assets: expected >= 1, got {num_assets}")
    if stress_window is not None:
        a, b = stress_window
        if not 0 <= a < b <= num_days:
            raise ValueError(f"stress_window: expected 0 <= start < end <= {num_days}, got {stress_window}")
    rng = np.random.default_rng(seed)
    K = len(SYN_MACRO_NAMES)
    centers = np.array([[-1.0, 0.5, 0.0, 0.5], [1.5, -0.5, 0.5, -1.0]])
    z = np.zeros(num_days, np.int64)
    for t in range(1, num_days):
        z[t] = z[t - 1] if rng.uniform() < stay else 1 - z[t - 1]
    if stress_window is not None:
        z[stress_window[0]:stress_window[1]] = 1
    m = np.zeros((num_days, K))
    m[0] = centers[z[0]]
    e = rng.standard_normal((num_days, K))
    for t in range(1, num_days):
        c = centers[z[t]]
        m[t] = c + 0.97 * (m[t - 1] - c) + 0.15 * e[t]
    beta = np.stack([np.full(num_assets, -1.0), rng.uniform(-.3, .3, num_assets), rng.uniform(-.3, .3, num_assets),
                     rng.uniform(0.5, 1.5, num_assets)], -1)                    # [S, K]
    sigma0 = rng.uniform(0.006, 0.012, num_assets)
    sigma = sigma0[None] * np.exp(kappa * m[:, :1])
    rets = 2e-4 + 2e-4 * m @ beta.T + sigma * rng.standard_normal((num_days, num_assets))
    close = np.exp(np.log(rng.uniform(50, 150, num_assets))[None] + np.cumsum(rets, 0))
    prev = np.concatenate([close[:1], close[:-1]])
    opn = prev * np.exp(0.2 * sigma * rng.standard_normal((num_days, num_assets)))
    steps = rng.standard_normal((num_days, num_assets, intraday_steps)) * (sigma[..., None] / np.sqrt(intraday_steps))
    path = np.cumsum(steps, -1)
    frac = np.arange(1, intraday_steps + 1) / intraday_steps
    path = path - frac * path[..., -1:] + frac * np.log(close / opn)[..., None]
    lpath = np.log(opn)[..., None] + path
    ohlcv = np.stack([opn, np.maximum(np.exp(lpath.max(-1)), np.maximum(opn, close)),
                      np.minimum(np.exp(lpath.min(-1)), np.minimum(opn, close)), close,
                      np.exp(13 + 30 * np.abs(rets))], -1)
    dates = np.datetime64("2000-01-03", "D") + np.arange(num_days)
    panel = data_lib.make_panel(dates, ohlcv, [f"macro_syn{i}" for i in range(num_assets)],
                                {"source": f"synthetic_macro_world(seed={seed})"})
    return MacroWorld(panel, m, z, sigma, tuple(stress_window) if stress_window else (0, 0))


def bar_features(ohlcv_ts5) -> np.ndarray:
    """Causal per-bar features [T, S, 4]: log close return (0 on row 0), log(O/C), log(H/C), log(L/C)."""
    p = np.maximum(np.asarray(ohlcv_ts5, np.float64)[..., :4], 1e-12)
    lc = np.log(p[..., 3])
    r = np.concatenate([np.zeros_like(lc[:1]), np.diff(lc, axis=0)])
    return np.stack([r, np.log(p[..., 0] / p[..., 3]), np.log(p[..., 1] / p[..., 3]), np.log(p[..., 2] / p[..., 3])], -1)
