"""Benchmark: loss + gradient cost of every policy loss relative to GRPO (goal: KPO <= 1.15x GRPO).

    .venv/bin/python benchmarks/policy_loss.py --size=tiny|full [--out=results/bench/policy_loss.json]

Each method is `jit(value_and_grad(loss))` w.r.t. the [B, T] log-probs; parity first (on-policy every
method must give GRPO's gradient), compile timed apart, median of repeated calls. The loss alone
is measured (not the LM forward/backward, which dominates a real update step and would dilute the ratio).
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
from jaxlab.rl.losses import POLICY_LOSSES  # noqa: E402

SIZES = {"tiny": dict(cases=[(16, 32)], repeats=5),
         "full": dict(cases=[(128, 96), (256, 1024), (256, 4096)], repeats=21)}
METHODS = ("grpo", "grpo_dual", "gspo", "gspo_token", "gmpo", "kpo", "kpo_clipped", "kpo_tr")




def _vg(name, parallel):
    fn = POLICY_LOSSES[name]
    kw = {"parallel": parallel} if name.startswith("kpo") else {}
    return jax.jit(jax.value_and_grad(lambda lp, old, adv, m: fn(lp, old, adv, m, **kw)[0]))


def run(size: str, out: str | None) -> dict:
    spec = SIZES[size]
    rows = []
    for B, T in spec["cases"]:
        rng = np.random.default_rng(0)
        lengths = rng.integers(T // 2, T + 1, size=B)
        mask = jnp.asarray(np.arange(T)[None] < lengths[:, None])
        logp = jnp.asarray(-np.abs(rng.normal(size=(B, T))), jnp.float32)
        old = logp + 0.1 * jnp.asarray(rng.standard_t(2, size=(B, T)), jnp.float32)
        adv = jnp.asarray(rng.normal(size=B), jnp.float32)
        g_ref = np.asarray(_vg("grpo", True)(logp, logp, adv, mask)[1])
        variants = [(m, True) for m in METHODS] + [(m, False) for m in METHODS if m.startswith("kpo")]
        times = {}
        for name, parallel in variants:
            f = _vg(name, parallel)
            t0 = time.perf_counter()
            c = f.lower(logp, old, adv, mask).compile()
            compile_s = time.perf_counter() - t0
            err = float(np.max(np.abs(np.asarray(c(logp, logp, adv, mask)[1]) - g_ref)))
            if err > 1e-6:
                raise AssertionError(f"on-policy parity failed for {name}: {err}")
            t = median_time(lambda: c(logp, old, adv, mask), spec["repeats"])
            label = name + ("" if not name.startswith("kpo") else ("[assoc]" if parallel else "[scan]"))
            times[label] = (t, compile_s)
        base = times["grpo"][0]
        for label, (t, cs) in times.items():
            rows.append({"case": {"B": B, "T": T}, "impl": label, "baseline": "grpo", "median_s": t,
                         "baseline_median_s": base, "ratio_vs_baseline": t / base,
                         "speedup": base / t, "compile_s": cs})
            print(f"B={B:4d} T={T:5d} {label:22s} {t * 1e3:8.3f} ms  x{t / base:5.2f} of GRPO  "
                  f"compile {cs:.2f}s", flush=True)
    return record("policy_loss", size, rows, out)


def main(argv=None):
    return cli("policy_loss", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
