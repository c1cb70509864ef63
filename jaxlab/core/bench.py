"""Shared pieces of the benchmarks in `benchmarks/`: timing, the machine record, the command line.

Every benchmark checks parity first, times compilation apart (`timed` returns it), takes the median
of repeated `block_until_ready` calls, and writes `results/bench/<name>.json` with the environment.
A benchmark is never a pass/fail test of wall time; tests run `--size=tiny` for parity only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax

from jaxlab.core.metrics import write_json_atomic
from jaxlab.core.versions import versions


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn` (each waited on with block_until_ready)."""
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """(first output, first-call seconds = compile + one run, median seconds of the next `repeats`)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0, median_time(fn, repeats)


def environment() -> dict:
    """Device, machine, load and versions: what a reader needs to compare two benchmark files."""
    dev = jax.devices()[0]
    return {"device": dev.platform, "device_kind": dev.device_kind, "device_count": jax.device_count(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "versions": versions()}


def record(name: str, size: str, rows: list[dict], out: str | None = None, **extra: Any) -> dict:
    """The results dict of CONVENTIONS §8 (written atomically to `out` when given)."""
    res = {"benchmark": name, "size": size, **environment(), **extra, "rows": rows}
    if out:
        write_json_atomic(out, res)
    return res


def cli(name: str, run: Callable[[str, str | None], dict], sizes, doc: str | None = None, argv=None) -> dict:
    """`--size=tiny|full --out=PATH`; full writes results/bench/<name>.json by default, tiny writes nothing."""
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--size", choices=sorted(sizes), default="tiny")
    p.add_argument("--out", default=None, help=f"default results/bench/{name}.json (full) or none (tiny)")
    a = p.parse_args(argv)
    out = a.out if a.out is not None else (f"results/bench/{name}.json" if a.size == "full" else "")
    return run(a.size, out or None)
