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

    python benchmarks/lm_sampling.py --size=full   # 0.8M model, B in {8, 32, 64, 128} x 96 new tokens
    python benchmarks/lm_sampling.py --size=tiny   # seconds; used by the tests for parity
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlab.core.bench import cli, matmul_peak_flops, record, stream_read_bytes_per_s, timed  # noqa: E402
from jaxlab.lm import CharTokenizer, LMConfig, generate, init, sample  # noqa: E402
from jaxlab.lm.evaluate import prompts_of  # noqa: E402

SIZES = {
    "tiny": dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, batches=(4,), N=8, repeats=1, limits=False),
    "full": dict(d_model=128, num_layers=4, num_heads=4, d_ff=512, batches=(8, 32, 64, 128), N=96, repeats=3,
                 limits=True),
}


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


def _work_per_step(params, cfg, B, P, N):
    """(lower bound of bytes read, FLOPs) of one cached decoding step of B rows."""
    leaves = jax.tree_util.tree_leaves(params)
    param_bytes = sum(x.size * x.dtype.itemsize for x in leaves)
    matmul_params = sum(x.size for x in leaves if x.ndim == 2)
    cache_bytes = 2 * cfg.num_layers * B * (P + N) * cfg.d_model * 4
    flops = B * (2 * matmul_params + 4 * cfg.num_layers * (P + N) * cfg.d_model)
    return cache_bytes + param_bytes, flops


def run(size: str = "tiny", out_path: str | None = None) -> dict:
    s = SIZES[size]
    cfg, params, prompts_all = _model(s, max(s["batches"]))
    P, N = prompts_all.shape[1], s["N"]
    same, max_diff = _parity(params, prompts_all[:min(s["batches"])], cfg, N)
    stream = stream_read_bytes_per_s() if s["limits"] else None
    peak = matmul_peak_flops() if s["limits"] else None
    kw = dict(cfg=cfg, max_new_tokens=N, greedy=True, return_logits=size == "tiny")   # tiny: reuse the parity compile
    rows = []
    for B in s["batches"]:
        prompts = prompts_all[:B]
        _, c_cache, t_cache = timed(lambda: sample(params, None, prompts, use_cache=True, **kw).tokens, s["repeats"])
        _, c_full, t_full = timed(lambda: sample(params, None, prompts, use_cache=False, **kw).tokens, s["repeats"])
        row = {"case": {"B": B, "P": P, "N": N, "d_model": cfg.d_model, "num_layers": cfg.num_layers},
               "impl": "kv_cache", "baseline": "full_recompute",
               "median_s": t_cache, "baseline_median_s": t_full, "speedup": t_full / t_cache,
               "compile_s": c_cache, "baseline_compile_s": c_full,
               "tokens_per_s": B * N / t_cache, "baseline_tokens_per_s": B * N / t_full,
               "same_tokens": same, "max_logit_diff": max_diff}
        if s["limits"]:
            bytes_step, flops_step = _work_per_step(params, cfg, B, P, N)
            row.update(limit="stream_read_bytes_per_s, matmul_peak_flops",
                       read_bytes_per_s=bytes_step * N / t_cache, stream_read_bytes_per_s=stream,
                       bandwidth_fraction=bytes_step * N / t_cache / stream,
                       flops_per_s=flops_step * N / t_cache, matmul_peak_flops=peak,
                       peak_fraction=flops_step * N / t_cache / peak)
        rows.append(row)
    best = max(rows, key=lambda r: r["baseline_tokens_per_s"])
    return record("lm_sampling", size, rows, out_path,
                  baseline_best_batch=best["case"]["B"], baseline_best_tokens_per_s=best["baseline_tokens_per_s"],
                  kv_cache_tokens_per_s_at_that_batch=best["tokens_per_s"],
                  speedup_at_baseline_best_batch=best["tokens_per_s"] / best["baseline_tokens_per_s"])


def main(argv=None):
    return cli("lm_sampling", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
