"""A Solver -> Checker -> (on <no>) Solver-retry orchestra for the tiny LM (Dr. MAS's math orchestra,
`max_loop_num = 2`: the checker skips the last loop, so a rollout has 2 or 3 steps).

Text formats (role tokens and verdict tokens are single tokens of `jaxlab.lm.CharTokenizer`):

  solver   prompt  <bos><S>Q:47+85= T:                 completion  7+5=12,4+8+1=13;47+85=132 A:132<eos>
  checker  prompt  <bos><C>Q:47+85= A:132 T:           completion  7+5=12,4+8+1=13;47+85=132 <yes><eos>
  retry    prompt  <bos><S>Q:47+85= A:131<no> T:       completion  (a fresh solution, as the solver)

The checker recomputes the problem in a short chain of thought and ends with `<yes>` (approve) or
`<no>`. With a compare width W > 0 (`checker_completion(..., compare_width=W)`; the Dr. MAS warm start
uses W = 3) the gold checker output also writes the recomputed answer and the candidate, each
left-padded with '_' to W characters, before the verdict (W = 4 here):

  checker  completion  7+5=12,4+8+1=13;47+85=132 _132/_131 <no><eos>

so digit i of the candidate sits exactly W + 1 tokens after digit i of the recomputation: the tiny
LM learns this position-by-position check, whereas with W = 0 (comparing the candidate in the prompt
with the recomputed number) its verdict stayed at chance even after 2000 SFT steps (issue 14). The
parsing below reads only the final verdict.

A candidate the solver did not write as an integer (or longer than `MAX_CAND` characters) is shown to
the checker as `?` (whose right verdict is `<no>`). A verdict that is neither exactly one `<yes>`
nor exactly one `<no>` at the end is malformed: it is penalized and routed like `<no>` (the item is
not approved, so it is retried). The final answer is the last solver answer.

Step rows (fixed shapes, R = B rollouts): row `turn * R + r` for turn 0 (solver), 1 (checker),
2 (retry, a solver step; `valid = False` when the checker approved). Every turn is ONE jitted
`lm.sample` call over all R rollouts with prompts left-padded to one length `prompt_len`; the text
routing between turns runs on the host.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from jaxlab.lm.sampler import sample as lm_sample
from jaxlab.lm.tasks import Problem, parse_answer
from jaxlab.lm.tokenizer import NO, YES, CharTokenizer

SOLVER, CHECKER = 0, 1
AGENTS: tuple[str, ...] = ("solver", "checker")
NUM_AGENTS = 2
TURN_AGENT = (SOLVER, CHECKER, SOLVER)       # turn -> agent id
MAX_CAND = 5                                  # longest candidate shown to the checker (characters)
REGIMES: tuple[str, ...] = ("faithful", "stress")


def solver_prompt(p: Problem) -> str:
    return f"<bos><S>Q:{p.question}= T:"


def candidate_text(answer: Optional[int]) -> str:
    """What the checker sees of a solver answer: the integer, or '?' (unparseable / too long)."""
    if answer is None:
        return "?"
    s = str(int(answer))
    return s if len(s) <= MAX_CAND else "?"


def checker_prompt(p: Problem, candidate: str) -> str:
    return f"<bos><C>Q:{p.question}= A:{candidate} T:"


def retry_prompt(p: Problem, candidate: str) -> str:
    return f"<bos><S>Q:{p.question}= A:{candidate}<no> T:"


def pad_number(text: str, width: int) -> str:
    """`text` left-padded with '_' to `width` characters (unchanged when it is already that long)."""
    return "_" * max(int(width) - len(text), 0) + text


def checker_completion(p: Problem, candidate: str, *, compare_width: int = 0) -> str:
    """Gold checker output: the recomputation, then <yes> iff the candidate is the answer.

    compare_width = W > 0 adds a digit-aligned comparison between the recomputation and the verdict:
    the recomputed answer and the candidate, each left-padded with '_' to W characters,
    `{steps} {pad(answer)}/{pad(candidate)} {verdict}` (e.g. `...;47+85=132 _132/_131 <no>`), so
    digit i of the candidate sits exactly W + 1 tokens after digit i of the recomputation and the
    verdict is a position-by-position equality check (W = 0: `{steps} {verdict}`). W must hold
    every gold answer (ValueError otherwise); a longer candidate is written unpadded.
    """
    verdict = YES if candidate == str(p.answer) else NO
    if compare_width < 0:
        raise ValueError(f"compare_width: expected >= 0, got {compare_width}")
    if compare_width == 0:
        return f"{p.steps} {verdict}<eos>"
    w = int(compare_width)
    if len(str(p.answer)) > w:
        raise ValueError(f"compare_width: the answer {p.answer} of {p.question!r} is longer than "
                         f"compare_width={w} characters")
    return f"{p.steps} {pad_number(str(p.answer), w)}/{pad_number(candidate, w)} {verdict}<eos>"


def solver_answer(text: str) -> Optional[int]:
    """Parsed 'A:<int>' of a solver output (None = unparseable, also when there is no 'A:')."""
    body = text.split("<eos>", 1)[0]
    return parse_answer(body) if "A:" in body else None


def parse_verdict(text: str) -> Optional[bool]:
    """True for a checker output ending in exactly one <yes>, False for one <no>, None if malformed."""
    body = text.split("<eos>", 1)[0].replace("<pad>", "").rstrip()
    n_yes, n_no = body.count(YES), body.count(NO)
    if n_yes + n_no != 1:
        return None
    return True if body.endswith(YES) else False if body.endswith(NO) else None


def max_prompt_len(problems: Sequence[Problem], tok: CharTokenizer) -> int:
    """Longest prompt of any turn over `problems` (with the longest candidate)."""
    c = "9" * MAX_CAND
    return max(max(len(tok.encode(solver_prompt(p))), len(tok.encode(checker_prompt(p, c))),
                   len(tok.encode(retry_prompt(p, c)))) for p in problems)


def near_miss(rng: np.random.Generator, answer: int, *, unparseable_frac: float = 0.0) -> str:
    """A wrong candidate close to `answer`: +-1, +-2, +-10 or a swap of the last two digits (an
    integer of at most MAX_CAND characters without a leading zero); '?' with probability
    `unparseable_frac`. Draws from `rng`."""
    if rng.random() < unparseable_frac:
        return "?"
    for _ in range(10):
        d = int(rng.choice([-10, -2, -1, 1, 2, 10]))
        s = str(answer)
        if rng.random() < 0.25 and len(s.lstrip("-")) >= 2:
            digits = list(s)
            i = len(s) - 2
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            cand = "".join(digits)
        else:
            cand = str(answer + d)
        if cand != str(answer) and len(cand) <= MAX_CAND and cand.lstrip("-").isdigit() \
                and not (len(cand.lstrip("-")) > 1 and cand.lstrip("-")[0] == "0"):
            return cand
    return str(answer + 1)


def _check_frac(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected in [0, 1], got {value}")


def sft_rows(problems: Sequence[Problem], *, seed: int, wrong_frac: float = 0.5,
             unparseable_frac: float = 0.05, compare_width: int = 0) -> list[tuple[str, str]]:
    """Warm-start rows: per problem one solver row, one checker row and one retry row.

    Checker candidates are wrong with probability `wrong_frac` (a near miss: +-1, +-2, +-10 or a
    digit swap; '?' with probability `unparseable_frac`); retry rows show a wrong candidate and <no>
    and target the gold solution. compare_width: the checker format (`checker_completion`).
    """
    _check_frac("wrong_frac", wrong_frac)
    rng = np.random.default_rng([int(seed), 1414])
    rows = []
    miss = lambda a: near_miss(rng, a, unparseable_frac=unparseable_frac)
    for p in problems:
        rows.append((solver_prompt(p), p.completion("cot")))
        cand = miss(p.answer) if rng.random() < wrong_frac else str(p.answer)
        rows.append((checker_prompt(p, cand), checker_completion(p, cand, compare_width=compare_width)))
        rows.append((retry_prompt(p, miss(p.answer)), p.completion("cot")))
    return rows


def checker_rows(problems: Sequence[Problem], *, seed: int, wrong_frac: float = 0.5,
                 unparseable_frac: float = 0.05, compare_width: int = 0) -> list[tuple[str, str]]:
    """Verdict rows: per problem one checker row whose gold recomputation is part of the PROMPT
    (teacher-forced, not a loss target), so SFT on them trains only the comparison and the verdict
    (`{steps} ` | `{pad(answer)}/{pad(candidate)} {verdict}<eos>`), never the arithmetic.

    Candidates as in `sft_rows` (wrong with probability `wrong_frac`, so 0.5 balances <yes>/<no>).
    Prompt + completion is exactly `checker_prompt + checker_completion`.
    """
    _check_frac("wrong_frac", wrong_frac)
    rng = np.random.default_rng([int(seed), 2828])
    rows = []
    for p in problems:
        cand = (near_miss(rng, p.answer, unparseable_frac=unparseable_frac)
                if rng.random() < wrong_frac else str(p.answer))
        full = checker_completion(p, cand, compare_width=compare_width)
        cut = len(p.steps) + 1
        rows.append((checker_prompt(p, cand) + full[:cut], full[cut:]))
    return rows


class Routing(NamedTuple):
    """Host-side outcome of one batch of R rollouts (numpy)."""
    answer1: np.ndarray        # [R] object: the solver's first answer (None = unparseable)
    verdict: np.ndarray        # [R] int: 1 <yes>, 0 <no>, -1 malformed
    retried: np.ndarray        # [R] bool: the retry turn ran
    final: np.ndarray          # [R] object: the last solver answer
    correct1: np.ndarray       # [R] bool: first answer right
    correct: np.ndarray        # [R] bool: final (team) answer right
    invalid: np.ndarray        # [3, R] bool: unparseable output per turn (False for absent turns)
    verdict_right: np.ndarray  # [R] bool: <yes> for a right first answer, <no> for a wrong one


def route(problems: Sequence[Problem], solver_texts: Sequence[str], checker_texts: Sequence[str],
          retry_texts: Sequence[str]) -> Routing:
    """Routing and scoring of finished transcripts (R rollouts; `problems[r]` is rollout r's problem).

    retry_texts are those the retry turn produced (ignored where the checker approved).
    """
    R = len(problems)
    if not (len(solver_texts) == len(checker_texts) == len(retry_texts) == R):
        raise ValueError(f"solver_texts/checker_texts/retry_texts: expected {R} rows each, got "
                         f"{len(solver_texts)}, {len(checker_texts)}, {len(retry_texts)}")
    gold = np.array([p.answer for p in problems])
    a1 = np.array([solver_answer(t) for t in solver_texts], object)
    v = np.array([{True: 1, False: 0, None: -1}[parse_verdict(t)] for t in checker_texts])
    retried = v != 1
    a2 = np.array([solver_answer(t) for t in retry_texts], object)
    final = np.where(retried, a2, a1)
    ok = lambda a: np.array([x is not None and x == g for x, g in zip(a, gold)], bool)
    c1 = ok(a1)
    invalid = np.stack([np.array([x is None for x in a1]), v == -1,
                        retried & np.array([x is None for x in a2])])
    return Routing(a1, v, retried, final, c1, ok(final), invalid,
                   ((v == 1) & c1) | ((v == 0) & ~c1))


def step_rewards(r: Routing, *, regime: str, invalid_penalty: float = 0.1,
                 checker_bonus: float = 5.0) -> np.ndarray:
    """Step rewards [3, R] (0 on absent retry rows).

    faithful: every step gets the team correctness minus invalid_penalty x 1[its output unparseable]
    (the official code's reward). stress (spec §7 ii): the checker step additionally gets
    checker_bonus x 1[verdict right], so its reward mean sits far above the solver's.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime: expected one of {REGIMES}, got {regime!r}")
    team = r.correct.astype(np.float32)
    rew = np.stack([team, team, team]) - invalid_penalty * r.invalid.astype(np.float32)
    if regime == "stress":
        rew[1] += checker_bonus * r.verdict_right.astype(np.float32)
    rew[2] = np.where(r.retried, rew[2], 0.0)
    return rew.astype(np.float32)


class Episode(NamedTuple):
    """One batch of R = B x G rollouts as 3R step rows (turn-major), fixed shapes."""
    seq: np.ndarray          # [3R, L + N] int32 prompt (left-padded to L) + response
    mask: np.ndarray         # [3R, L + N] bool response mask (all False on absent rows)
    old_logp: np.ndarray     # [3R, N] sampling log-probs (0 off the mask)
    valid: np.ndarray        # [3R] bool
    agent: np.ndarray        # [3R] int32 agent id
    prompt: np.ndarray       # [3R] int32 prompt (GRPO group) id in [0, B)
    traj: np.ndarray         # [3R] int32 rollout id in [0, R)
    routing: Routing
    texts: tuple             # (solver, checker, retry) lists of R strings


def _left_pad(tok: CharTokenizer, texts: Sequence[str], L: int) -> np.ndarray:
    ids, _ = tok.encode_batch(texts, length=L, pad_side="left")
    return ids


def run_orchestra(agent_params: Sequence, key, problems: Sequence[Problem], *, cfg, tok: CharTokenizer,
                  group_size: int, max_new_tokens: int, prompt_len: int, temperature: float = 1.0,
                  greedy: bool = False, sample_fn: Optional[Callable] = None) -> Episode:
    """Runs the orchestra on B problems x G rollouts.

    Args:
      agent_params: [solver params, checker params] (the same tree twice for shared weights).
      key: PRNG key; problems: B problems; group_size: G rollouts each (the GRPO group).
      prompt_len: L, every turn's prompts are left-padded to L; L + max_new_tokens <= cfg.max_len.
      sample_fn: `lm.sample`-compatible function (default `jaxlab.lm.sample`; tests pass a script).
    Returns: Episode with 3 * B * G rows.
    """
    if len(agent_params) != NUM_AGENTS:
        raise ValueError(f"agent_params: expected {NUM_AGENTS} parameter trees, got {len(agent_params)}")
    if prompt_len + max_new_tokens > cfg.max_len:
        raise ValueError(f"prompt_len: {prompt_len} + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's max_len {cfg.max_len}")
    need = max_prompt_len(problems, tok)
    if need > prompt_len:
        raise ValueError(f"prompt_len: a prompt needs {need} tokens, more than prompt_len={prompt_len} "
                         f"(max_len {cfg.max_len})")
    sample_fn = sample_fn or lm_sample
    G, N, L = int(group_size), int(max_new_tokens), int(prompt_len)
    probs = [p for p in problems for _ in range(G)]
    R = len(probs)
    keys = jax.random.split(key, 3)

    def turn(t, prompts_text):
        ids = _left_pad(tok, prompts_text, L)
        out = sample_fn(agent_params[TURN_AGENT[t]], keys[t], ids, cfg=cfg, max_new_tokens=N,
                        num_samples=1, temperature=temperature, greedy=greedy)
        out = jax.device_get(out)
        toks = np.asarray(out.tokens).reshape(R, N)
        texts = [tok.decode(row, stop_at_eos=True) for row in toks]
        return ids, toks, np.asarray(out.mask).reshape(R, N), np.asarray(out.logprobs).reshape(R, N), texts

    s_ids, s_tok, s_m, s_lp, s_txt = turn(0, [solver_prompt(p) for p in probs])
    cands = [candidate_text(solver_answer(t)) for t in s_txt]
    c_ids, c_tok, c_m, c_lp, c_txt = turn(1, [checker_prompt(p, c) for p, c in zip(probs, cands)])
    r_ids, r_tok, r_m, r_lp, r_txt = turn(2, [retry_prompt(p, c) for p, c in zip(probs, cands)])
    routing = route(probs, s_txt, c_txt, r_txt)
    keep = routing.retried
    r_m = r_m & keep[:, None]
    seq = np.concatenate([np.concatenate([i, t], 1) for i, t in
                          ((s_ids, s_tok), (c_ids, c_tok), (r_ids, r_tok))], 0).astype(np.int32)
    resp = np.concatenate([s_m, c_m, r_m], 0)
    mask = np.concatenate([np.zeros((3 * R, L), bool), resp], 1)
    old = np.where(resp, np.concatenate([s_lp, c_lp, r_lp], 0), 0.0).astype(np.float32)
    valid = np.concatenate([np.ones(2 * R, bool), keep])
    agent = np.repeat(np.array(TURN_AGENT, np.int32), R)
    prompt = np.tile(np.repeat(np.arange(len(problems), dtype=np.int32), G), 3)
    traj = np.tile(np.arange(R, dtype=np.int32), 3)
    r_txt = [t if k else "" for t, k in zip(r_txt, keep)]
    return Episode(seq, mask, old, valid, agent, prompt, traj, routing, (s_txt, c_txt, r_txt))


def system_metrics(routing: Routing, group_size: int) -> dict:
    """avg@G, pass@G (any of the G rollouts right), first-answer accuracy, checker precision/recall
    (approve = positive), rejection recall, verdict rates, retry rate, malformed rate, collapse."""
    G = int(group_size)
    c = routing.correct.reshape(-1, G)
    v, c1 = routing.verdict, routing.correct1
    yes, no = v == 1, v == 0
    prec = float((yes & c1).sum() / max(yes.sum(), 1))
    rec = float((yes & c1).sum() / max(c1.sum(), 1))
    rej = float(((v != 1) & ~c1).sum() / max((~c1).sum(), 1))
    yes_rate = float(yes.mean())
    return {f"avg@{G}": float(c.mean()), f"pass@{G}": float(c.any(1).mean()),
            "first_acc": float(c1.mean()), "checker_acc": float(routing.verdict_right.mean()),
            "checker_precision": prec, "checker_recall": rec, "reject_recall": rej,
            "yes_rate": yes_rate, "no_rate": float(no.mean()), "malformed_rate": float((v == -1).mean()),
            "retry_rate": float(routing.retried.mean()),
            "collapsed": float(yes_rate < 0.05 or yes_rate > 0.95)}
