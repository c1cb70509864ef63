"""Seeded arithmetic problems with written-out chain of thought (CoT), parser and verifier.

Text formats (one character = one token; `<eos>` is one token):

  CoT:     Q:47+85= T:7+5=12,4+8+1=13;47+85=132 A:132<eos>
  direct:  Q:47+85= A:132<eos>

Each binary step writes its digit columns (least significant first, carries as `+c`, borrows by
writing the borrowed top digit, e.g. `12-7=5`) and then a summary `a op b = r`; `detail="steps"`
keeps only the summaries (the issue's `Q:47*36= T:47*6=282;47*30=1410;282+1410=1692 A:1692`).

Families (group id = position in FAMILIES; `digits` = operand size):
  add1    one-digit addition a+b (the 100 one-digit facts)
  addsub  multi-digit addition or subtraction (answers may be negative)
  mul1    multi-digit x one-digit
  chain2  two-step left-to-right chain (op in +, -, x one-digit), non-negative intermediates
  chain3  three-step chain, same rules
  mul2    multi-digit x two-digit (the issue's format example)

Splits: a problem's split is a hash of its question text (80% train, 10% val, 10% test), so
the splits are disjoint by construction for every seed; `generate(..., split=...)` samples with
the seed and keeps only questions of that split. `add1` is exempt: its 100 facts appear as columns
inside every multi-digit CoT, so holding some out is meaningless; all its splits hold all 100.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable, NamedTuple, Sequence

import numpy as np

FAMILIES: tuple[str, ...] = ("add1", "addsub", "mul1", "chain2", "chain3", "mul2")
DEFAULT_DIGITS = {"add1": 1, "addsub": 2, "mul1": 2, "chain2": 2, "chain3": 2, "mul2": 2}
SPLITS: tuple[str, ...] = ("train", "val", "test")
EXEMPT_FROM_SPLIT: tuple[str, ...] = ("add1",)
UNPARSEABLE = None  # what parse_answer returns for malformed output


class Problem(NamedTuple):
    """One arithmetic problem. `steps` is the CoT body (between 'T:' and ' A:')."""
    question: str    # e.g. "47+85"
    steps: str       # e.g. "7+5=12,4+8+1=13;47+85=132"
    answer: int
    family: str
    group: int       # FAMILIES.index(family)
    digits: int      # operand size (difficulty)

    def prompt(self, mode: str = "cot") -> str:
        """Prompt text: 'Q:<q>= T:' (cot) or 'Q:<q>= A:' (direct). No BOS (add it when encoding)."""
        _check_mode(mode)
        return f"Q:{self.question}= " + ("T:" if mode == "cot" else "A:")

    def completion(self, mode: str = "cot") -> str:
        """Gold continuation of `prompt(mode)`, ending in '<eos>'."""
        _check_mode(mode)
        if mode == "cot":
            return f"{self.steps} A:{self.answer}<eos>"
        return f"{self.answer}<eos>"

    def text(self, mode: str = "cot") -> str:
        return self.prompt(mode) + self.completion(mode)


def _check_mode(mode: str) -> None:
    if mode not in ("cot", "direct"):
        raise ValueError(f"mode: expected 'cot' or 'direct', got {mode!r}")


# ----------------------------------------------------------------------------- step renderers

def _digits(n: int) -> list[int]:
    return [int(c) for c in reversed(str(n))]


def add_step(a: int, b: int, *, detail: str = "columns") -> str:
    """CoT for a+b with a, b >= 0: columns with carries, then 'a+b=r'."""
    summary = f"{a}+{b}={a + b}"
    if detail == "steps" or (a < 10 and b < 10):
        return summary
    da, db = _digits(a), _digits(b)
    cols, c = [], 0
    for i in range(max(len(da), len(db))):
        x = da[i] if i < len(da) else 0
        y = db[i] if i < len(db) else 0
        s = x + y + c
        cols.append(f"{x}+{y}" + (f"+{c}" if c else "") + f"={s}")
        c = s // 10
    return ",".join(cols) + ";" + summary


def sub_step(a: int, b: int, *, detail: str = "columns") -> str:
    """CoT for a-b with a, b >= 0: borrow columns of |a-b| (larger minus smaller), then 'a-b=r'."""
    summary = f"{a}-{b}={a - b}"
    hi, lo = (a, b) if a >= b else (b, a)
    if detail == "steps" or hi < 10:
        return summary
    dh, dl = _digits(hi), _digits(lo)
    cols, borrow = [], 0
    for i in range(len(dh)):
        x = dh[i] - borrow
        y = dl[i] if i < len(dl) else 0
        if x < y:
            x, borrow = x + 10, 1
        else:
            borrow = 0
        cols.append(f"{x}-{y}={x - y}")
    return ",".join(cols) + ";" + summary


def mul_step(a: int, m: int, *, detail: str = "columns") -> str:
    """CoT for a*m with a >= 0 and one-digit m: columns with carries, then 'a*m=r'."""
    summary = f"{a}*{m}={a * m}"
    if detail == "steps" or a < 10:
        return summary
    cols, c = [], 0
    for x in _digits(a):
        v = x * m + c
        cols.append(f"{x}*{m}" + (f"+{c}" if c else "") + f"={v}")
        c = v // 10
    return ",".join(cols) + ";" + summary


def mul2_steps(a: int, b: int, *, detail: str = "columns") -> str:
    """CoT for a*b with two-digit b = 10*b1 + b0: a*b0; a*(10*b1); sum."""
    b1, b0 = divmod(b, 10)
    p0, p1 = a * b0, a * b1 * 10
    s1 = mul_step(a, b1, detail=detail)
    s1 = s1 + f";{a}*{b1 * 10}={p1}" if detail != "steps" else f"{a}*{b1 * 10}={p1}"
    return ";".join([mul_step(a, b0, detail=detail), s1, add_step(p0, p1, detail=detail)])


def binary_step(a: int, op: str, b: int, *, detail: str = "columns") -> str:
    if op == "+":
        return add_step(a, b, detail=detail)
    if op == "-":
        return sub_step(a, b, detail=detail)
    if op == "*":
        return mul_step(a, b, detail=detail)
    raise ValueError(f"op: expected '+', '-' or '*', got {op!r}")


# ----------------------------------------------------------------------------- sampling

def _rand_num(rng: np.random.Generator, digits: int) -> int:
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(lo, 10 ** digits))


def _chain(rng, n_ops: int, digits: int, detail: str) -> tuple[str, str, int]:
    v = _rand_num(rng, digits)
    expr, top, steps = str(v), None, []
    for _ in range(n_ops):
        op = "+-*"[int(rng.integers(3))]
        if op == "*":
            x = int(rng.integers(2, 10))
        else:
            x = _rand_num(rng, digits)
            if op == "-" and x > v:     # keep intermediates non-negative
                op = "+"
        steps.append(binary_step(v, op, x, detail=detail))
        if op == "*" and top in ("+", "-"):
            expr = f"({expr})"
        expr, top = f"{expr}{op}{x}", op
        v = v + x if op == "+" else v - x if op == "-" else v * x
    return expr, ";".join(steps), v


def sample_problem(rng: np.random.Generator, family: str, *, digits: int | None = None,
                   detail: str = "columns") -> Problem:
    """Draws one problem of `family` (any split) from `rng`."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    if detail not in ("columns", "steps"):
        raise ValueError(f"detail: expected 'columns' or 'steps', got {detail!r}")
    d = DEFAULT_DIGITS[family] if digits is None else int(digits)
    if d < 1 or d > 6:
        raise ValueError(f"digits: expected 1..6, got {digits}")
    if family == "add1":
        a, b = int(rng.integers(10)), int(rng.integers(10))
        q, steps, ans = f"{a}+{b}", add_step(a, b), a + b
    elif family == "addsub":
        a, b = _rand_num(rng, d), _rand_num(rng, d)
        op = "+-"[int(rng.integers(2))]
        q, steps = f"{a}{op}{b}", binary_step(a, op, b, detail=detail)
        ans = a + b if op == "+" else a - b
    elif family == "mul1":
        a, m = _rand_num(rng, d), int(rng.integers(2, 10))
        q, steps, ans = f"{a}*{m}", mul_step(a, m, detail=detail), a * m
    elif family in ("chain2", "chain3"):
        q, steps, ans = _chain(rng, 2 if family == "chain2" else 3, d, detail)
    else:  # mul2
        a, b = _rand_num(rng, d), _rand_num(rng, 2)
        q, steps, ans = f"{a}*{b}", mul2_steps(a, b, detail=detail), a * b
    return Problem(q, steps, ans, family, FAMILIES.index(family), d)


def split_of(question: str) -> str:
    """Deterministic split of a question: blake2b(question) mod 100 -> train <80 <= val <90 <= test."""
    h = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "little") % 100
    return "train" if h < 80 else "val" if h < 90 else "test"


def generate(family: str, n: int, *, seed: int, split: str = "train", digits: int | None = None,
             detail: str = "columns", unique: bool = False) -> list[Problem]:
    """n problems of one family in one split, deterministic in (family, digits, split, seed).

    unique=True returns distinct questions (for evaluation sets); raises ValueError when the
    split holds fewer than n distinct problems.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n: expected >= 0, got {n}")
    fam_id = FAMILIES.index(family) if family in FAMILIES else -1
    rng = np.random.default_rng([int(seed), fam_id + 1, SPLITS.index(split), digits or 0])
    out, seen = [], set()
    exempt = family in EXEMPT_FROM_SPLIT
    tries, max_tries = 0, 200 * n + 10_000
    while len(out) < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(f"n: could not find {n} distinct {family} problems in split "
                             f"{split!r} (found {len(out)})")
        p = sample_problem(rng, family, digits=digits, detail=detail)
        if not exempt and split_of(p.question) != split:
            continue
        if unique:
            if p.question in seen:
                continue
            seen.add(p.question)
        out.append(p)
    return out


def all_add1(detail: str = "columns") -> list[Problem]:
    """The 100 one-digit addition facts, in order a=0..9, b=0..9."""
    return [Problem(f"{a}+{b}", add_step(a, b, detail=detail), a + b, "add1", 0, 1)
            for a in range(10) for b in range(10)]


def generate_mix(weights: dict[str, float], n: int, *, seed: int, split: str = "train",
                 digits: dict[str, int] | None = None, detail: str = "columns",
                 unique: bool = False) -> list[Problem]:
    """n problems mixed over families in proportion to `weights`, interleaved deterministically."""
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"weights: expected non-negative family weights with a positive sum, "
                         f"got {weights}")
    fams = sorted(weights)
    w = np.array([weights[f] for f in fams], float)
    counts = np.floor(n * w / w.sum()).astype(int)
    counts[np.argmax(w)] += n - counts.sum()
    probs = []
    for f, c in zip(fams, counts):
        probs += generate(f, int(c), seed=seed, split=split, detail=detail, unique=unique,
                          digits=(digits or {}).get(f))
    order = np.random.default_rng([int(seed), 7919, SPLITS.index(split)]).permutation(len(probs))
    return [probs[i] for i in order]


# ----------------------------------------------------------------------------- parse / verify

_INT_RE = re.compile(r"-?\d{1,12}")


def parse_answer(text: str) -> int | None:
    """Integer after the last 'A:' (or the whole text if there is none), cut at '<eos>'.

    Returns UNPARSEABLE (None) for anything that is not exactly an optionally signed integer;
    never raises on malformed model output.
    >>> parse_answer("7+5=12 A:12<eos><pad>"), parse_answer("A:1x"), parse_answer("")
    (12, None, None)
    """
    if not isinstance(text, str):
        return UNPARSEABLE
    text = text.split("<eos>", 1)[0].replace("<pad>", "")
    if "A:" in text:
        text = text.rsplit("A:", 1)[1]
    text = text.strip()
    if not _INT_RE.fullmatch(text):
        return UNPARSEABLE
    return int(text)


def verify(text: str, answer: int) -> bool:
    """Exact-match verifier: parse_answer(text) == answer (unparseable is wrong)."""
    got = parse_answer(text)
    return got is not None and got == int(answer)


def find_overlap(train: Iterable[Problem], test: Iterable[Problem], *,
                 exempt: Sequence[str] = EXEMPT_FROM_SPLIT) -> list[str]:
    """Questions that occur in both collections (ignoring exempt families). Empty = disjoint."""
    tr = {p.question for p in train if p.family not in exempt}
    return sorted({p.question for p in test if p.family not in exempt} & tr)


def check_disjoint(train: Iterable[Problem], test: Iterable[Problem], *,
                   exempt: Sequence[str] = EXEMPT_FROM_SPLIT) -> None:
    """Raises ValueError listing test questions that also appear in training."""
    overlap = find_overlap(train, test, exempt=exempt)
    if overlap:
        raise ValueError(f"test: {len(overlap)} test problems also appear in training, "
                         f"e.g. {overlap[:5]}")


def train_eval_split(family: str, *, n_train: int, n_eval: int, eval_seed: int, digits: int | None = None
                     ) -> tuple[list[Problem], list[Problem]]:
    """RL prompts: `n_train` training problems (seed 0) and `n_eval` unique held-out test problems,
    checked disjoint (raises on any overlap)."""
    train = generate(family, n_train, seed=0, split="train", digits=digits)
    ev = generate(family, n_eval, seed=eval_seed, split="test", digits=digits, unique=True)
    check_disjoint(train, ev)
    return train, ev
