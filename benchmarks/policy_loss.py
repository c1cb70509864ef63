"""Benchmark: loss + gradient cost of every policy loss relative to GRPO (issue 19 goals: KPO <= 1.5x GRPO
at 256x4096 and <= 1.15x at 128x96).

    .venv/bin/python benchmarks/policy_loss.py --size=tiny|full [--out=results/bench/policy_loss.json]

Each method is `jit(value_and_grad(loss))` w.r.t. the [B, T] log-probs; parity first (on-policy every
method must give GRPO's gradient), compile timed apart, median of repeated calls. The loss alone
is measured (not the LM forward/backward, which dominates a real update step and would dilute the ratio).
A second table times the whole jitted RL update of `jaxlab.rl.train.make_update` (teacher-forced LM
forward + backward + loss + Adam, one minibatch) for GRPO and the KPO losses on the miniature LMs (the
quick SFT size d=64 L=3 and the full one d=128 L=4): the overhead a training run actually pays.
"""

from __future__ import annotations

import functools
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.core.bench import cli, fresh_compile_s, median_time, record  # noqa: E402
from jaxlab.rl.losses import POLICY_LOSSES  # noqa: E402

SIZES = {"tiny": dict(cases=[(16, 32)], repeats=5, lm=[(32, 1, 16, 24)]),
         "full": dict(cases=[(128, 96), (256, 1024), (256, 4096)], repeats=21,
                      lm=[(64, 3, 128, 40), (128, 4, 128, 96)]),   # (d_model, layers, rows, new tokens)
         # one prepared GPU run (issue 19 item 7, benchmarks/gpu_suite.sh)
         "gpu": dict(cases=[(128, 96), (256, 4096), (1024, 4096)], repeats=11, lm=[(128, 4, 128, 96)])}
METHODS = ("grpo", "grpo_dual", "gspo", "gspo_token", "gmpo", "kpo", "kpo_clipped", "kpo_tr")




def _vg(name, method):
    fn = POLICY_LOSSES[name]
    kw = {"method": method} if name.startswith("kpo") else {}
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
        g_ref = np.asarray(_vg("grpo", "auto")(logp, logp, adv, mask)[1])
        # the default (method="auto": the chunked filter) and, for KPO, the two scans it replaced
        variants = [(m, "auto") for m in METHODS] + [("kpo", "associative"), ("kpo", "scan")]
        compiled = {}
        for name, method in variants:
            f = _vg(name, method)
            compile_s = fresh_compile_s(f, logp, old, adv, mask)
            c = f.lower(logp, old, adv, mask).compile()
            err = float(np.max(np.abs(np.asarray(c(logp, logp, adv, mask)[1]) - g_ref)))
            if err > 1e-6:
                raise AssertionError(f"on-policy parity failed for {name}: {err}")
            label = name + ("" if method == "auto" else f"[{method}]")
            compiled[label] = (c, compile_s)
        floor = jax.jit(lambda lp: lp * 2 + 1).lower(logp).compile()
        compiled["floor"] = (lambda lp, *a: floor(lp), 0.0)
        # round robin over the methods (each sample = median of 5 calls), so load changes hit all alike
        samples = {lb: [] for lb in compiled}
        for _ in range(spec["repeats"]):
            for lb, (c, _) in compiled.items():
                samples[lb].append(median_time(lambda c=c: c(logp, old, adv, mask), 5))
        times = {lb: (float(np.median(v)), compiled[lb][1]) for lb, v in samples.items()}
        base = times["grpo"][0]
        floor_s = times.pop("floor")[0]
        for label, (t, cs) in times.items():
            rows.append({"case": {"B": B, "T": T}, "impl": label, "baseline": "grpo", "median_s": t,
                         "baseline_median_s": base, "ratio_vs_baseline": t / base,
                         "speedup": base / t, "compile_s": cs,
                         "limit": "elementwise floor (jit z*2+1 on the [B, T] log-probs)",
                         "floor_s": floor_s, "ratio_to_floor": t / floor_s})
            print(f"B={B:4d} T={T:5d} {label:22s} {t * 1e3:8.3f} ms  x{t / base:5.2f} of GRPO  "
                  f"compile {cs:.2f}s", flush=True)
    rows += update_rows(spec)
    return record("policy_loss", size, rows, out)


def update_rows(spec) -> list[dict]:
    """Whole RL update step (LM forward/backward + loss + Adam) per method, relative to GRPO's."""
    import ml_collections
    from jaxlab.lm import CharTokenizer, LMConfig, init
    from jaxlab.rl.train import default_rl_config, loss_hparams, make_update
    from jaxlab.rl.losses import get_policy_loss
    tok = CharTokenizer()
    rows = []
    for d, L, R, N in spec["lm"]:
        P = 16
        cfg = LMConfig(vocab_size=tok.vocab_size, d_model=d, num_layers=L, num_heads=4, d_ff=4 * d,
                       max_len=P + N)
        params = init(jax.random.PRNGKey(0), cfg)
        rng = np.random.default_rng(1)
        lengths = rng.integers(N // 2, N + 1, size=R)
        resp = np.arange(N)[None] < lengths[:, None]
        batch = {"seq": jnp.asarray(rng.integers(4, tok.vocab_size, size=(R, P + N))),
                 "mask": jnp.asarray(np.concatenate([np.zeros((R, P), bool), resp], 1)),
                 "old_logp": jnp.asarray(np.where(resp, -np.abs(rng.normal(size=(R, N))), 0.0), jnp.float32),
                 "adv": jnp.asarray(rng.normal(size=R), jnp.float32)}
        fns, compile_s = {}, {}
        for method in ("grpo", "kpo", "kpo_clipped", "kpo_tr"):
            rl = default_rl_config()
            rl.update(method=method, n_minibatches=1, epochs=1)
            tx, update = make_update(cfg, rl, P=P, N=N, rows=R,
                                     loss_fn=get_policy_loss(method, **loss_hparams(rl, N)),
                                     diagnostics=False)
            opt = tx.init(params)
            fns[method] = functools.partial(update, params, opt, batch, jax.random.PRNGKey(2))
            jax.clear_caches()                             # a fresh compile, not a reused one
            t0 = time.perf_counter()
            jax.block_until_ready(fns[method]())
            compile_s[method] = time.perf_counter() - t0
        # round robin over the methods, so that load changes on a shared machine hit all of them alike
        samples = {m: [] for m in fns}
        for _ in range(spec["repeats"]):
            for m, f in fns.items():
                samples[m].append(median_time(f, 1))
        times = {m: (float(np.median(v)), compile_s[m]) for m, v in samples.items()}
        base = times["grpo"][0]
        for method, (t, cs) in times.items():
            rows.append({"case": {"what": "RL update step", "d_model": d, "layers": L, "rows": R,
                                  "new_tokens": N}, "impl": method + "_update", "baseline": "grpo_update",
                         "median_s": t, "baseline_median_s": base, "ratio_vs_baseline": t / base,
                         "speedup": base / t, "compile_s": cs})
            print(f"update d={d} L={L} rows={R} N={N} {method:12s} {t * 1e3:8.2f} ms  x{t / base:5.2f} of GRPO"
                  f"  compile {cs:.2f}s", flush=True)
    return rows


def main(argv=None):
    return cli("policy_loss", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
