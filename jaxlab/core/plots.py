"""Matplotlib helpers: curves with mean ± std bands over seeds, grouped bars, plain lines.

Every helper writes a PNG through a temporary file + rename and returns the path. They draw on
`matplotlib.figure.Figure` objects (no pyplot state, no backend chosen at import), so importing jaxlab
never changes the backend of a notebook or a user's session.
"""

from __future__ import annotations

import os
import tempfile
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def _subplots(figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _save(fig, path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".png", dir=directory)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def curves(path: str, x: Sequence[float], series: Mapping[str, np.ndarray], *, xlabel: str, ylabel: str,
           title: str = "", logy: bool = False, logx: bool = False) -> str:
    """One line per method: the mean over seeds with a ± std band. series[name]: [S, T] (or [T]).

    logx: a base-2 log x axis with a tick at every x value (for doubling grids such as J = 1, 2, 4, 8, 16);
    markers show the measured points."""
    x = np.asarray(x)
    fig, ax = _subplots((6, 4))
    for name, values in series.items():
        v = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if v.shape[-1] != x.shape[0]:
            raise ValueError(f"series[{name!r}]: expected last axis of length {x.shape[0]} (len(x)), got {v.shape}")
        mean, std = v.mean(0), v.std(0)
        (line,) = ax.plot(x, mean, marker="o" if logx else None, markersize=3, label=f"{name} (n={v.shape[0]})")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        if np.any(x <= 0):
            raise ValueError(f"x: logx needs positive values, got {x.tolist()}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def grouped_bars(path: str, groups: Sequence[str], series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                 *, ylabel: str, title: str = "", styles: Mapping[str, dict] | None = None,
                 zero_line: bool = False) -> str:
    """Bars grouped by `groups`, one bar per series with a std error bar. series[name] = (means, stds).

    A NaN mean leaves that bar out (a series missing in a group). styles[name]: extra `Axes.bar` keywords
    (color, hatch). zero_line: a horizontal line at 0 (for signed differences)."""
    n = len(series)
    width = 0.8 / max(n, 1)
    xs = np.arange(len(groups))
    fig, ax = _subplots((max(6, 1.2 * len(groups) * max(n, 1) * 0.5), 4))
    for i, (name, (means, stds)) in enumerate(series.items()):
        means, stds = np.asarray(means, np.float64), np.asarray(stds, np.float64)
        if means.shape != (len(groups),) or stds.shape != (len(groups),):
            raise ValueError(f"series[{name!r}]: expected means and stds of shape ({len(groups)},)")
        have = ~np.isnan(means)
        ax.bar((xs + (i - (n - 1) / 2) * width)[have], means[have], width, yerr=np.nan_to_num(stds[have]),
               capsize=2, label=name, **dict((styles or {}).get(name, {})))
    if zero_line:
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(xs, groups, rotation=20 if len(groups) > 4 else 0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def lines(path: str, x: Sequence[float], series: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
          title: str = "") -> str:
    """Plain lines, one per series (no seeds)."""
    fig, ax = _subplots((6, 4))
    for name, values in series.items():
        ax.plot(x, values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def heatmap(path: str, matrix, *, row_labels: Sequence[str], xlabel: str, ylabel: str = "", title: str = "",
            x: Sequence[float] | None = None, center: float | None = None, cbar_label: str = "") -> str:
    """A [rows, cols] matrix as an image (one row per label, columns along x). With `center`, a diverging
    colormap symmetric around that value (e.g. the uniform weight), so small departures stay visible."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != len(row_labels):
        raise ValueError(f"matrix: expected shape [{len(row_labels)}, cols] (one row per label), got {m.shape}")
    fig, ax = _subplots((7, max(3, 0.28 * m.shape[0] + 1.2)))
    kw = {"cmap": "viridis"}
    if center is not None:
        span = float(np.nanmax(np.abs(m - center))) or 1.0
        kw = {"cmap": "RdBu_r", "vmin": center - span, "vmax": center + span}
    xs = np.arange(m.shape[1]) if x is None else np.asarray(x, dtype=np.float64)
    extent = (xs[0] - 0.5, xs[-1] + 0.5, m.shape[0] - 0.5, -0.5) if len(xs) else None
    im = ax.imshow(m, aspect="auto", interpolation="nearest", extent=extent, **kw)
    ax.set_yticks(np.arange(m.shape[0]), list(row_labels), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=cbar_label)
    return _save(fig, path)
