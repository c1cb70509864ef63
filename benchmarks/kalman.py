"""Benchmark: KPO's causal Kalman filter — NumPy loop over t vs jit lax.scan vs jit lax.associative_scan.

    .venv/bin/python benchmarks/kalman.py --size=tiny|full [--out=results/bench/kalman.json]

Parity first (both jit paths against the float64 NumPy loop), compile time measured apart, median of
repeated `block_until_ready` calls, speedups against the NumPy loop measured in the same process.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.core.bench import cli, median_time, record  # noqa: E402
from jaxlab.rl.kalman import kalman_filter, kalman_filter_loop, kalman_gains  # noqa: E402

SIZES = {
    "tiny": dict(cases=[(1, 64), (8, 256)], repeats=3),
    "full": dict(cases=[(b, t) for b in (1, 64, 512) for t in (256, 1024, 4096, 16384)] + [(256, 4096)],
                 repeats=7),
}




def run(size: str, out: str | None) -> dict:
    spec = SIZES[size]
    rows = []
    for B, T in spec["cases"]:
        K = kalman_gains(T, Q=1e-3, V=1.0, P0=1.0)
        z = np.random.default_rng(0).normal(size=(B, T)).astype(np.float32)
        zj = jnp.asarray(z)
        ref = kalman_filter_loop(z, K)
        t_np = median_time(lambda: kalman_filter_loop(z, K), max(1, spec["repeats"] // 2))
        for impl, parallel in (("lax.scan", False), ("lax.associative_scan", True)):
            fn = jax.jit(lambda z, parallel=parallel: kalman_filter(z, K, parallel=parallel))
            t0 = time.perf_counter()
            compiled = fn.lower(zj).compile()
            compile_s = time.perf_counter() - t0
            err = float(np.max(np.abs(np.asarray(compiled(zj)) - ref)))
            if err > 1e-4:
                raise AssertionError(f"parity failed for {impl} B={B} T={T}: max err {err}")
            t = median_time(lambda: compiled(zj), spec["repeats"])
            rows.append({"case": {"B": B, "T": T}, "impl": impl, "baseline": "numpy_loop",
                         "median_s": t, "baseline_median_s": t_np, "speedup": t_np / t,
                         "compile_s": compile_s, "max_abs_err": err})
            print(f"B={B:4d} T={T:6d} {impl:22s} {t * 1e3:9.3f} ms  numpy {t_np * 1e3:9.3f} ms  "
                  f"x{t_np / t:7.1f}  compile {compile_s:.2f}s  err {err:.1e}", flush=True)
    return record("kalman", size, rows, out, dtype="float32")


def main(argv=None):
    return cli("kalman", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
