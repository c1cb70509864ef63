"""Sampling throughput of the tiny LM: KV cache vs recomputing the full sequence every step.

Both paths run the same jitted `lax.scan` decoding loop with fixed shapes and the same keys; the
baseline (`use_cache=False`) runs the whole [B, P+N] buffer through the model at every step.
Parity is checked first (identical greedy tokens, logits within 1e-4), compile time is measured
separately, and the median of repeated `block_until_ready` calls is reported.

    python benchmarks/lm_sampling.py --size=full   # 0.8M model, 128 prompts x 96 new tokens
    python benchmarks/lm_sampling.py --size=tiny   # seconds; used by the tests for parity
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.bench import cli, record, timed
from jaxlab.lm import CharTokenizer, LMConfig, generate, init, sample
from jaxlab.lm.evaluate import prompts_of

SIZES = {
    "tiny": dict(d_model=32, num_layers=2, num_heads=4, d_ff=64, B=4, N=8, repeats=1),
    "full": dict(d_model=128, num_layers=4, num_heads=4, d_ff=512, B=128, N=96, repeats=3),
}


def run(size: str = "tiny", out_path: str | None = None) -> dict:
    s = SIZES[size]
    tok = CharTokenizer()
    probs = generate("chain2", s["B"], seed=0, split="test")
    prompts = jnp.asarray(prompts_of(probs, tok, "cot"))
    P, N, B = prompts.shape[1], s["N"], s["B"]
    cfg = LMConfig(vocab_size=tok.vocab_size, d_model=s["d_model"], num_layers=s["num_layers"],
                   num_heads=s["num_heads"], d_ff=s["d_ff"], max_len=P + N)
    params = init(jax.random.PRNGKey(0), cfg)
    params["head"]["kernel"] = params["head"]["kernel"] * 100.0   # trained-like logit scale
    kw = dict(cfg=cfg, max_new_tokens=N, greedy=True, return_logits=True)
    a = sample(params, None, prompts, use_cache=True, **kw)
    b = sample(params, None, prompts, use_cache=False, **kw)
    same = bool(np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens)))
    max_diff = float(np.abs(np.asarray(a.logits) - np.asarray(b.logits)).max())
    if not same or max_diff > 1e-3:
        raise AssertionError(f"parity failed: same_tokens={same} max_logit_diff={max_diff}")
    kw["return_logits"] = size == "tiny"      # tiny: reuse the parity compile (tests)
    rows = []
    _, c_cache, t_cache = timed(lambda: sample(params, None, prompts, use_cache=True, **kw).tokens,
                                s["repeats"])
    _, c_full, t_full = timed(lambda: sample(params, None, prompts, use_cache=False, **kw).tokens,
                              s["repeats"])
    rows.append({"case": {"B": B, "P": P, "N": N, "d_model": cfg.d_model,
                          "num_layers": cfg.num_layers},
                 "impl": "kv_cache", "baseline": "full_recompute",
                 "median_s": t_cache, "baseline_median_s": t_full,
                 "speedup": t_full / t_cache, "compile_s": c_cache, "baseline_compile_s": c_full,
                 "tokens_per_s": B * N / t_cache, "baseline_tokens_per_s": B * N / t_full,
                 "same_tokens": same, "max_logit_diff": max_diff})
    return record("lm_sampling", size, rows, out_path)


if __name__ == "__main__":
    r = cli("lm_sampling", run, SIZES, __doc__)
    row = r["rows"][0]
    print(f"lm_sampling[{r['size']}]: cache {row['tokens_per_s']:.0f} tok/s, full recompute "
          f"{row['baseline_tokens_per_s']:.0f} tok/s, speedup {row['speedup']:.1f}x "
          f"(same tokens: {row['same_tokens']}, max logit diff {row['max_logit_diff']:.1e})")
