"""Sampling throughput of the tiny LM: KV cache vs recomputing the full sequence every step, over batch sizes.

Both paths run the same jitted decoding loop with fixed shapes and the same keys; the baseline
(`use_cache=False`) runs the whole [B, P+N] buffer through the model at every step. Parity is checked first
(identical greedy tokens, logits within 1e-3), compile time is measured separately (first call), and the
median of repeated `block_until_ready` calls is reported. Every row carries the machine's limits:
- memory: each cached decoding step reads at least the whole KV cache (2 · L · B · (P+N) · d floats; empty
  slots included, the shapes are fixed) and every parameter once; `read_bytes_per_s` is that lower bound
  on the bytes moved divided by the time, against `stream_read_bytes_per_s` (a jitted full sum);
- compute: 2 · (matmul parameters) FLOPs per token plus 4 · L · (P+N) · d for attention, against
  `matmul_peak_flops` (a jitted 2048³ matmul).
The summary names the recompute baseline's best batch, so the KV cache is also compared at that batch.

The cached decoder also runs with its speed options (issue 19), each row against today's decoder (one block of
all rows, one length segment) at the same batch in the same process (`ratio_to_default`):
- `row_block="auto"` and `segments=3` (`FAST`), in this process;
- in a child process with 2 XLA host devices and `SINGLE_THREAD_EIGEN` (jaxlab.core.bench), the rows split
  over the devices by `shard_map`, with today's decoder and with `FAST`.
Greedy tokens must equal today's (asserted); the largest log-prob difference is recorded. The bytes a row
must read count only the cache slots its segments attend over.

    python benchmarks/lm_sampling.py --size=full   # 0.8M model, B in {8, 32, 64, 128} x 96 new tokens
    python benchmarks/lm_sampling.py --size=tiny   # seconds; used by the tests for parity
    python benchmarks/lm_sampling.py --size=gpu    # B up to 512, no CPU children (benchmarks/gpu_suite.sh)
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import json  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.core.bench import (SINGLE_THREAD_EIGEN, child_json, cli, matmul_peak_flops, record,  # noqa: E402
                               stream_read_bytes_per_s, timed)
from jaxlab.lm import CharTokenizer, LMConfig, generate, init, sample  # noqa: E402
from jaxlab.lm.sampler import decode_segments  # noqa: E402
from jaxlab.lm.evaluate import prompts_of  # noqa: E402

SIZES = {
    "tiny": dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, batches=(4,), N=8, repeats=1, limits=False,
                 child_configs=((2, SINGLE_THREAD_EIGEN, "fast"),)),
    "full": dict(d_model=128, num_layers=4, num_heads=4, d_ff=512, batches=(8, 32, 64, 128), N=96, repeats=3,
                 limits=True, child_configs=((2, SINGLE_THREAD_EIGEN, "default"), (2, SINGLE_THREAD_EIGEN, "fast"))),
    # one prepared GPU run (issue 19 item 7, benchmarks/gpu_suite.sh); the host-device children are CPU settings
    "gpu": dict(d_model=128, num_layers=4, num_heads=4, d_ff=512, batches=(8, 32, 128, 512), N=96, repeats=3,
                limits=True, child_configs=()),
}
DECODERS = {"default": dict(), "fast": dict(row_block="auto", segments=3)}   # sample() options
FAST = DECODERS["fast"]


def _model(s, B_max):
    tok = CharTokenizer()
    probs = generate("chain2", B_max, seed=0, split="test")
    prompts = jnp.asarray(prompts_of(probs, tok, "cot"))
    P, N = prompts.shape[1], s["N"]
    cfg = LMConfig(vocab_size=tok.vocab_size, d_model=s["d_model"], num_layers=s["num_layers"],
                   num_heads=s["num_heads"], d_ff=s["d_ff"], max_len=P + N)
    params = init(jax.random.PRNGKey(0), cfg)
    params["head"]["kernel"] = params["head"]["kernel"] * 100.0   # trained-like logit scale
    return cfg, params, prompts


def _parity(params, prompts, cfg, N):
    kw = dict(cfg=cfg, max_new_tokens=N, greedy=True, return_logits=True)
    a = sample(params, None, prompts, use_cache=True, **kw)
    b = sample(params, None, prompts, use_cache=False, **kw)
    same = bool(np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens)))
    max_diff = float(np.abs(np.asarray(a.logits) - np.asarray(b.logits)).max())
    if not same or max_diff > 1e-3:
        raise AssertionError(f"parity failed: same_tokens={same} max_logit_diff={max_diff}")
    return same, max_diff


def _work_per_step(params, cfg, B, P, N, segments=1):
    """(lower bound of bytes read, FLOPs) of one cached decoding step of B rows, averaged over the N steps: the
    cache slots the step's length segment attends over (all P + N with one segment) and every parameter once."""
    leaves = jax.tree_util.tree_leaves(params)
    param_bytes = sum(x.size * x.dtype.itemsize for x in leaves)
    matmul_params = sum(x.size for x in leaves if x.ndim == 2)
    ends = decode_segments(P, N, segments)
    slots = sum((e - s) * (P + e) for s, e in zip((0,) + ends[:-1], ends)) / N      # mean slots per step
    cache_bytes = 2 * cfg.num_layers * B * slots * cfg.d_model * 4
    flops = B * (2 * matmul_params + 4 * cfg.num_layers * slots * cfg.d_model)
    return cache_bytes + param_bytes, flops


def _limits(params, cfg, B, P, N, t, segments, stream, peak):
    bytes_step, flops_step = _work_per_step(params, cfg, B, P, N, segments)
    return dict(limit="stream_read_bytes_per_s, matmul_peak_flops", read_bytes_per_s=bytes_step * N / t,
                stream_read_bytes_per_s=stream, bandwidth_fraction=bytes_step * N / t / stream,
                flops_per_s=flops_step * N / t, matmul_peak_flops=peak, peak_fraction=flops_step * N / t / peak)


def _greedy(params, prompts, cfg, N, **opts):
    out = sample(params, None, prompts, cfg=cfg, max_new_tokens=N, greedy=True, **opts)
    return out.tokens, out.model_logprobs


def run(size: str = "tiny", out_path: str | None = None) -> dict:
    s = SIZES[size]
    cfg, params, prompts_all = _model(s, max(s["batches"]))
    P, N = prompts_all.shape[1], s["N"]
    same, max_diff = _parity(params, prompts_all[:min(s["batches"])], cfg, N)
    stream = stream_read_bytes_per_s() if s["limits"] else None
    peak = matmul_peak_flops() if s["limits"] else None
    kw = dict(cfg=cfg, max_new_tokens=N, greedy=True, return_logits=size == "tiny")   # tiny: reuse the parity compile
    limits = (lambda B, t, segments: _limits(params, cfg, B, P, N, t, segments, stream, peak)) if s["limits"] \
        else (lambda B, t, segments: {})
    rows, today = [], {}
    for B in s["batches"]:
        prompts = prompts_all[:B]
        out0, c_cache, t_cache = timed(lambda: _greedy(params, prompts, cfg, N, return_logits=kw["return_logits"]),
                                       s["repeats"])
        _, c_full, t_full = timed(lambda: sample(params, None, prompts, use_cache=False, **kw).tokens, s["repeats"])
        row = {"case": {"B": B, "P": P, "N": N, "d_model": cfg.d_model, "num_layers": cfg.num_layers},
               "impl": "kv_cache", "baseline": "full_recompute",
               "median_s": t_cache, "baseline_median_s": t_full, "speedup": t_full / t_cache,
               "compile_s": c_cache, "baseline_compile_s": c_full,
               "tokens_per_s": B * N / t_cache, "baseline_tokens_per_s": B * N / t_full,
               "same_tokens": same, "max_logit_diff": max_diff, **limits(B, t_cache, 1)}
        rows.append(row)
        today[B] = (row, *map(np.asarray, out0))
        (tok, lp), c_fast, t_fast = timed(lambda: _greedy(params, prompts, cfg, N, **FAST), s["repeats"])
        rows.append(_option_row(today[B], "kv_cache " + json.dumps(FAST), tok, lp, t_fast, c_fast, 1, "",
                                limits(B, t_fast, FAST["segments"])))
    for devices, flags, decoder in s["child_configs"]:
        child = child_json(__file__, [f"--size={size}", f"--child={decoder}"], devices, flags)
        for B, c in child.items():
            rows.append(_option_row(today[int(B)], f"kv_cache {json.dumps(DECODERS[decoder])} on {devices} host "
                                    "devices (shard_map over rows)", c["tokens"], c["model_logprobs"], c["median_s"],
                                    c["compile_s"], devices, flags,
                                    limits(int(B), c["median_s"], DECODERS[decoder].get("segments", 1))))
    best = max((r for r in rows if r["impl"] == "kv_cache"), key=lambda r: r["baseline_tokens_per_s"])
    return record("lm_sampling", size, rows, out_path,
                  baseline_best_batch=best["case"]["B"], baseline_best_tokens_per_s=best["baseline_tokens_per_s"],
                  kv_cache_tokens_per_s_at_that_batch=best["tokens_per_s"],
                  speedup_at_baseline_best_batch=best["tokens_per_s"] / best["baseline_tokens_per_s"])


def _option_row(today, impl, tok, lp, t, compile_s, devices, flags, limits):
    """A row of the cached decoder with speed options, against today's decoder: today = (its row, greedy tokens,
    model log-probs) at the same batch in this process; `limits` are the row's limit fields."""
    ref, tok0, lp0 = today
    tok, lp = np.asarray(tok), np.asarray(lp)
    if not np.array_equal(tok, tok0):
        raise AssertionError(f"{impl}: greedy tokens differ from today's decoder at B={ref['case']['B']}")
    B, N = ref["case"]["B"], ref["case"]["N"]
    return {"case": ref["case"], "impl": impl, "baseline": "kv_cache (today's decoder, same batch, this process)",
            "xla_flags": flags, "devices": devices, "median_s": t, "baseline_median_s": ref["median_s"],
            "compile_s": compile_s, "tokens_per_s": B * N / t, "baseline_tokens_per_s": ref["tokens_per_s"],
            "ratio_to_default": ref["median_s"] / t, "same_tokens": True,
            "max_logprob_diff_vs_default": float(np.abs(lp - lp0).max()), **limits}


def _child(size: str, decoder: str) -> None:
    """In a child process (2 host devices, see `child_json`): the greedy decoder with `DECODERS[decoder]`, the rows
    split over the devices by shard_map; prints {B: {tokens, model_logprobs, median_s, compile_s}} as one line."""
    from jax.sharding import NamedSharding, PartitionSpec
    from jaxlab.core.sharding import make_mesh
    s = SIZES[size]
    cfg, params, prompts_all = _model(s, max(s["batches"]))
    N, mesh = s["N"], make_mesh(jax.device_count())
    f = jax.jit(jax.shard_map(lambda p: _greedy(params, p, cfg, N, **DECODERS[decoder]), mesh=mesh,
                              in_specs=PartitionSpec("data"), out_specs=PartitionSpec("data")))
    res = {}
    for B in s["batches"]:
        prompts = jax.device_put(prompts_all[:B], NamedSharding(mesh, PartitionSpec("data")))
        (tok, lp), c, t = timed(lambda: f(prompts), s["repeats"])
        res[B] = {"tokens": np.asarray(tok).tolist(), "model_logprobs": np.asarray(lp).tolist(), "median_s": t,
                  "compile_s": c}
    print(json.dumps(res))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    child = [a.split("=", 1)[1] for a in argv if a.startswith("--child=")]
    if child:
        return _child(next(a.split("=", 1)[1] for a in argv if a.startswith("--size=")), child[0])
    return cli("lm_sampling", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
