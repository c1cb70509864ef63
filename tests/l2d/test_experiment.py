"""The experiment end to end on a tiny config: summary shape, code-computed verdicts, resumability."""

import os

import numpy as np

from experiments import picce
from experiments.configs.picce import get_config


def _tiny_config():
    c = get_config("quick")
    c.datasets = ["gmm"]
    c.gmm_config = "tiny"
    c.data_source = "direct"
    c.settings = ["specialist"]
    c.num_experts = [1, 2, 8]
    c.seeds = [0, 1]
    c.hidden = [16]
    c.batch_size = 50
    c.epochs.gmm = 3
    c.budgets.gmm = [1, 2]
    return c


def test_quick_and_full_configs_are_consistent():
    for size in ("quick", "full"):
        c = get_config(size)
        assert {"ce", "picce_ce", "ova", "picce_ova"} <= set(c.methods)
        assert list(c.num_experts) == [1, 2, 4, 8, 16]
        for d in c.datasets:
            assert max(c.budgets[d]) < c.epochs[d]
    assert len(get_config("full").seeds) >= 5 and len(get_config("full").settings) == 3


def test_run_tiny_end_to_end_and_resume(tmp_path):
    c = _tiny_config()
    out = picce.run(c, str(tmp_path))
    ids = {cl["id"] for cl in out["claims"]}
    assert ids == {"a_CE", "b_CE", "c_CE", "d_CE", "b_OvA", "c_OvA", "d_OvA"}
    for cl in out["claims"]:
        assert cl["verdict"] in ("reproduced", "mixed", "not reproduced")
        assert len(cl["parts"]) == 3                                    # one per budget
        for part in cl["parts"]:
            assert part["verdict"] in ("reproduced", "mixed", "not reproduced")
    grid = out["tables"]["claim_grid"]
    assert len(grid) == 3 * 7
    rows = out["tables"]["main"]
    assert len(rows) == 3 * 4 * 3                                       # budgets x methods x J
    assert all(0.0 <= r["system_error_mean"] <= 1.0 for r in rows)
    assert out["tables"]["deferral_targets"]
    for f in out["figures"]:
        assert os.path.exists(tmp_path / f)
    # the J = 1 rows of CE and PiCCE-CE are the same run (identical losses, same keys)
    j1 = {r["method"]: r["system_error_mean"] for r in rows if r["J"] == 1 and r["budget"].startswith("short")}
    np.testing.assert_allclose(j1["ce"], j1["picce_ce"], atol=1e-6)
    # resuming: cells are read back, the summary is the same
    again = picce.run(c, str(tmp_path))
    assert [cl["verdict"] for cl in again["claims"]] == [cl["verdict"] for cl in out["claims"]]
    assert len(os.listdir(tmp_path / "cells")) == len(c.methods) * len(c.lr_grid)
    # the tuning table: one row per (method, budget), each naming a point of the grid
    hp = out["tables"]["hparams"]
    assert len(hp) == 4 * 3 and {r["lr"] for r in hp} <= set(c.lr_grid)
    assert all(r["hparams"] for r in rows)
