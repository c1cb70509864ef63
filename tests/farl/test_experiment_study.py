"""experiments/farl.py on jaxlab.core.study: a changed hyperparameter never reuses an arm or an offline stage
computed under the old one; a killed run resumes without recomputing finished arms. The offline stage and the
online arms are fakes (deterministic functions of the task config and seed), so nothing is trained here."""

import json
import zlib

import numpy as np
import pytest

from experiments import farl
from experiments.configs.farl import get_config


def _rng(*parts):
    return np.random.default_rng(zlib.crc32(json.dumps(parts, sort_keys=True, default=str).encode()))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(farl.plots, "curves", lambda path, *a, **k: path)
    calls = {"offline": [], "arms": []}

    def offline_stage(task, cc):
        calls["offline"].append((task, cc["lr"]))
        rng = _rng(cc, "offline")
        val = {"val_steps": 100, "val_failures": 3, "val_positive_steps": 9,
               **{c: {"eps_safe": 0.1, "precision": float(rng.uniform()), "recall": 0.9, "val_trigger_rate": 0.1,
                      "auroc": float("nan")} for c in ("farl", "recovery_rl")}}
        rec = {"eps_wm": 0.1, "eps_q": 0.2, "eps_wm_oncal": 0.3, "eps_q_oncal": 0.4,
               "cal_failures": {str(s): 5.0 for s in cc["val_seeds"]}, "wm_auroc": float("nan"), "validation": val,
               "validation_online": val, "fit": {"bc": 0.1}, "timing": {}}
        return rec, {}

    def run_arm(task, cc, arm, seeds, off, ctx, mw, lagrange_lr=0.0, evaluate=True):
        if calls.get("fail_after") is not None and len(calls["arms"]) >= calls["fail_after"]:
            raise KeyboardInterrupt("killed")
        calls["arms"].append((arm, cc["lr"], tuple(seeds), lagrange_lr, evaluate))
        out = []
        for s in seeds:
            rng = _rng(cc, arm, s, lagrange_lr)
            cum = np.cumsum(rng.integers(0, 3, cc["iterations"])).tolist()
            cal = 5.0 if arm.endswith("_oncal") else 0.0
            rec = {"cum_failures": cum, "cal_failures": cal, "total_failures": cum[-1] + cal,
                   "final_return": float(rng.normal()) - (lagrange_lr > 10), "final_success": float(rng.uniform()),
                   "trigger_rate": float(rng.uniform()), "return_curve": rng.normal(size=cc["iterations"]).tolist(),
                   "lam_curve": (lagrange_lr * np.arange(cc["iterations"])).tolist(), "wall_s": 0.0, "cpu_s": 0.0}
            if evaluate:
                for pre in ("eval", "eval_nofilter"):
                    rec.update({f"{pre}_{k}": float(rng.uniform())
                                for k in ("failures", "episodes", "return", "success", "trigger_rate")})
            out.append(rec)
        return out

    monkeypatch.setattr(farl, "offline_stage", offline_stage)
    monkeypatch.setattr(farl, "run_arm", run_arm)
    return calls


def _dump(x):
    return json.dumps(x, sort_keys=True, default=str)


def test_changed_hyperparameter_recomputes_offline_stage_and_every_arm(fake, tmp_path):
    c = get_config("quick")
    first = farl.run(c, str(tmp_path))
    n_arms = len(c.arms) + len(c.lagrange_lr_grid)                       # the arms and the tuning runs
    assert len(fake["arms"]) == n_arms and len(fake["offline"]) == 1
    tune = [a for a in fake["arms"] if not a[4]]
    assert [a[3] for a in tune] == list(c.lagrange_lr_grid) and all(a[2] == tuple(c.tune_seeds) for a in tune)
    chosen = [a[3] for a in fake["arms"] if a[0] == "ppo_lagrangian" and a[4]]
    rows = first["tables"]["lagrange"]
    assert chosen == [r["lagrange_lr"] for r in rows if r["chosen"]] and len(rows) == len(c.lagrange_lr_grid)
    again = farl.run(c, str(tmp_path))
    assert len(fake["arms"]) == n_arms and len(fake["offline"]) == 1       # everything reused, nothing run
    assert _dump(again) == _dump(first)
    c.lr = 1e-3
    changed = farl.run(c, str(tmp_path))
    assert len(fake["arms"]) == 2 * n_arms and len(fake["offline"]) == 2
    assert all(a[1] == 1e-3 for a in fake["arms"][n_arms:])
    fresh = farl.run(c, str(tmp_path / "fresh"))
    assert _dump(changed["tables"]) == _dump(fresh["tables"])
    assert _dump(changed["tables"]["main"]) != _dump(first["tables"]["main"])


def test_killed_run_resumes_finished_arms_to_the_uninterrupted_summary(fake, tmp_path):
    c = get_config("quick")
    fake["fail_after"] = 2
    with pytest.raises(KeyboardInterrupt):
        farl.run(c, str(tmp_path / "killed"))
    fake["fail_after"] = None
    resumed = farl.run(c, str(tmp_path / "killed"))
    assert len(fake["arms"]) == len(c.arms) + len(c.lagrange_lr_grid)     # the 2 finished cells were reused
    whole = farl.run(c, str(tmp_path / "whole"))
    assert _dump(resumed) == _dump(whole)


def test_claims_are_judged_per_task_and_pooled_with_success_beside_failures(fake, tmp_path):
    c = get_config("quick")
    c.tasks = ["bounded_push", "obstructed_push"]
    out = farl.run(c, str(tmp_path))
    by_id = {cl["id"]: cl for cl in out["claims"]}
    for cid in ("ir_failures", "ir_failures_vs_safe_baselines", "performance",
                "fewer_failures_without_success_collapse", "recovery_helps"):
        assert by_id[cid]["block"] == "paper"
        assert [p["id"].split("[")[1] for p in by_id[cid]["parts"]] == ["pooled]", "bounded_push]", "obstructed_push]"]
    assert by_id["farl_oncal_ir_failures"]["block"] == "variant"
    part = by_id["fewer_failures_without_success_collapse"]["parts"][1]
    fail, succ = part["parts"]
    assert succ["kind"] == "no_worse" and succ["margin"] == c.success_margin and "eval success" in fail["note"]
    # pooled failures are the per-seed sums over tasks of online + calibration failures
    oncal = by_id["farl_oncal_ir_failures"]["parts"]
    np.testing.assert_allclose(oncal[0]["ours"]["values"],
                               np.add(oncal[1]["ours"]["values"], oncal[2]["ours"]["values"]))
    assert min(oncal[1]["ours"]["values"]) >= 5.0
