"""Re-applies the strict verdict rule (`jaxlab.core.summary`) to committed summaries, from their stored
per-seed values, until each study's fair re-run (issue 13) replaces its summary.

    python -m jaxlab.core.rejudge results/full      # rewrites results/full/*/summary.json in place

Nothing is re-measured: every number comes from the `values` the full run stored. What changes is the
rule (one-sided Welch t bound instead of d >= -(margin + 2 se)), the block of each claim (paper /
sanity / variant) and the claim definitions the experiments now use (RULES below mirrors them:
threshold claims are `better` than the threshold, PiCCE's system error has a stated 0.01 margin, a max
gradient norm is no longer a stability claim). The old verdict is kept as `verdict_before` and the
summary records `rejudged` so the report can say so.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from typing import Callable

from jaxlab.core import summary as summary_lib
from jaxlab.core.metrics import read_json, write_json_atomic

Rule = Callable[[str, dict], dict | None]   # (leaf id, leaf) -> {kind, margin, block} overrides, or None to drop


def _picce(cid: str, leaf: dict) -> dict:
    if re.match(r"(a1|a2|b2)/", cid):
        return {"kind": "better"}                       # "within / above a threshold" claims
    if leaf.get("kind") == "no_worse" and not leaf.get("margin"):
        return {"margin": 0.01, "note": "margin 0.01 = one absolute point of system error"}
    return {}


def _kpo(cid: str, leaf: dict) -> dict | None:
    if re.match(r"stability_(?!frac_)", cid):
        return None                                     # a max norm is not a stability claim (tables keep it)
    if cid.startswith("ours_tr_"):
        return {"block": "variant"}
    if cid in ("grpo_learns", "switch_reduction"):
        return {"block": "sanity"}
    return {}


def _fusion(cid: str, leaf: dict) -> dict:
    if cid.endswith("mi_audio_vs_vision"):
        from jaxlab.fusion.mi import failure_reason     # a negative MI estimate is a failed estimator
        values = [leaf["ours"]["values"]] + [b["values"] for b in leaf.get("baselines", [])] if "ours" in leaf else []
        return {"paired": True, "untestable": failure_reason(*values)}   # one trained policy per seed
    return {"block": "sanity"} if ("audio_needed" in cid or "audio_free_slams_more" in cid) else {}


def _fusion_tables(data: dict, run_dir: str) -> dict:
    """MI tables rebuilt from the per-seed records in <run_dir>[/cabinet]/variants/*_mi.json with
    `jaxlab.fusion.mi.mi_table_rows` (failed estimates set aside, intervals over all seeds)."""
    from jaxlab.fusion.mi import mi_table_rows
    tables = dict(data.get("tables", {}))
    for name, sub in (("mi", ""), ("cabinet_mi", "cabinet")):
        files = sorted(glob.glob(os.path.join(run_dir, sub, "variants", "*_mi.json")))
        if name in tables and files:
            mi = {}
            for f in files:
                mi.update(read_json(f))
            tables[name] = mi_table_rows(mi)
    return tables


def _finance(cid: str, leaf: dict) -> dict:
    return {"block": "sanity"} if cid.startswith("drift") else {}


def _lm_sft(cid: str, leaf: dict) -> dict:
    return {"kind": "better", "block": "sanity"} if cid == "learns_add1" else {}


RULES: dict[str, Rule] = {"picce": _picce, "kpo": _kpo, "fusion": _fusion, "finance_dataflow": _finance,
                          "lm_sft": _lm_sft, "farl": lambda cid, leaf: {}}


def _join_notes(note: str, extra: str) -> str:
    """The leaf's note plus the rule's (once: a second pass does not repeat it)."""
    return note if (not extra or extra in note) else " ".join(x for x in (note, extra) if x)


def _rejudge_leaf(leaf: dict, rule: Rule, top_block: str | None) -> dict | None:
    over = rule(leaf["id"], leaf)
    if over is None:
        return None
    if "ours" not in leaf:
        return leaf
    before = leaf.get("verdict_before", leaf.get("verdict"))     # a second pass keeps the first verdict
    kind = over.get("kind", leaf.get("kind", "better"))
    margin = over.get("margin", leaf.get("margin", 0.0))
    if kind == "better" and leaf.get("kind") == "no_worse":
        margin = 0.0
    n = len(leaf["ours"]["values"])
    # A one-value baseline is a constant threshold ("threshold_0.9"): the same constant for every seed.
    bases = {b["method"]: (b["values"] * n if len(b["values"]) == 1 else b["values"]) for b in leaf["baselines"]}
    new = summary_lib.claim(
        leaf["id"], leaf.get("claim", ""), leaf["metric"], ours=(leaf["ours"]["method"], leaf["ours"]["values"]),
        baselines=bases, higher_is_better=leaf["higher_is_better"],
        kind=kind, margin=margin, paired=over.get("paired", leaf.get("paired", False)),
        block=over.get("block") or top_block or leaf.get("block") or "paper",
        note=_join_notes(leaf.get("note", ""), over.get("note", "")), untestable_reason=over.get("untestable"))
    new["verdict_before"] = before
    return new


def _rejudge_claim(c: dict, rule: Rule, block: str | None = None) -> dict | None:
    if "parts" not in c:
        return _rejudge_leaf(c, rule, block)
    block = rule(c["id"], c) or {}
    block = block.get("block") if isinstance(block, dict) else None
    parts = [p for p in (_rejudge_claim(p, rule, block) for p in c["parts"]) if p is not None]
    if not parts:
        return None
    out = summary_lib.combine_claims(c["id"], c.get("claim", ""), parts, note=c.get("note", ""),
                                     block=block or parts[0].get("block", "paper"))
    out["verdict_before"] = c.get("verdict_before", c.get("verdict"))
    return out


def rejudge(data: dict, run_dir: str | None = None) -> dict:
    """The summary with every claim re-judged under the strict rule (see module docstring); with the run's
    folder, tables rebuilt from its stored records where a rule needs it (fusion's MI tables)."""
    rule = RULES.get(data.get("paper", ""), lambda cid, leaf: {})
    claims = [c for c in (_rejudge_claim(c, rule) for c in data.get("claims", [])) if c is not None]
    out = dict(data, claims=claims)
    if run_dir is not None and data.get("paper") == "fusion":
        out["tables"] = _fusion_tables(data, run_dir)
    out["rejudged"] = ("verdicts recomputed from the stored per-seed values with the strict rule of "
                       "jaxlab/core/summary.py (one-sided Welch t bounds, stated margins, claim blocks); "
                       "numbers unchanged; verdict_before holds the old rule's verdict")
    return out


def main(argv: list[str]) -> None:
    root = argv[1] if len(argv) > 1 else "results/full"
    for path in sorted(glob.glob(os.path.join(root, "*", "summary.json"))):
        data = read_json(path)
        new = rejudge(data, os.path.dirname(path))
        write_json_atomic(path, new)
        changed = [(c["id"], c.get("verdict_before"), c["verdict"]) for c in new["claims"]
                   if c.get("verdict_before") != c["verdict"]]
        print(f"{path}: paper-level {summary_lib.paper_verdict(new['claims'])}; changed: {changed}")


if __name__ == "__main__":
    main(sys.argv)
