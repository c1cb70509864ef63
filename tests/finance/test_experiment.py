"""The experiment end to end on a tiny config: summary shape; study resume after an interruption (slow: three
runs) and the quick config (slow: ~4 CPU-minutes). Changed-config recomputation: test_experiment_study.py."""
import json
import os

import numpy as np
import pytest

import experiments.finance_dataflow as exp
from experiments.configs.finance_dataflow import get_config


def _tiny_config():
    c = get_config("quick")
    c.datasets = ["synthetic"]
    c.synthetic_assets, c.synthetic_days, c.lookback = 4, 200, 12
    c.models, c.rl_model, c.methods, c.seeds = ["dlinear"], "dlinear", ["original", "ours"], [0]
    # the same hyperparameters and shapes as tests/finance/test_planner.py, so the compiled step is shared
    c.batch_size, c.epochs, c.steps_per_epoch, c.planner_hidden = 16, 2, 3, 16
    c.freq, c.planner_start, c.val_batch = 2, 0, 32
    c.rl.update(window=5, num_envs=4, buffer_size=256, iters=100, chunk=50, bank_size=64, eps_decay_iters=50,
                target_every=20)
    return c


def test_experiment_end_to_end_on_a_tiny_config(tmp_path):
    # compiled as the quick config runs it (`fast_compile`, see experiments/configs/finance_dataflow.py): the
    # run is compile-bound, and this halves it
    from jaxlab.core.app import fast_compile
    with fast_compile(True):
        out = exp.run(_tiny_config(), str(tmp_path))
    assert {cl["id"] for cl in out["claims"]} == {"forecast_mse", "rl_sharpe", "drift"}   # no augmenter baselines
    for cl in out["claims"]:
        assert cl["verdict"] in ("reproduced", "mixed", "not reproduced", "untestable here")   # 1 seed: untestable
    rep = [r for r in out["tables"]["drift"] if r["fold"] == -1][0]
    assert rep["replay_steps"] == 6 and rep["replay_matched"] == 6          # provenance replay is exact
    assert {r["agent"] for r in out["tables"]["rl"]} == {"dqn", "dqn+randaugment", "dqn+ours", "buy_and_hold_equal_weight"}
    assert all(os.path.exists(tmp_path / f) for f in out["figures"])


@pytest.mark.slow   # three runs of the experiment (~190 CPU-s); resume itself is tested in tests/core and the study test
def test_experiment_resumes_after_interruption_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    c = _tiny_config()
    full = exp.run(c, str(tmp_path / "a"))   # its summary's shape: test_experiment_end_to_end_on_a_tiny_config

    def boom(*a, **k):
        raise RuntimeError("simulated crash")
    monkeypatch.setattr(exp, "run_rl", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        exp.run(c, str(tmp_path / "b"))
    monkeypatch.undo()
    assert os.listdir(tmp_path / "b" / "cells")                     # the forecast units were recorded
    calls = []
    real_train = exp.train_lib.make_train
    monkeypatch.setattr(exp.train_lib, "make_train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    resumed = exp.run(c, str(tmp_path / "b"))
    assert len(calls) == 1                   # no forecast unit retrained; the RL planner's source unit once
    for ra, rb in zip(full["tables"]["forecast"], resumed["tables"]["forecast"]):
        for k, v in ra.items():
            if isinstance(v, float):
                np.testing.assert_allclose(rb[k], v, rtol=1e-5, err_msg=k)
    np.testing.assert_allclose([r["sharpe_mean"] for r in resumed["tables"]["rl"]],
                               [r["sharpe_mean"] for r in full["tables"]["rl"]], rtol=1e-5)


@pytest.mark.slow
def test_quick_experiment_end_to_end(tmp_path):
    c = get_config("quick")
    out = exp.run(c, str(tmp_path))
    ids = {cl["id"]: cl for cl in out["claims"]}
    assert set(ids) == {"forecast_mse", "forecast_mse_vs_augmenters", "rl_sharpe", "drift"}
    assert len(ids["forecast_mse"]["parts"]) == len(c.models) * len(c.datasets) == 4   # task models x data sets
    json.dumps(out)                                                 # JSON-able summary
    for r in out["tables"]["drift"]:
        if r["fold"] == -1:
            assert r["replay_matched"] == r["replay_steps"] > 0
