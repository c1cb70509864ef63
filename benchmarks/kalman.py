"""Benchmark: KPO's causal Kalman filter — NumPy loop vs jit lax.scan / associative_scan / chunked.

    .venv/bin/python benchmarks/kalman.py --size=tiny|full|gpu [--out=results/bench/kalman.json]

Parity first (every jit path against the float64 NumPy loop, unmasked and with a suffix-pad mask),
compile time measured on a fresh compile (`jax.clear_caches()` first), implementations timed
round-robin in one process (median of medians), speedups against the NumPy loop, and every row
carries the limit it should be compared with: the elementwise floor (a jitted `z*2+1` on the same
array: one read and one write) as `floor_s` and `ratio_to_floor`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.core.bench import cli, fresh_compile_s, median_time, record  # noqa: E402
from jaxlab.rl.kalman import kalman_filter, kalman_filter_loop, kalman_gains  # noqa: E402

SIZES = {
    "tiny": dict(cases=[(1, 64), (8, 256)], repeats=3),
    "headline": dict(cases=[(256, 4096), (64, 1024), (512, 16384), (8, 256)], repeats=7),
    "full": dict(cases=[(256, 4096)] + [(b, t) for b in (1, 64, 512) for t in (256, 1024, 4096, 16384)]
                 + [(256, t) for t in (256, 1024, 16384)], repeats=7),
    # one prepared GPU run (issue 19 item 7, benchmarks/gpu_suite.sh): absolute times up to T = 65536
    "gpu": dict(cases=[(256, 4096), (256, 16384), (64, 65536), (256, 65536)], repeats=5),
}
IMPLS = ("scan", "associative", "chunked")


def run(size: str, out: str | None) -> dict:
    spec = SIZES[size]
    rows = []
    for B, T in spec["cases"]:
        K = kalman_gains(T, Q=1e-3, V=1.0, P0=1.0)
        rng = np.random.default_rng(0)
        z = rng.normal(size=(B, T)).astype(np.float32)
        lengths = rng.integers(T // 2, T + 1, size=B)
        mask = np.arange(T)[None] < lengths[:, None]        # suffix pads (responses ending early)
        zj, mj = jnp.asarray(z), jnp.asarray(mask)
        refs = {False: kalman_filter_loop(z, K), True: kalman_filter_loop(z, K, mask_bt=mask)}
        t_np = {mk: median_time(lambda mk=mk: kalman_filter_loop(z, K, mask_bt=mask if mk else None),
                                max(1, spec["repeats"] // 3)) for mk in (False, True)}
        fns = {"floor": (jax.jit(lambda z, m: z * 2 + 1), False, 0.0)}
        for impl in IMPLS:
            for masked in (False, True):
                fn = jax.jit(lambda z, m, impl=impl, masked=masked:
                             kalman_filter(z, K, mask_bt=m if masked else None, method=impl))
                cs = fresh_compile_s(fn, zj, mj)
                err = float(np.max(np.abs(np.asarray(fn(zj, mj)) - refs[masked])))
                if err > 1e-4:
                    raise AssertionError(f"parity failed for {impl} masked={masked} B={B} T={T}: {err}")
                fns[impl + ("+mask" if masked else "")] = (fn, masked, cs, err)
        for fn, *_rest in fns.values():                    # warm: fresh_compile_s cleared the caches
            jax.block_until_ready(fn(zj, mj))
        samples = {k: [] for k in fns}
        for _ in range(spec["repeats"]):                    # round robin: load changes hit all alike
            for k, (fn, *_rest) in fns.items():
                samples[k].append(median_time(lambda fn=fn: fn(zj, mj), 3))
        med = {k: float(np.median(v)) for k, v in samples.items()}
        floor = med["floor"]
        for k, (fn, masked, cs, err) in ((k, v) for k, v in fns.items() if k != "floor"):
            t = med[k]
            rows.append({"case": {"B": B, "T": T, "mask": "suffix_pads" if masked else "none"},
                         "impl": k, "baseline": "numpy_loop", "median_s": t,
                         "baseline_median_s": t_np[masked], "speedup": t_np[masked] / t,
                         "limit": "elementwise floor (jit z*2+1, same array)", "floor_s": floor,
                         "ratio_to_floor": t / floor, "compile_s": cs, "max_abs_err": err})
            print(f"B={B:4d} T={T:6d} {k:18s} {t * 1e3:9.3f} ms  x{t / floor:5.1f} floor  numpy "
                  f"x{t_np[masked] / t:7.1f}  compile {cs:.2f}s  err {err:.1e}", flush=True)
    return record("kalman", size, rows, out, dtype="float32")


def main(argv=None):
    return cli("kalman", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
