"""experiments/finance_dataflow.py on jaxlab.core.study: a changed hyperparameter never reuses a unit computed
under the old one, an RL-only setting recomputes only the RL cells, and a rerun reuses everything. Training is a
fake (records are deterministic functions of the unit's config and seed), so nothing is trained here."""

import json
import zlib

import numpy as np
import pytest

import experiments.finance_dataflow as exp
from experiments.configs.finance_dataflow import get_config


def _rng(*parts):
    return np.random.default_rng(zlib.crc32(json.dumps(parts, sort_keys=True, default=str).encode()))


@pytest.fixture
def fake(monkeypatch):
    calls = []

    def forecast_unit(cc, seed, data, *, first, workdir):
        calls.append(("f", cc["model"], cc["method"], cc["lr"], seed))
        rec = {"metrics": _rng(cc, seed).uniform(1e-4, 2e-4, len(exp.F_KEYS)).tolist()}
        if first:
            rec["replay"] = [3, 3]
        return rec, ("prep", "tr", cc["lr"])

    def run_rl(config, prep, tr, out, seed):
        calls.append(("rl", out, config.rl.lr, seed))
        r = _rng(out, config.rl.to_dict(), seed)
        return r.normal(size=(len(exp.ARMS), len(exp.R_KEYS))), {"sharpe": 1.0, "total_return": 0.1, "mdd": 0.2,
                                                                 "mean_daily": 1e-3}

    monkeypatch.setattr(exp, "forecast_unit", forecast_unit)
    monkeypatch.setattr(exp, "run_rl", run_rl)
    monkeypatch.setattr(exp, "summarize", lambda config, workdir, state, elapsed: {
        k: v.tolist() for k, v in state.items()})
    return calls


def _config():
    c = get_config("quick")
    c.datasets, c.models, c.methods, c.seeds = ["synthetic"], ["dlinear", "gru"], ["original", "ours"], [0, 1]
    return c


def test_changed_hyperparameter_recomputes_and_rl_setting_touches_only_rl(fake, tmp_path):
    c = _config()
    first = exp.run(c, str(tmp_path))
    n_f, n_rl = 2 * 2 * 2, 2
    assert sum(x[0] == "f" for x in fake) == n_f and sum(x[0] == "rl" for x in fake) == n_rl
    assert first["replay"] == [[3, 3]]
    assert exp.run(c, str(tmp_path)) == first and len(fake) == n_f + n_rl       # a rerun reuses everything
    c.rl.lr = 3e-4                                   # RL only: the RL cell reruns, its source unit is retrained
    rl_changed = exp.run(c, str(tmp_path))
    new = fake[n_f + n_rl:]
    assert [x[:3] for x in new if x[0] == "f"] == [("f", "dlinear", "ours")] * 2
    assert sum(x[0] == "rl" for x in new) == 2 and rl_changed["f"] == first["f"] and rl_changed["r"] != first["r"]
    m = len(fake)
    c.lr = 5e-3                                      # the task model's lr: every unit is recomputed
    changed = exp.run(c, str(tmp_path))
    assert sum(x[0] == "f" for x in fake[m:]) == n_f and all(x[3] == 5e-3 for x in fake[m:] if x[0] == "f")
    assert sum(x[0] == "rl" for x in fake[m:]) == n_rl                 # the planner source came from this run
    fresh = exp.run(c, str(tmp_path / "fresh"))
    assert changed == fresh and changed["f"] != first["f"]
