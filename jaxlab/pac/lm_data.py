"""The LM setting: every prompt answered by the shared tiny LM in both modes (` A:` direct, ` T:` CoT).

Per distinct question: U = 1 - prod of the direct answer's token probabilities (EOS excluded; greedy),
loss = 1[direct answer != CoT answer] (an unparseable direct answer counts as a disagreement), the
degrade-only loss 1[CoT correct and direct wrong] behind a flag, token counts of both modes (EOS
included) and the prompt embedding = mean over the prompt's tokens of the final hidden state (after
the last LayerNorm) on the direct-mode prompt.

Population: all distinct questions of each family in the val and test splits of `jaxlab.lm.tasks`
(add1 has only its 100 facts, which are exempt from splitting), capped at `max_per_family` by a seeded
subsample. Calibration draws are i.i.d. from this finite population, so its risk curves are exact.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.lm import tasks as tasks_lib
from jaxlab.lm.evaluate import generate_answers, prompts_of
from jaxlab.lm.model import LMConfig, apply
from jaxlab.lm.tokenizer import CharTokenizer


def _enumerate(family: str, digits: int, detail: str) -> list[tasks_lib.Problem] | None:
    """All problems of a small family (None when the family is too large to enumerate)."""
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    hi = 10 ** digits
    gid = tasks_lib.FAMILIES.index(family)
    if family == "add1":
        return tasks_lib.all_add1(detail)
    if family == "addsub" and (hi - lo) ** 2 <= 20_000:
        return [tasks_lib.Problem(f"{a}{op}{b}", tasks_lib.binary_step(a, op, b, detail=detail),
                                  a + b if op == "+" else a - b, family, gid, digits)
                for a in range(lo, hi) for b in range(lo, hi) for op in "+-"]
    if family == "mul1" and (hi - lo) <= 10_000:
        return [tasks_lib.Problem(f"{a}*{m}", tasks_lib.mul_step(a, m, detail=detail), a * m, family,
                                  gid, digits) for a in range(lo, hi) for m in range(2, 10)]
    return None


def family_population(families: dict, *, max_per_family: int, seed: int = 0,
                      splits: Sequence[str] = ("val", "test"), detail: str = "columns"
                      ) -> list[tasks_lib.Problem]:
    """Distinct questions of each family (dict name -> digits) from `splits`, at most max_per_family each.

    Small families are enumerated exactly; larger ones (chain2) are sampled with `tasks.generate`.
    """
    out = []
    for f, digits in families.items():
        if f not in tasks_lib.FAMILIES:
            raise ValueError(f"families: unknown family {f!r}; expected one of {tasks_lib.FAMILIES}")
        allp = _enumerate(f, int(digits), detail)
        if allp is not None:
            probs = [p for p in allp if f in tasks_lib.EXEMPT_FROM_SPLIT
                     or tasks_lib.split_of(p.question) in splits]
        else:
            probs, seen = [], set()
            for sp in splits:
                for p in tasks_lib.generate(f, max_per_family, seed=seed, split=sp, digits=int(digits),
                                            detail=detail):
                    if p.question not in seen:
                        seen.add(p.question)
                        probs.append(p)
        if len(probs) > max_per_family:
            keep = np.sort(np.random.default_rng([seed, tasks_lib.FAMILIES.index(f)]).choice(
                len(probs), max_per_family, replace=False))
            probs = [probs[i] for i in keep]
        out += probs
    return out


def prompt_embeddings(params, problems, *, cfg: LMConfig, tok: CharTokenizer, batch_size: int = 256
                      ) -> np.ndarray:
    """Mean-pooled final hidden state over the direct-mode prompt tokens; [N, D] float32."""
    ids = prompts_of(problems, tok, "direct")
    fn = jax.jit(lambda p, x: apply(p, x, cfg=cfg, return_hidden=True)[1].head)
    out = []
    for i in range(0, len(ids), batch_size):
        x = ids[i:i + batch_size]
        pad = batch_size - len(x)
        xb = np.concatenate([x, np.repeat(x[:1], pad, 0)]) if pad else x
        h = np.asarray(fn(params, jnp.asarray(xb)))[:len(x)]
        m = (x != cfg.pad_id)[..., None]
        out.append((h * m).sum(1) / m.sum(1))
    return np.concatenate(out).astype(np.float32)


def answer_both_modes(params, problems, *, cfg: LMConfig, tok: CharTokenizer | None = None,
                      batch_size: int = 128, degrade_only: bool = False) -> dict:
    """Runs both modes greedily; returns numpy arrays [N] (emb [N, D]) described in the module docstring.

    Keys: scores, losses (the selected loss), loss_disagree, loss_degrade, groups (index into the
    order of first appearance of each family), families (names), direct_correct, cot_correct,
    direct_tokens, cot_tokens, emb.
    """
    if not problems:
        raise ValueError("problems: expected at least one problem")
    tok = tok or CharTokenizer()
    d = generate_answers(params, problems, cfg=cfg, tok=tok, mode="direct", greedy=True,
                         max_new_tokens=8, batch_size=batch_size)
    c = generate_answers(params, problems, cfg=cfg, tok=tok, mode="cot", greedy=True,
                         batch_size=batch_size)
    lp, mask = d["model_logprobs"][:, 0], d["mask"][:, 0]
    toks = np.asarray(jax.device_get(_direct_tokens(params, problems, cfg, tok, batch_size)))
    keep = mask & (toks != cfg.eos_id)
    scores = 1.0 - np.exp((lp * keep).sum(-1))
    dp, cp = d["parsed"][:, 0], c["parsed"][:, 0]
    disagree = np.array([not (a is not None and a == b) for a, b in zip(dp, cp)], np.float32)
    degrade = (c["correct"][:, 0] & ~d["correct"][:, 0]).astype(np.float32)
    fams = list(dict.fromkeys(p.family for p in problems))
    return {"scores": np.clip(scores, 0.0, 1.0).astype(np.float32),
            "losses": degrade if degrade_only else disagree,
            "loss_disagree": disagree, "loss_degrade": degrade,
            "groups": np.array([fams.index(p.family) for p in problems], np.int32),
            "families": np.array(fams), "direct_correct": d["correct"][:, 0],
            "cot_correct": c["correct"][:, 0], "direct_tokens": d["n_tokens"][:, 0].astype(np.float32),
            "cot_tokens": c["n_tokens"][:, 0].astype(np.float32),
            "emb": prompt_embeddings(params, problems, cfg=cfg, tok=tok)}


def _direct_tokens(params, problems, cfg, tok, batch_size):
    """The greedy direct-mode tokens (generate_answers returns texts, not ids): re-run greedily."""
    from jaxlab.lm.sampler import sample
    ids = prompts_of(problems, tok, "direct")
    out = []
    for i in range(0, len(ids), batch_size):
        x = ids[i:i + batch_size]
        pad = batch_size - len(x)
        xb = np.concatenate([x, np.repeat(x[:1], pad, 0)]) if pad else x
        o = sample(params, None, xb, cfg=cfg, max_new_tokens=8, greedy=True)
        out.append(np.asarray(o.tokens[:len(x), 0]))
    return np.concatenate(out)
