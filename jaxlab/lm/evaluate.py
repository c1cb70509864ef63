"""Evaluation of the LM on arithmetic problems: greedy accuracy, unbiased pass@k, token counts."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from scipy.special import comb

from jaxlab.lm.model import LMConfig
from jaxlab.lm.sampler import sample
from jaxlab.lm.tasks import Problem, parse_answer
from jaxlab.lm.tokenizer import CharTokenizer


def pass_at_k(n, c, k: int) -> np.ndarray:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), elementwise.

    Args: n: samples per problem (>= k); c: number correct [N] (0 <= c <= n); k >= 1.
    Returns: [N] float64.
    >>> float(pass_at_k(2, 1, 1))
    0.5
    """
    n, c = np.asarray(n), np.asarray(c)
    if k < 1 or np.any(n < k):
        raise ValueError(f"k: expected 1 <= k <= n, got k={k}, n={n}")
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("c: expected 0 <= c <= n")
    return 1.0 - comb(n - c, k, exact=False) / comb(n, k, exact=False)


def prompts_of(problems: Sequence[Problem], tok: CharTokenizer, mode: str, length: int | None = None
               ) -> np.ndarray:
    """Left-padded prompt ids [N, P] ('<bos>Q:..= T:' or '... A:')."""
    ids, _ = tok.encode_batch(["<bos>" + p.prompt(mode) for p in problems], length=length,
                              pad_side="left")
    return ids


def generate_answers(params, problems: Sequence[Problem], *, cfg: LMConfig, tok: CharTokenizer,
                     mode: str = "cot", key=None, num_samples: int = 1, greedy: bool = True,
                     temperature: float = 1.0, max_new_tokens: int | None = None,
                     batch_size: int = 128, prompt_len: int | None = None) -> dict:
    """Runs the sampler over `problems` in fixed-size batches (one compile).

    Returns a dict of numpy arrays: correct [N, G] bool, parsed [N, G] (object; None =
    unparseable), n_tokens [N, G] generated tokens incl. EOS, texts (list of N lists of G str),
    model_logprobs [N, G, T_new], mask [N, G, T_new].
    """
    N = len(problems)
    if N == 0:
        raise ValueError("problems: expected at least one problem")
    prompts = prompts_of(problems, tok, mode, prompt_len)
    P = prompts.shape[1]
    if max_new_tokens is None:
        max_new_tokens = cfg.max_len - P if mode == "cot" else 10
    key = jax.random.PRNGKey(0) if key is None else key
    bs = min(batch_size, N)
    pad = (-N) % bs
    prompts = np.concatenate([prompts, np.repeat(prompts[:1], pad, axis=0)], axis=0)
    outs = []
    for i, start in enumerate(range(0, N + pad, bs)):
        o = sample(params, jax.random.fold_in(key, i), prompts[start:start + bs], cfg=cfg,
                   max_new_tokens=max_new_tokens, num_samples=num_samples, greedy=greedy,
                   temperature=temperature)
        outs.append(jax.device_get(o))
    cat = lambda name: np.concatenate([getattr(o, name) for o in outs], axis=0)[:N]
    toks, mask, lps = cat("tokens"), cat("mask"), cat("model_logprobs")
    texts = [[tok.decode(toks[n, g], stop_at_eos=True) for g in range(num_samples)] for n in range(N)]
    parsed = np.empty((N, num_samples), object)
    correct = np.zeros((N, num_samples), bool)
    for n, p in enumerate(problems):
        for g in range(num_samples):
            parsed[n, g] = parse_answer(texts[n][g]) if mode == "direct" or "A:" in texts[n][g] else None
            correct[n, g] = parsed[n, g] is not None and parsed[n, g] == p.answer
    return {"correct": correct, "parsed": parsed, "n_tokens": mask.sum(-1), "texts": texts,
            "model_logprobs": lps, "mask": mask}


def evaluate(params, problems: Sequence[Problem], *, cfg: LMConfig, tok: CharTokenizer, key,
             modes: Sequence[str] = ("cot", "direct"), n_samples: int = 0,
             ks: Sequence[int] = (1, 8), temperature: float = 1.0, batch_size: int = 128) -> dict:
    """Per-family metrics: greedy accuracy, mean generated tokens and (if n_samples > 0) pass@k.

    Returns {family: {f"{mode}_greedy_acc", f"{mode}_tokens", f"{mode}_pass@{k}", "n"}} plus
    an "all" entry over every problem.
    """
    fams = sorted({p.family for p in problems})
    res = {f: {"n": sum(p.family == f for p in problems)} for f in fams + ["all"]}
    res["all"]["n"] = len(problems)
    fam_arr = np.array([p.family for p in problems])
    for mode in modes:
        g = generate_answers(params, problems, cfg=cfg, tok=tok, mode=mode, greedy=True,
                             batch_size=batch_size)
        s = None
        if n_samples > 0:
            s = generate_answers(params, problems, cfg=cfg, tok=tok, mode=mode, greedy=False,
                                 key=jax.random.fold_in(key, list(modes).index(mode)),
                                 num_samples=n_samples, temperature=temperature,
                                 batch_size=max(1, batch_size // n_samples))
        for f in fams + ["all"]:
            sel = np.ones(len(problems), bool) if f == "all" else fam_arr == f
            res[f][f"{mode}_greedy_acc"] = float(g["correct"][sel, 0].mean())
            res[f][f"{mode}_tokens"] = float(g["n_tokens"][sel, 0].mean())
            if s is not None:
                c = s["correct"][sel].sum(1)
                for k in ks:
                    if k <= n_samples:
                        res[f][f"{mode}_pass@{k}"] = float(pass_at_k(n_samples, c, k).mean())
    return res
