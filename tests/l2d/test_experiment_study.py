"""experiments/picce.py on jaxlab.core.study: a changed hyperparameter never reuses an old cell, a killed run
resumes to the summary of an uninterrupted one, and a lost npz is recomputed. `train_cell` is replaced by a fake
whose arrays are a deterministic function of (cell config, seed), so these tests need no training."""

import json
import os
import zlib

import numpy as np
import pytest

from experiments import picce
from experiments.configs.picce import get_config


def _config():
    c = get_config("quick")
    c.datasets = ["gmm"]
    c.num_experts = [1, 2, 8]
    c.seeds = [0, 1]
    c.epochs.gmm = 4
    c.budgets.gmm = [1, 2]
    return c


def _fake(calls, fail_after=None):
    def train_cell(cc, seeds, splits, programs=None):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("killed")
        calls.append((cc["method"], cc["lr"], tuple(seeds)))
        n_j, e, jm = len(cc["num_experts"]), cc["epochs"], max(cc["num_experts"])
        per = []
        for seed in seeds:
            tag = json.dumps({k: v for k, v in cc.items()}, sort_keys=True) + str(seed)
            rng = np.random.default_rng(zlib.crc32(tag.encode()))
            a = {f"{sp}/{k}": rng.uniform(size=(n_j, e)) for sp in ("val", "test") for k in picce.SCALARS}
            a["test/defer_frac"] = rng.uniform(size=(n_j, e, jm))
            a["test/expert_accuracy"] = rng.uniform(size=(n_j, e, jm))
            a["mass_vanilla_theory"] = rng.uniform(size=(n_j,))
            a["mass_picce_theory"] = rng.uniform(size=(n_j,))
            per.append(a)
        return {k: np.stack([p[k] for p in per], 1) for k in per[0]}     # [n_J, S, ...]
    return train_cell


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(picce, "load_data", lambda cc: None)
    monkeypatch.setattr(picce.plots, "curves", lambda path, *a, **k: path)

    def install(calls, fail_after=None):
        monkeypatch.setattr(picce, "train_cell", _fake(calls, fail_after))
    return install


def _dump(summary):
    return json.dumps(summary, sort_keys=True, default=str)


def test_changed_hyperparameter_recomputes_every_cell(fake, tmp_path):
    calls = []
    fake(calls)
    c = _config()
    first = picce.run(c, str(tmp_path))
    n_cells = len(picce.make_cells(c))
    assert n_cells == len(c.methods) * len(c.lr_grid) and len(calls) == n_cells
    again = picce.run(c, str(tmp_path))                       # same config: every record reused
    assert len(calls) == n_cells and _dump(again) == _dump(first)
    c.lr_grid = [0.5]
    changed = picce.run(c, str(tmp_path))
    assert len(calls) == n_cells + len(c.methods) and all(lr == 0.5 for _, lr, _ in calls[n_cells:])
    npz = sorted(f for f in os.listdir(tmp_path / "cells" / "gmm__specialist__ce__lr=0.5") if f.endswith(".npz"))
    assert len(npz) == 2 and all(picce.config_hash(picce.make_cells(c)[0].config) in f for f in npz)
    fresh_calls = []
    fake(fresh_calls)
    fresh = picce.run(c, str(tmp_path / "fresh"))
    assert _dump(changed["tables"]) == _dump(fresh["tables"])
    assert _dump(changed["tables"]) != _dump(first["tables"])


def test_a_changed_grid_computes_only_its_new_points_and_the_choice_follows(fake, tmp_path):
    """Each grid point is its own study cell (the point is in the hashed config): adding a learning rate runs
    only that point, for every method; the summary then equals a fresh run of the wider grid."""
    calls = []
    fake(calls)
    c = _config()
    c.lr_grid = [1e-3]
    picce.run(c, str(tmp_path))
    assert len(calls) == len(c.methods)
    c.lr_grid = [1e-3, 2e-3]
    wider = picce.run(c, str(tmp_path))
    assert [lr for _, lr, _ in calls[len(c.methods):]] == [2e-3] * len(c.methods)
    fake([])
    assert _dump(wider["tables"]) == _dump(picce.run(c, str(tmp_path / "fresh"))["tables"])
    assert {r["chosen"] for r in wider["tables"]["hparams"]} <= {"lr=0.001", "lr=0.002"}


def test_a_method_only_hyperparameter_recomputes_only_its_cells(fake, tmp_path):
    calls = []
    fake(calls)
    c = _config()
    c.methods = ["ce", "picce_ce", "realizable"]
    picce.run(c, str(tmp_path))
    n_first = len(calls)
    c.rs_alpha_grid = [0.5]                                   # only the realizable surrogate reads it
    picce.run(c, str(tmp_path))
    assert [m for m, _, _ in calls[n_first:]] == ["realizable"] * len(c.lr_grid)


def test_killed_study_resumes_to_the_uninterrupted_summary(fake, tmp_path):
    c = _config()
    calls = []
    fake(calls, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        picce.run(c, str(tmp_path / "killed"))
    assert len(calls) == 2
    fake(calls)
    resumed = picce.run(c, str(tmp_path / "killed"))
    assert len(calls) == len(picce.make_cells(c))             # the two finished cells were not rerun
    fake([])
    whole = picce.run(c, str(tmp_path / "whole"))
    assert _dump(resumed) == _dump(whole)


def test_lost_or_foreign_npz_is_recomputed(fake, tmp_path):
    c = _config()
    calls = []
    fake(calls)
    first = picce.run(c, str(tmp_path))
    cell_dir = tmp_path / "cells" / "gmm__specialist__ce__lr=0.001"
    (npz,) = [f for f in os.listdir(cell_dir) if f.startswith("s0.") and f.endswith(".npz")]
    os.remove(cell_dir / npz)
    again = picce.run(c, str(tmp_path))
    assert calls[-1] == ("ce", 1e-3, (0,))
    assert _dump(again) == _dump(first)


def test_the_tuned_remedies_enter_the_paper_claims_and_rows_report_the_chosen_points(fake, tmp_path):
    """With the realizable and decoupled baselines in the grid, claim (e) compares each PiCCE loss with both (at
    their own validation-chosen alpha / lambda and lr), in block "paper"; every main row names its chosen point,
    and its test numbers are the ones of that point."""
    c = _config()
    c.methods = ["ce", "picce_ce", "ova", "picce_ova", "realizable", "decoupled"]
    c.rs_alpha_grid = [0.5, 1.0]
    c.decoupled_weight_grid = [1.0, 4.0]
    fake([])
    out = picce.run(c, str(tmp_path))
    by = {cl["id"]: cl for cl in out["claims"]}
    for fam, ours in (("CE", "picce_ce"), ("OvA", "picce_ova")):
        e = by[f"e_{fam}"]
        assert e["block"] == "paper" and len(e["parts"]) == 3
        for part in e["parts"]:
            assert part["ours"]["method"] == ours and part["kind"] == "no_worse" and part["margin"] == c.error_margin
            assert [b["method"] for b in part["baselines"]] == ["realizable", "decoupled"]
    hp = {(r["method"], r["budget"]): r for r in out["tables"]["hparams"]}
    assert hp[("realizable", "short (1 ep)")]["alpha"] in (0.5, 1.0)
    assert hp[("decoupled", "short (1 ep)")]["expert_weight"] in (1.0, 4.0)
    results = picce.run_all_cells(c, str(tmp_path))
    for row in out["tables"]["main"]:
        if row["method"] != "decoupled" or not row["budget"].startswith("short"):
            continue
        chosen = hp[("decoupled", row["budget"])]["chosen"]
        assert row["hparams"] == chosen
        arr = results[("gmm", "specialist", "decoupled")][chosen]["test/system_error"]     # [n_J, S, E]
        j = list(c.num_experts).index(row["J"])
        assert row["system_error_mean"] == pytest.approx(float(arr[j, :, 0].mean()))
