"""Claims with per-seed values and verdicts computed by code (the `summary.json` shape of CONVENTIONS §7).

A claim compares our method with one or more baselines on one metric, one value per seed. With the
improvement d = ±(mean ours − mean baseline) (sign from `higher_is_better`) and its standard error
(sample variances, ddof = 1):

* Welch (default): se = sqrt(s_a²/n_a + s_b²/n_b), Welch–Satterthwaite degrees of freedom;
* paired (`paired=True`, the arms share random numbers seed by seed): se = s_diff/√n, df = n − 1.

The one-sided (1 − alpha) lower confidence bound is L = d − t_{1−alpha, df}·se.

* kind="better":   reproduced iff L > margin (margin = 0 unless an improvement must exceed a size).
* kind="no_worse": reproduced iff L > −margin, with `margin` > 0 in the metric's units, stated and
  justified in the claim's note.

Each comparison reports d, se, df, L, the two-sided (1 − 2·alpha) interval and the one-sided p value.
A comparison that cannot be made (fewer than 2 seeds in an arm, or both arms at `chance`) is
"untestable here" with the reason. Overall per claim: the testable comparisons all reproduced ->
"reproduced"; none -> "not reproduced"; otherwise "mixed"; no testable comparison -> "untestable here".

Every claim sits in one block: "paper" (what the paper states), "sanity" (checks any correct
implementation passes) or "variant" (our own variants). `paper_verdict` combines the paper block.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

REPRODUCED, NOT_REPRODUCED, MIXED, UNTESTABLE = "reproduced", "not reproduced", "mixed", "untestable here"
VERDICTS = (REPRODUCED, MIXED, NOT_REPRODUCED, UNTESTABLE)
BLOCKS = ("paper", "sanity", "variant")
KINDS = ("better", "no_worse")


def _values(values: Iterable[float], name: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one value (one per seed), got none")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite per-seed values, got {arr.tolist()}")
    return arr


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof = 1) over seeds; the std is NaN for a single seed."""
    arr = _values(values, "values")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided t interval of the mean over seeds (ddof 1); (nan, nan) for fewer than 2 values."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a probability in (0, 1), got {level}")
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    if arr.size < 2:
        return math.nan, math.nan
    arr = _values(arr, "values")
    half = float(stats.t.ppf(0.5 + level / 2, arr.size - 1)) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return float(arr.mean()) - half, float(arr.mean()) + half


def _bound(d: float, se: float, df: float, alpha: float) -> tuple[float, float, float, float]:
    """(lower bound, upper two-sided bound, p of d <= 0, t quantile) for an estimate d with se and df."""
    if se == 0.0:
        return d, d, (0.0 if d > 0 else 1.0), 0.0
    q = float(stats.t.ppf(1.0 - alpha, df))
    p = float(stats.t.sf(d / se, df))
    return d - q * se, d + q * se, p, q


def compare(ours: Sequence[float], base: Sequence[float], *, higher_is_better: bool, kind: str = "better",
            margin: float = 0.0, paired: bool = False, alpha: float = 0.05,
            chance: float | None = None) -> dict:
    """Compares per-seed values of ours vs one baseline (see the module docstring for the rule).

    Returns:
      {"improvement": d, "se", "df", "ci_low": one-sided lower bound, "ci": [lo, hi] two-sided
       (1 − 2·alpha) interval, "p": one-sided p of the null (d <= margin for better, d <= −margin
       for no_worse), "test": "welch"|"paired", "verdict", and "reason" when untestable}.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin: expected a finite value >= 0, got {margin}")
    if kind == "no_worse" and margin == 0:
        raise ValueError("margin: a no_worse claim needs a margin > 0 in the metric's units (state why in the note)")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha: expected 0 < alpha < 0.5, got {alpha}")
    a, b = _values(ours, "ours"), _values(base, "baseline")
    sign = 1.0 if higher_is_better else -1.0
    out = {"test": "paired" if paired else "welch", "alpha": alpha}
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired: ours and baseline need one value per shared seed, got {a.size} and {b.size}")
        diff = sign * (a - b)
        d = float(diff.mean())
        n = diff.size
        se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        df = float(n - 1)
    else:
        d = float(sign * (a.mean() - b.mean()))
        va = a.var(ddof=1) if a.size > 1 else math.nan
        vb = b.var(ddof=1) if b.size > 1 else math.nan
        se = math.sqrt(va / a.size + vb / b.size)
        num, den = (va / a.size + vb / b.size) ** 2, 0.0
        if a.size > 1:
            den += (va / a.size) ** 2 / (a.size - 1)
        if b.size > 1:
            den += (vb / b.size) ** 2 / (b.size - 1)
        df = float(num / den) if den > 0 else float(a.size + b.size - 2)
    out.update(improvement=d, se=se, df=df)
    reason = None
    if not math.isfinite(se):
        reason = "fewer than 2 seeds in an arm: no variance estimate"
    elif chance is not None and _at_chance(a, chance, sign, alpha) and _at_chance(b, chance, sign, alpha):
        reason = f"both arms are at chance ({chance:g}): the miniature cannot separate them"
    if reason is not None:
        out.update(ci_low=None, ci=None, p=None, verdict=UNTESTABLE, reason=reason)
        return out
    shift = margin if kind == "no_worse" else -margin   # null: d <= -shift
    lo, hi, _, _ = _bound(d, se, df, alpha)
    p = _bound(d + shift, se, df, alpha)[2]
    ok = lo > -shift
    out.update(ci_low=lo, ci=[lo, hi], p=p, verdict=REPRODUCED if ok else NOT_REPRODUCED)
    return out


def _at_chance(x: np.ndarray, chance: float, sign: float, alpha: float) -> bool:
    """True when the one-sided lower bound of sign·(mean − chance) is not above 0."""
    if x.size < 2:
        return bool(sign * (x.mean() - chance) <= 0)
    se = x.std(ddof=1) / math.sqrt(x.size)
    return _bound(float(sign * (x.mean() - chance)), float(se), float(x.size - 1), alpha)[0] <= 0


def overall(verdicts: Sequence[str]) -> str:
    """Combines verdicts: untestable ones are set aside; all reproduced / none / mixed of the rest."""
    if not verdicts:
        raise ValueError("verdicts: expected at least one")
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdicts: unknown verdict {v!r}; expected one of {VERDICTS}")
    testable = [v for v in verdicts if v != UNTESTABLE]
    if not testable:
        return UNTESTABLE
    if all(v == REPRODUCED for v in testable):
        return REPRODUCED
    if all(v == NOT_REPRODUCED for v in testable):
        return NOT_REPRODUCED
    return MIXED


def _check_block(block: str) -> str:
    if block not in BLOCKS:
        raise ValueError(f"block: expected one of {BLOCKS}, got {block!r}")
    return block


def claim(id: str, claim: str, metric: str, *, ours: tuple[str, Sequence[float]],
          baselines: dict[str, Sequence[float]], higher_is_better: bool, kind: str = "better",
          margin: float = 0.0, paired: bool = False, alpha: float = 0.05, chance: float | None = None,
          block: str = "paper", note: str = "", untestable_reason: str | None = None) -> dict:
    """Builds one claim entry of summary.json with per-seed values, mean ± std and a computed verdict.

    Args:
      id: short identifier, e.g. "stability".
      claim: the claim in one sentence.
      metric: the metric name, e.g. "collapse_rate".
      ours: (method name, per-seed values).
      baselines: {method name: per-seed values}; a threshold claim uses a constant series.
      higher_is_better: direction of the metric.
      kind: "better" (lower bound of the improvement > margin) or "no_worse" (lower bound > −margin).
      margin: in metric units: the non-inferiority margin (> 0 for no_worse; justify it in `note`), or
        the size an improvement must exceed for better (default 0).
      paired: the arms share random numbers seed by seed (paired t); else Welch.
      alpha: one-sided level (0.05: a 95% lower bound).
      chance: the metric's chance level; both arms at chance -> "untestable here".
      block: "paper", "sanity" or "variant".
      note: free text shown in the report.
      untestable_reason: the study knows the values cannot be compared (e.g. a failed estimator): every
        comparison and the claim are "untestable here" with this reason; the values and the computed
        differences stay in the entry (so it still counts its seeds).
    """
    if not baselines:
        raise ValueError("baselines: expected at least one baseline")
    name, values = ours
    m, s = mean_std(values)
    entry = {"id": id, "claim": claim, "metric": metric, "higher_is_better": bool(higher_is_better),
             "kind": kind, "margin": float(margin), "paired": bool(paired), "alpha": float(alpha),
             "block": _check_block(block),
             "ours": {"method": name, "values": [float(v) for v in values], "mean": m, "std": s},
             "baselines": []}
    verdicts = []
    for bname, bvalues in baselines.items():
        bm, bs = mean_std(bvalues)
        cmp = compare(values, bvalues, higher_is_better=higher_is_better, kind=kind, margin=margin,
                      paired=paired, alpha=alpha, chance=chance)
        if untestable_reason:
            cmp.update(verdict=UNTESTABLE, reason=untestable_reason)
        verdicts.append(cmp["verdict"])
        entry["baselines"].append({"method": bname, "values": [float(v) for v in bvalues], "mean": bm,
                                   "std": bs, **cmp})
    entry["verdict"] = overall(verdicts)
    reasons = sorted({b["reason"] for b in entry["baselines"] if b.get("reason")})
    if entry["verdict"] == UNTESTABLE:
        entry["reason"] = "; ".join(reasons)
    entry["note"] = note
    return entry


def untestable(id: str, claim: str, metric: str, reason: str, *, block: str = "paper", note: str = "") -> dict:
    """A claim the miniature cannot test (a failed power check, both arms at chance), with the reason."""
    if not reason:
        raise ValueError("reason: an untestable claim must say why")
    return {"id": id, "claim": claim, "metric": metric, "block": _check_block(block), "verdict": UNTESTABLE,
            "reason": reason, "note": note}


def combine_claims(id: str, claim: str, parts: Sequence[dict], note: str = "", block: str | None = None) -> dict:
    """A claim whose verdict combines several sub-claims (e.g. one per data set or setting).

    The block defaults to the parts' block (they must agree)."""
    if not parts:
        raise ValueError("parts: expected at least one sub-claim")
    blocks = {p.get("block", "paper") for p in parts}
    if block is None:
        if len(blocks) != 1:
            raise ValueError(f"parts: sub-claims from different blocks {sorted(blocks)}; pass block=")
        block = blocks.pop()
    return {"id": id, "claim": claim, "block": _check_block(block), "parts": list(parts),
            "n_seeds": n_seeds(parts), "verdict": overall([p["verdict"] for p in parts]), "note": note}


def n_seeds(parts: Sequence[dict]) -> int:
    """The fewest per-seed values behind any leaf of (possibly nested) sub-claims, so that a combined
    claim states how many seeds support its weakest part (untestable leaves without values count 0)."""
    counts = [p["n_seeds"] if "parts" in p else len((p.get("ours") or {}).get("values", [])) for p in parts]
    return int(min(counts))


def paper_verdict(claims: Sequence[dict]) -> str:
    """The paper-level verdict: `overall` over the claims in block "paper" ("untestable here" if none)."""
    paper = [c["verdict"] for c in claims if c.get("block", "paper") == "paper"]
    return overall(paper) if paper else UNTESTABLE
