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


# ----------------------------------------------------------------- the machine's limits (issue 19)
def elementwise_floor_s(shape, dtype="float32", repeats: int = 21) -> float:
    """Median seconds of a jitted `z * 2 + 1` on an array of `shape`: one read and one write of the
    array, the floor for any [B, T] -> [B, T] map (a filter, a per-token loss)."""
    import jax.numpy as jnp
    z = jnp.ones(shape, dtype)
    f = jax.jit(lambda z: z * 2 + 1)
    jax.block_until_ready(f(z))
    return median_time(lambda: f(z), repeats)


def matmul_peak_flops(n: int = 2048, dtype="float32", repeats: int = 7) -> float:
    """FLOP/s of a jitted [n, n] @ [n, n] matmul (2 n^3 flops): the compute peak XLA reaches here."""
    import jax.numpy as jnp
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    return 2.0 * n ** 3 / median_time(lambda: f(a), repeats)


def stream_read_bytes_per_s(n_bytes: int = 256 << 20, repeats: int = 11) -> float:
    """Bytes/s of a jitted full reduction (sum) of a float32 array of `n_bytes`: the streaming-read rate."""
    import jax.numpy as jnp
    x = jnp.ones((n_bytes // 4,), jnp.float32)
    f = jax.jit(jnp.sum)
    jax.block_until_ready(f(x))
    return n_bytes / median_time(lambda: f(x), repeats)


def fresh_compile_s(jitted, *args, **kwargs) -> float:
    """Seconds to lower and compile `jitted` for these arguments, with JAX's caches cleared first so
    that an earlier compile of the same function is not reused."""
    jax.clear_caches()
    t0 = time.perf_counter()
    jitted.lower(*args, **kwargs).compile()
    return time.perf_counter() - t0


# ----------------------------------------------------------------- child processes with other XLA:CPU settings
# XLA flags must be set before jax is imported, so benchmark rows under other settings run in a fresh process.
# On the 2-core CPU, small ops are faster when Eigen does not split each dot over both cores (the sync costs more
# than the dot) and XLA's own loops replace the YNNPACK fusions; the two cores are then used as 2 host devices,
# each running its share of a batch (`shard_map`). Both flags change the summation order only.
SINGLE_THREAD_EIGEN = "--xla_cpu_multi_thread_eigen=false --xla_cpu_experimental_ynn_fusion_type="


def child_json(script: str, argv: list[str], devices: int, flags: str = "") -> Any:
    """Runs `python script *argv` in a fresh process with `devices` XLA host devices and the extra XLA `flags`
    (replacing XLA_FLAGS) and returns the JSON of the last line the child printed. A failing child raises
    with its stderr."""
    import json
    import subprocess
    import sys
    xla = f"--xla_force_host_platform_device_count={devices} {flags}".strip()
    proc = subprocess.run([sys.executable, script, *argv], env=dict(os.environ, XLA_FLAGS=xla),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {script} {' '.join(argv)} (XLA_FLAGS={xla!r}) failed with exit "
                           f"code {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
