"""Data layer for the financial dataflow (paper A, arXiv 2601.10143) and shared with paper B.

Everything here is NumPy on the host (data preparation happens once); the JAX ops act on the windows.

* Panels are `Panel(dates [T], ohlcv [T, S, 5], names [S])` with columns Open, High, Low, Close, Volume.
* `validate_panel` rejects NaN prices, non-monotonic dates and invalid K-lines with a `ValueError` that
    names the offending rows; nothing is silently dropped.
* Real panels come from data shipped inside `arch` 8.0.0 (`arch.data.sp500`, `nasdaq`: daily OHLCV
    1999-2018; `arch.data.wti`: daily WTI close 1986-2019) and skfolio 1.12.2's bundled 20-stock S&P 500
    close panel (1990-2022, flat bars; `skfolio_panel`).
* `synthetic_universe` is a seeded regime-switching universe with planted cointegrated pairs and valid
    OHLC bars built from an intraday random walk (ground truth for cointegration, drift and K-line tests).
* Windows: a sample is the raw bar window of asset s ending at day t, `[L+1, 5]`, with O/H/L/C divided
    by the window's first close and volume as log(volume); label y = (C_{t+1} - C_t) / C_t (paper A §II).
* Every fitted statistic (`fit_scaler`, `fit_window_stats`, `cointegration_pvalues`, `stl_components`)
    takes the full array plus `n_train` and looks only at rows `< n_train`, so appending validation/test
    rows cannot change it (the no-leakage test).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import NamedTuple, Sequence

import numpy as np

COLUMNS = ("open", "high", "low", "close", "volume")


@dataclasses.dataclass(frozen=True)
class Panel:
    """A price panel. dates: [T] datetime64[D]; ohlcv: [T, S, 5] float64; names: S strings."""
    dates: np.ndarray
    ohlcv: np.ndarray
    names: tuple
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def num_days(self) -> int:
        return int(self.ohlcv.shape[0])

    @property
    def num_assets(self) -> int:
        return int(self.ohlcv.shape[1])


def _rows(idx: np.ndarray, dates: np.ndarray | None, limit: int = 5) -> str:
    idx = np.asarray(idx).reshape(-1)
    shown = [f"{int(i)}" + (f" ({dates[int(i)]})" if dates is not None else "") for i in idx[:limit]]
    more = f" and {idx.size - limit} more" if idx.size > limit else ""
    return ", ".join(shown) + more


def kline_valid_np(ohlc: np.ndarray) -> np.ndarray:
    """L <= min(O, C) <= max(O, C) <= H. ohlc: [..., >=4] -> bool [...]."""
    o, h, l, c = ohlc[..., 0], ohlc[..., 1], ohlc[..., 2], ohlc[..., 3]
    return (l <= np.minimum(o, c)) & (np.maximum(o, c) <= h)


def validate_panel(dates: np.ndarray, ohlcv: np.ndarray, *, names: Sequence[str] | None = None) -> None:
    """Raises ValueError naming the offending rows for NaN/non-positive prices, unsorted dates, bad bars.

    Args:
        dates: [T] datetime64 or increasing integers.
        ohlcv: [T, S, 5] (or [T, 5] for one asset).
    """
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    if ohlcv.ndim == 2:
        ohlcv = ohlcv[:, None, :]
    if ohlcv.ndim != 3 or ohlcv.shape[-1] != 5:
        raise ValueError(f"ohlcv: expected shape [T, S, 5] (open, high, low, close, volume), got {ohlcv.shape}")
    dates = np.asarray(dates)
    if dates.shape != (ohlcv.shape[0],):
        raise ValueError(f"dates: expected shape [{ohlcv.shape[0]}] matching ohlcv rows, got {dates.shape}")
    bad = np.nonzero(~np.isfinite(ohlcv).all(axis=(1, 2)))[0]
    if bad.size:
        raise ValueError(f"ohlcv: expected finite values, found NaN/inf in rows {_rows(bad, dates)}")
    bad = np.nonzero((ohlcv[..., :4] <= 0).any(axis=(1, 2)))[0]
    if bad.size:
        raise ValueError(f"ohlcv: expected positive prices, found non-positive prices in rows {_rows(bad, dates)}")
    bad = np.nonzero((ohlcv[..., 4] < 0).any(axis=1))[0]
    if bad.size:
        raise ValueError(f"ohlcv: expected non-negative volume, found negative volume in rows {_rows(bad, dates)}")
    if dates.size > 1:
        bad = np.nonzero(~(dates[1:] > dates[:-1]))[0] + 1
        if bad.size:
            raise ValueError(f"dates: expected strictly increasing dates, not increasing at rows {_rows(bad, dates)}")
    ok = kline_valid_np(ohlcv)
    bad = np.nonzero(~ok.all(axis=1))[0]
    if bad.size:
        who = ""
        if names is not None:
            cols = sorted({names[s] for s in np.nonzero(~ok[bad])[1]})
            who = f" (assets {cols})"
        raise ValueError("ohlcv: expected valid K-lines low <= min(open, close) <= max(open, close) <= high, "
                                          f"invalid bars in rows {_rows(bad, dates)}{who}")


def make_panel(dates, ohlcv, names, meta=None) -> Panel:
    """Validated Panel constructor."""
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    if ohlcv.ndim == 2:
        ohlcv = ohlcv[:, None, :]
    names = tuple(str(n) for n in names)
    if len(names) != ohlcv.shape[1]:
        raise ValueError(f"names: expected {ohlcv.shape[1]} names, got {len(names)}")
    validate_panel(dates, ohlcv, names=names)
    return Panel(np.asarray(dates), ohlcv, names, dict(meta or {}))


# ----------------------------------------------------------------------------------------------- real data
ARCH_OHLCV = ("sp500", "nasdaq")


def load_arch_ohlcv(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Daily OHLCV from `arch.data.<name>` (sp500 or nasdaq, 1999-01-04..2018-12-31).

    Returns dates [T] datetime64[D], ohlcv [T, 5] with the *unadjusted* Open/High/Low/Close and Volume.
    """
    if name not in ARCH_OHLCV:
        raise ValueError(f"name: expected one of {ARCH_OHLCV}, got {name!r}")
    df = importlib.import_module(f"arch.data.{name}").load()
    arr = df[["Open", "High", "Low", "Close", "Volume"]].to_numpy(np.float64)
    return df.index.to_numpy().astype("datetime64[D]"), arr


def load_wti() -> tuple[np.ndarray, np.ndarray]:
    """Daily WTI spot close (`arch.data.wti`). Returns dates [T], close [T] (NaN on FRED holidays kept)."""
    df = importlib.import_module("arch.data.wti").load()
    return df.index.to_numpy().astype("datetime64[D]"), df["DCOILWTICO"].to_numpy(np.float64)


def real_panel(start: str = "1999-01-04", end: str = "2018-12-31", *, include_wti: bool = True) -> Panel:
    """The real panel: S&P 500 and NASDAQ index OHLCV (+ WTI close as a flat bar O=H=L=C, volume 1).

    Dates are the intersection of the series' trading days. WTI days with a missing value (FRED holidays)
    are excluded explicitly and their count is returned in `meta["dropped_days"]` (never silent).
    """
    d0, a0 = load_arch_ohlcv("sp500")
    d1, a1 = load_arch_ohlcv("nasdaq")
    common = np.intersect1d(d0, d1)
    series, names = [], ["sp500", "nasdaq"]
    dropped = {"sp500": int(d0.size - common.size), "nasdaq": int(d1.size - common.size)}
    if include_wti:
        dw, cw = load_wti()
        missing = dw[~np.isfinite(cw)]
        good = dw[np.isfinite(cw)]
        before = common.size
        common = np.intersect1d(common, good)
        dropped["wti_missing_or_closed"] = int(before - common.size)
        dropped["wti_nan_rows_in_source"] = int(missing.size)
        names.append("wti")
    lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
    common = common[(common >= lo) & (common <= hi)]
    series.append(a0[np.searchsorted(d0, common)])
    series.append(a1[np.searchsorted(d1, common)])
    if include_wti:
        c = cw[np.searchsorted(dw, common)]
        series.append(np.stack([c, c, c, c, np.ones_like(c)], axis=-1))
    ohlcv = np.stack(series, axis=1)
    return make_panel(common, ohlcv, names, {"source": "arch 8.0.0 arch.data.{sp500,nasdaq,wti}",
                                                                                      "dropped_days": dropped})


SKFOLIO_VERSION = "1.12.2"


def load_skfolio_sp500() -> tuple[np.ndarray, np.ndarray, list]:
    """skfolio's bundled 20-stock S&P 500 panel (daily adjusted closes, 1990-01-02..2022-12-28, 8313 days).

    Read straight from the package's CSV (skfolio is installed without its dependencies, so
    `import skfolio` fails). Returns dates [T] datetime64[D], close [T, 20], tickers.
    """
    import importlib.util
    import os

    import pandas as pd
    spec = importlib.util.find_spec("skfolio")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("skfolio: expected the skfolio package (1.12.2) to be installed for its bundled data")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "sp500_dataset.csv.gz")
    df = pd.read_csv(path, index_col=0, parse_dates=True)
    return df.index.to_numpy().astype("datetime64[D]"), df.to_numpy(np.float64), [str(c) for c in df.columns]


def skfolio_panel(start: str = "2005-01-01", end: str = "2022-12-31", *, assets: int | None = None) -> Panel:
    """The real 20-stock universe as a Panel of *flat bars*: O = H = L = C = adjusted close, volume = 1.

    The source has closes only. We do not invent intraday ranges or volumes: every bar is flat, so the
    O/H/L/C-ratio and volume features are constant (zero after standardisation) and K-line curation is
    the identity on source bars. Prices are quoted to 3 decimals, which quantises returns of low-priced
    early-1990s names; the default start (2005) keeps every close above $0.95. Rows with a missing
    or non-positive close would be rejected by `validate_panel` (the bundled file has none).
    """
    dates, close, names = load_skfolio_sp500()
    lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
    keep = (dates >= lo) & (dates <= hi)
    dates, close = dates[keep], close[keep]
    if assets is not None:
        close, names = close[:, :assets], names[:assets]
    ohlcv = np.stack([close, close, close, close, np.ones_like(close)], axis=-1)
    return make_panel(dates, ohlcv, names, {"source": f"skfolio {SKFOLIO_VERSION} sp500_dataset.csv.gz",
                                            "bars": "flat (close only): O=H=L=C, volume 1"})


# --------------------------------------------------------------------------------------- synthetic universe
class SyntheticTruth(NamedTuple):
    regimes: np.ndarray        # [T] int regime index
    coint_pairs: tuple         # ((a, b), ...) planted cointegrated pairs
    vol_level: np.ndarray      # [T] slow volatility drift multiplier


def synthetic_universe(seed: int = 0, *, num_assets: int = 8, num_days: int = 1200, num_regimes: int = 3,
                                              intraday_steps: int = 8, drift_strength: float = 1.0,
                                              spread_reversion: float = 0.15, ar_coef: float = 0.3) -> tuple[Panel, SyntheticTruth]:
    """A seeded universe: Markov regimes, a slow volatility drift, planted cointegrated pairs, valid bars.

    Log prices: a market factor plus idiosyncratic noise whose mean/vol depend on a sticky Markov regime;
    idiosyncratic returns are AR(1) with coefficient ar_coef (the predictable part a forecaster can learn);
    the volatility is multiplied by vol_level_t = 1 + drift_strength * t / T (distribution drift, so later
    periods resemble each other more than the early ones). Pairs (0, 1), (2, 3), ... : asset 2k+1 follows
    asset 2k plus a mean-reverting AR(1) spread (coefficient 1 - spread_reversion), i.e. the pair is
    cointegrated and the spread is predictable. Bars come from an intraday random walk between closes.
    """
    if num_assets < 2 or num_assets % 2:
        raise ValueError(f"num_assets: expected an even number >= 2, got {num_assets}")
    if num_days < 50:
        raise ValueError(f"num_days: expected >= 50, got {num_days}")
    if num_regimes < 1:
        raise ValueError(f"num_regimes: expected >= 1, got {num_regimes}")
    rng = np.random.default_rng(seed)
    stay = 0.98
    trans = np.full((num_regimes, num_regimes), (1 - stay) / max(num_regimes - 1, 1))
    np.fill_diagonal(trans, stay if num_regimes > 1 else 1.0)
    mu_r = np.linspace(4e-4, -4e-4, num_regimes)
    vol_r = np.linspace(0.008, 0.02, num_regimes)
    regimes = np.zeros(num_days, np.int64)
    for t in range(1, num_days):
        regimes[t] = rng.choice(num_regimes, p=trans[regimes[t - 1]])
    vol_level = 1.0 + drift_strength * np.arange(num_days) / num_days
    sig = vol_r[regimes] * vol_level
    market = mu_r[regimes] + sig * rng.standard_normal(num_days)
    betas = rng.uniform(0.6, 1.4, num_assets)
    shocks = 0.6 * sig[:, None] * rng.standard_normal((num_days, num_assets))
    idio = np.zeros_like(shocks)
    idio[0] = shocks[0]
    for t in range(1, num_days):
        idio[t] = ar_coef * idio[t - 1] + shocks[t]
    rets = betas[None] * market[:, None] + idio
    logp = np.log(rng.uniform(20, 200, num_assets))[None] + np.cumsum(rets, axis=0)
    pairs = []
    for a in range(0, num_assets, 2):
        b = a + 1
        spread = np.zeros(num_days)
        eps = 0.01 * rng.standard_normal(num_days)
        for t in range(1, num_days):
            spread[t] = (1 - spread_reversion) * spread[t - 1] + eps[t]
        logp[:, b] = logp[:, a] + np.log(rng.uniform(0.5, 2.0)) + spread
        pairs.append((a, b))
    close = np.exp(logp)
    # intraday random walk from previous close (open) to close, bars are then valid by construction
    ohlcv = np.zeros((num_days, num_assets, 5))
    prev = np.concatenate([close[:1] * np.exp(0.002 * rng.standard_normal((1, num_assets))), close[:-1]])
    gap = 0.2 * sig[:, None] * rng.standard_normal((num_days, num_assets))
    opn = prev * np.exp(gap)
    steps = rng.standard_normal((num_days, num_assets, intraday_steps)) * (sig[:, None, None] / np.sqrt(intraday_steps))
    path = np.cumsum(steps, axis=-1)
    # bridge so the path ends exactly at the close
    frac = np.arange(1, intraday_steps + 1) / intraday_steps
    target = np.log(close / opn)
    path = path - frac * path[..., -1:] + frac * target[..., None]
    lpath = np.log(opn)[..., None] + path
    ohlcv[..., 0] = opn
    ohlcv[..., 1] = np.maximum(np.exp(lpath.max(-1)), np.maximum(opn, close))
    ohlcv[..., 2] = np.minimum(np.exp(lpath.min(-1)), np.minimum(opn, close))
    ohlcv[..., 3] = close
    ohlcv[..., 4] = np.exp(13 + 30 * np.abs(rets) + 0.3 * rng.standard_normal((num_days, num_assets)))
    dates = np.datetime64("2000-01-03", "D") + np.arange(num_days)
    names = [f"syn{i}" for i in range(num_assets)]
    panel = make_panel(dates, ohlcv, names, {"source": f"synthetic_universe(seed={seed})"})
    return panel, SyntheticTruth(regimes, tuple(pairs), vol_level)


# ------------------------------------------------------------------------------------------------ splits
def chronological_split(num: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> tuple[int, int]:
    """Boundaries (n_train, n_train + n_val) of a chronological split of `num` rows."""
    fr = np.asarray(fractions, np.float64)
    if fr.shape != (3,) or np.any(fr <= 0) or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions: expected three positive fractions summing to 1, got {list(fractions)}")
    a = int(num * fr[0])
    b = int(num * (fr[0] + fr[1]))
    return a, b


def expanding_folds(num: int, num_folds: int = 3, *, min_frac: float = 0.5,
                                        fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> list[tuple[int, int, int]]:
    """Expanding-window folds: fold k uses rows [0, end_k) split 0.6/0.2/0.2; returns (n_train, n_val_end, end)."""
    if num_folds < 1:
        raise ValueError(f"num_folds: expected >= 1, got {num_folds}")
    ends = np.linspace(min_frac * num, num, num_folds).astype(int) if num_folds > 1 else np.array([num])
    out = []
    for e in ends:
        a, b = chronological_split(int(e), fractions)
        out.append((a, b, int(e)))
    return out


# ------------------------------------------------------------------------------------------------ windows
class Windows(NamedTuple):
    """Per-(day, asset) samples. x: [N, L+1, 5] raw windows; y: [N]; day: [N]; asset: [N];
    panel_x: [D, S, L+1, 5] all assets' windows at each usable day; panel_y: [D, S]; days: [D]."""
    x: np.ndarray
    y: np.ndarray
    day: np.ndarray
    asset: np.ndarray
    panel_x: np.ndarray
    panel_y: np.ndarray
    days: np.ndarray


def raw_windows(panel: Panel, lookback: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All causal windows. Returns panel_x [D, S, L+1, 5], panel_y [D, S] (next-day close return), days [D].

    Window for day t covers bars t-L..t; O/H/L/C are divided by the close at t-L (so the window is
    scale-free and causal) and the volume column is log(1 + volume). Label y_t = C_{t+1}/C_t - 1.
    """
    if lookback < 2:
        raise ValueError(f"lookback: expected >= 2, got {lookback}")
    T = panel.num_days
    if T < lookback + 2:
        raise ValueError(f"panel: expected at least lookback + 2 = {lookback + 2} days, got {T}")
    days = np.arange(lookback, T - 1)
    idx = days[:, None] + np.arange(-lookback, 1)[None]          # [D, L+1]
    w = panel.ohlcv[idx]                                          # [D, L+1, S, 5]
    w = np.transpose(w, (0, 2, 1, 3)).copy()                      # [D, S, L+1, 5]
    base = w[:, :, :1, 3:4]
    w[..., :4] = w[..., :4] / base
    w[..., 4] = np.log1p(w[..., 4])
    c = panel.ohlcv[..., 3]
    y = c[days + 1] / c[days] - 1.0
    return w.astype(np.float32), y.astype(np.float32), days


def make_windows(panel: Panel, lookback: int, day_lo: int, day_hi: int) -> Windows:
    """Samples whose label day t+1 satisfies day_lo <= t and t + 1 < day_hi (no label crosses day_hi)."""
    px, py, days = raw_windows(panel, lookback)
    keep = (days >= day_lo) & (days + 1 < day_hi)
    px, py, days = px[keep], py[keep], days[keep]
    D, S = py.shape
    x = px.reshape(D * S, *px.shape[2:])
    y = py.reshape(D * S)
    day = np.repeat(np.arange(D), S)
    asset = np.tile(np.arange(S), D)
    return Windows(x, y, day, asset, px, py, days)


# ------------------------------------------------------------------------------------- train-fitted stats
def fit_scaler(x: np.ndarray, n_train: int, *, axis=0, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over the first n_train rows only (x: [N, ...]); returns (mean, std) of shape x.shape[1:]."""
    x = np.asarray(x, np.float64)
    if not 0 < n_train <= x.shape[0]:
        raise ValueError(f"n_train: expected 1..{x.shape[0]}, got {n_train}")
    tr = x[:n_train]
    return tr.mean(axis=axis), tr.std(axis=axis) + eps


def fit_window_stats(panel_x: np.ndarray, n_train_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-asset, per-column mean/std of raw windows over the first n_train_days window days.

    panel_x: [D, S, L+1, 5] -> (mu [S, 5], sd [S, 5]); the z-score space of the mix-ups.
    """
    if not 0 < n_train_days <= panel_x.shape[0]:
        raise ValueError(f"n_train_days: expected 1..{panel_x.shape[0]}, got {n_train_days}")
    tr = np.asarray(panel_x[:n_train_days], np.float64)
    mu = tr.mean(axis=(0, 2))
    sd = tr.std(axis=(0, 2)) + 1e-6
    return mu.astype(np.float32), sd.astype(np.float32)


def cointegration_pvalues(log_close: np.ndarray, n_train: int, *, maxlag: int = 1) -> np.ndarray:
    """Engle-Granger p-values on the first n_train rows. log_close: [T, S] -> [S, S] (diagonal = 1).

    The ADF step uses a fixed `maxlag` (statsmodels `coint(..., autolag=None)`); the default AIC lag search
    is ~1000x slower (2.3 s vs 2 ms per pair on 1000 rows), which matters for 190 pairs x folds."""
    from statsmodels.tsa.stattools import coint
    log_close = np.asarray(log_close, np.float64)
    if log_close.ndim != 2:
        raise ValueError(f"log_close: expected [T, S], got shape {log_close.shape}")
    if not 20 <= n_train <= log_close.shape[0]:
        raise ValueError(f"n_train: expected 20..{log_close.shape[0]}, got {n_train}")
    tr = log_close[:n_train]
    S = tr.shape[1]
    p = np.ones((S, S))
    for a in range(S):
        for b in range(a + 1, S):
            if np.std(tr[:, a]) < 1e-12 or np.std(tr[:, b]) < 1e-12:
                continue
            pv = float(coint(tr[:, a], tr[:, b], maxlag=maxlag, autolag=None)[1])
            p[a, b] = p[b, a] = pv
    return p


def stl_components(series: np.ndarray, n_train: int, *, period: int = 21) -> dict:
    """STL (statsmodels) fitted on series[:n_train] only. Returns trend, seasonal, resid ([n_train] each)."""
    from statsmodels.tsa.seasonal import STL
    series = np.asarray(series, np.float64)
    if series.ndim != 1:
        raise ValueError(f"series: expected 1-D, got shape {series.shape}")
    if not 2 * period < n_train <= series.size:
        raise ValueError(f"n_train: expected {2 * period + 1}..{series.size}, got {n_train}")
    res = STL(series[:n_train], period=period, robust=True).fit()
    return {"trend": np.asarray(res.trend), "seasonal": np.asarray(res.seasonal), "resid": np.asarray(res.resid)}


# ------------------------------------------------------------------------------------------ daily features
def daily_features(panel: Panel) -> np.ndarray:
    """Causal daily features [T-1, S, 8]: log-return, log O/C, log H/C, log L/C, log dollar volume,
    MA5/C, MA20/C, STD5/STD20 of returns (trailing, partial windows at the start). Used for drift tables."""
    o, h, l, c, v = (panel.ohlcv[..., k] for k in range(5))
    r = np.log(c[1:] / c[:-1])
    feats = [r, np.log(o / c)[1:], np.log(h / c)[1:], np.log(l / c)[1:], np.log1p(c * v)[1:]]
    def trailing_mean(a, n):
        cs = np.cumsum(np.concatenate([np.zeros((1,) + a.shape[1:]), a]), axis=0)
        idx = np.arange(1, a.shape[0] + 1)
        lo = np.maximum(idx - n, 0)
        return (cs[idx] - cs[lo]) / (idx - lo)[:, None]
    cc = c[1:]
    feats.append(trailing_mean(cc, 5) / cc)
    feats.append(trailing_mean(cc, 20) / cc)
    s5 = np.sqrt(np.maximum(trailing_mean(r ** 2, 5) - trailing_mean(r, 5) ** 2, 0)) + 1e-8
    s20 = np.sqrt(np.maximum(trailing_mean(r ** 2, 20) - trailing_mean(r, 20) ** 2, 0)) + 1e-8
    feats.append(s5 / s20)
    return np.stack(feats, axis=-1)
