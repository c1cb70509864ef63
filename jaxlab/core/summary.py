"""Claims with per-seed values and verdicts computed by code (the `summary.json` shape of CONVENTIONS §7).

A claim compares our method with one or more baselines on one metric, one value per seed.
Verdict per baseline (Welch standard error of the difference of means, se = sqrt(s_a²/n_a + s_b²/n_b),
sample variances with ddof=1):
  kind="better":   reproduced iff the improvement d = ±(ours − base) exceeds z·se (and margin).
  kind="no_worse": reproduced iff d ≥ −(margin + z·se).
Overall: every baseline reproduced -> "reproduced"; none -> "not reproduced"; otherwise "mixed".
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

VERDICTS = ("reproduced", "mixed", "not reproduced")


def _values(values: Iterable[float], name: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: expected at least one value (one per seed), got none")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite per-seed values, got {arr.tolist()}")
    return arr


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std (ddof=0) over seeds, the numbers every report shows as mean ± std."""
    arr = _values(values, "values")
    return float(arr.mean()), float(arr.std())


def compare(ours: Sequence[float], base: Sequence[float], *, higher_is_better: bool,
            kind: str = "better", margin: float = 0.0, z: float = 2.0) -> dict:
    """Compares per-seed values of ours vs one baseline; returns diff, se and the verdict for this pair."""
    if kind not in ("better", "no_worse"):
        raise ValueError(f"kind: expected 'better' or 'no_worse', got {kind!r}")
    if margin < 0:
        raise ValueError(f"margin: expected >= 0, got {margin}")
    a, b = _values(ours, "ours"), _values(base, "baseline")
    sign = 1.0 if higher_is_better else -1.0
    d = sign * (a.mean() - b.mean())
    var_a = a.var(ddof=1) if a.size > 1 else 0.0
    var_b = b.var(ddof=1) if b.size > 1 else 0.0
    se = math.sqrt(var_a / a.size + var_b / b.size)
    if kind == "better":
        ok = d > margin + z * se
    else:
        ok = d >= -(margin + z * se)
    return {"improvement": float(d), "se": float(se), "verdict": "reproduced" if ok else "not reproduced"}


def overall(verdicts: Sequence[str]) -> str:
    """Combines per-comparison verdicts: all reproduced / none / mixed."""
    if not verdicts:
        raise ValueError("verdicts: expected at least one")
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdicts: unknown verdict {v!r}; expected one of {VERDICTS}")
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if all(v == "not reproduced" for v in verdicts):
        return "not reproduced"
    return "mixed"


def claim(id: str, claim: str, metric: str, *, ours: tuple[str, Sequence[float]],
          baselines: dict[str, Sequence[float]], higher_is_better: bool, kind: str = "better",
          margin: float = 0.0, z: float = 2.0, note: str = "") -> dict:
    """Builds one claim entry of summary.json with per-seed values, mean ± std and a computed verdict.

    Args:
      id: short identifier, e.g. "stability".
      claim: the paper's claim in one sentence.
      metric: the metric name, e.g. "collapse_rate".
      ours: (method name, per-seed values).
      baselines: {method name: per-seed values}.
      higher_is_better: direction of the metric.
      kind: "better" (strict improvement) or "no_worse" (non-inferiority within margin).
      margin: tolerance in metric units (>= 0).
      z: number of standard errors required.
      note: free text shown in the report.
    """
    if not baselines:
        raise ValueError("baselines: expected at least one baseline")
    name, values = ours
    m, s = mean_std(values)
    entry = {"id": id, "claim": claim, "metric": metric, "higher_is_better": bool(higher_is_better),
             "kind": kind, "margin": float(margin), "z": float(z),
             "ours": {"method": name, "values": [float(v) for v in values], "mean": m, "std": s},
             "baselines": []}
    verdicts = []
    for bname, bvalues in baselines.items():
        bm, bs = mean_std(bvalues)
        cmp = compare(values, bvalues, higher_is_better=higher_is_better, kind=kind, margin=margin, z=z)
        verdicts.append(cmp["verdict"])
        entry["baselines"].append({"method": bname, "values": [float(v) for v in bvalues], "mean": bm,
                                   "std": bs, **cmp})
    entry["verdict"] = overall(verdicts)
    entry["note"] = note
    return entry


def combine_claims(id: str, claim: str, parts: Sequence[dict], note: str = "") -> dict:
    """A claim whose verdict combines several sub-claims (e.g. one per data set or setting)."""
    if not parts:
        raise ValueError("parts: expected at least one sub-claim")
    return {"id": id, "claim": claim, "parts": list(parts), "n_seeds": n_seeds(parts),
            "verdict": overall([p["verdict"] for p in parts]), "note": note}


def n_seeds(parts: Sequence[dict]) -> int:
    """The fewest per-seed values behind any leaf of (possibly nested) sub-claims, so that a combined
    claim states how many seeds support its weakest part."""
    counts = [p["n_seeds"] if "parts" in p else len(p["ours"]["values"]) for p in parts]
    return int(min(counts))
