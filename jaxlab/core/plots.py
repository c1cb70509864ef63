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
           title: str = "", logy: bool = False) -> str:
    """One line per method: the mean over seeds with a ± std band. series[name]: [S, T] (or [T])."""
    x = np.asarray(x)
    fig, ax = _subplots((6, 4))
    for name, values in series.items():
        v = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if v.shape[-1] != x.shape[0]:
            raise ValueError(f"series[{name!r}]: expected last axis of length {x.shape[0]} (len(x)), got {v.shape}")
        mean, std = v.mean(0), v.std(0)
        (line,) = ax.plot(x, mean, label=f"{name} (n={v.shape[0]})")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def grouped_bars(path: str, groups: Sequence[str], series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                 *, ylabel: str, title: str = "") -> str:
    """Bars grouped by `groups`, one bar per series with a std error bar. series[name] = (means, stds)."""
    n = len(series)
    width = 0.8 / max(n, 1)
    xs = np.arange(len(groups))
    fig, ax = _subplots((max(6, 1.2 * len(groups) * max(n, 1) * 0.5), 4))
    for i, (name, (means, stds)) in enumerate(series.items()):
        means, stds = np.asarray(means, np.float64), np.asarray(stds, np.float64)
        if means.shape != (len(groups),) or stds.shape != (len(groups),):
            raise ValueError(f"series[{name!r}]: expected means and stds of shape ({len(groups)},)")
        ax.bar(xs + (i - (n - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=name)
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
