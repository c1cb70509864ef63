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
        rec = {"eps_wm": 0.1, "eps_q": 0.2, "wm_auroc": float("nan"), "validation": val,
               "critic": {}, "fit": {"bc": 0.1}, "timing": {}}
        return rec, {}

    def run_arm(task, cc, arm, seeds, off, ctx, mw, fail_after=None):
        if calls.get("fail_after") is not None and len(calls["arms"]) >= calls["fail_after"]:
            raise KeyboardInterrupt("killed")
        calls["arms"].append((arm, cc["lr"], tuple(seeds)))
        out = []
        for s in seeds:
            rng = _rng(cc, arm, s)
            cum = np.cumsum(rng.integers(0, 3, cc["iterations"])).tolist()
            out.append({"cum_failures": cum, "final_return": float(rng.normal()),
                        "final_success": float(rng.uniform()), "trigger_rate": float(rng.uniform()),
                        "return_curve": rng.normal(size=cc["iterations"]).tolist(), "wall_s": 0.0, "cpu_s": 0.0})
        return out

    monkeypatch.setattr(farl, "offline_stage", offline_stage)
    monkeypatch.setattr(farl, "run_arm", run_arm)
    return calls


def _dump(x):
    return json.dumps(x, sort_keys=True, default=str)


def test_changed_hyperparameter_recomputes_offline_stage_and_every_arm(fake, tmp_path):
    c = get_config("quick")
    first = farl.run(c, str(tmp_path))
    n_arms = len(c.arms)
    assert len(fake["arms"]) == n_arms and len(fake["offline"]) == 1
    again = farl.run(c, str(tmp_path))
    assert len(fake["arms"]) == n_arms and len(fake["offline"]) == 1       # everything reused, nothing run
    assert _dump(again) == _dump(first)
    c.lr = 1e-3
    changed = farl.run(c, str(tmp_path))
    assert len(fake["arms"]) == 2 * n_arms and len(fake["offline"]) == 2
    assert all(lr == 1e-3 for _, lr, _ in fake["arms"][n_arms:])
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
    assert len(fake["arms"]) == len(c.arms)                                 # the 2 finished arms were reused
    whole = farl.run(c, str(tmp_path / "whole"))
    assert _dump(resumed) == _dump(whole)
