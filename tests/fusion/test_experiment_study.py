"""experiments/fusion.py on jaxlab.core.study, and the MI-frame caches keyed by every input.

Training, evaluation and the MI analysis are fakes (deterministic functions of the cell config), so nothing is
trained here: a changed hyperparameter recomputes every variant it touches, an MI-only setting recomputes only
the MI variants, and a rerun reuses everything."""

import json
import zlib

import numpy as np
import pytest

from experiments import fusion
from experiments.configs import fusion as fcfg


@pytest.fixture
def fake(monkeypatch):
    calls = []
    monkeypatch.setattr(fusion.plots, "grouped_bars", lambda path, *a, **k: path)
    monkeypatch.setattr(fusion.PL, "expert_dataset", lambda *a, **k: "pour-data")
    monkeypatch.setattr(fusion, "_cabinet_data", lambda config, task="cabinet": ("cabinet-data", None, None))

    def rng(config, variant):
        tag = json.dumps(fusion.cell_config(config, "?", variant), sort_keys=True)
        return np.random.default_rng(zlib.crc32(tag.encode()))

    def train_and_eval(config, variant, data, run_dir, writer, task="pour"):
        calls.append((task, variant, tuple(config.lr_grid)))
        r = rng(config, variant)
        s = len(config.seeds)
        out = {k: r.uniform(size=s).tolist() for k in ("success", "fill_error", "overflow", "slam", "timeout")}
        out["best_steps"], out["val_success"] = int(config.train_steps), r.uniform(size=2).tolist()
        out["best_lr"] = float(config.lr_grid[0])
        return None, None, out

    def mi_analysis(config, net, ema, variant, task="pour"):
        calls.append((task, variant + "/mi", config.mi_steps))
        r = rng(config, variant + "/mi")
        return {f"{variant}/{emb}/infonce": [{"mi": float(r.uniform()), "lo": 0.0, "hi": float("nan")}
                                              for _ in config.seeds] for emb in ("audio", "vision")}

    monkeypatch.setattr(fusion, "train_and_eval", train_and_eval)
    monkeypatch.setattr(fusion, "mi_analysis", mi_analysis)
    return calls


def _dump(x):
    return json.dumps(x, sort_keys=True, default=str)


def _config():
    c = fcfg.get_config("quick")
    c.tasks = "pour"
    c.variants = ["havp", "concat", "havp_noaudio"]
    return c


def test_changed_hyperparameter_recomputes_and_rerun_reuses(fake, tmp_path):
    c = _config()
    first = fusion.run(c, str(tmp_path))
    n = len(fake)
    assert n == 3 + 2                                       # 3 variants trained, havp and havp_noaudio analysed
    again = fusion.run(c, str(tmp_path))
    assert len(fake) == n
    assert _dump(again["tables"]) == _dump(first["tables"])
    c.mi_steps = 7                                          # an MI setting: only the MI variants are recomputed
    fusion.run(c, str(tmp_path))
    assert sorted(v for _, v, _ in fake[n:]) == ["havp", "havp/mi", "havp_noaudio", "havp_noaudio/mi"]
    m = len(fake)
    c.lr_grid = [1e-2]                                      # a training setting: every variant is recomputed
    changed = fusion.run(c, str(tmp_path))
    assert len(fake) == m + 5 and all(lr == (1e-2,) for _, v, lr in fake[m:] if not v.endswith("/mi"))
    fresh = fusion.run(c, str(tmp_path / "fresh"))
    assert _dump(changed["tables"]) == _dump(fresh["tables"])
    assert _dump(changed["tables"]["main"]) != _dump(first["tables"]["main"])


def test_seeds_are_part_of_a_cell(fake, tmp_path):
    """The budget is chosen on the seed mean, so adding a seed recomputes the cell (not only the new seed)."""
    c = _config()
    c.variants = ["havp"]
    c.mi_variants = []
    fusion.run(c, str(tmp_path))
    c.seeds = [0, 1, 2, 3]
    fusion.run(c, str(tmp_path))
    assert len(fake) == 2


def test_mi_frame_caches_are_keyed_by_every_input():
    c1 = fcfg.get_config("quick")
    c2 = fcfg.get_config("quick")
    c2.data_seed = c1.data_seed + 1
    seen = []
    orig = fusion._mi_frames_cached
    try:
        fusion._mi_frames_cached = lambda *a: seen.append(a) or a
        assert fusion._mi_frames(c1) != fusion._mi_frames(c2)      # data_seed is part of the key now
        assert fusion._mi_frames(c1) == (c1.data_seed, c1.mi_episodes, c1.obs_horizon, c1.pred_horizon)
    finally:
        fusion._mi_frames_cached = orig
    assert len(seen) == 3


def test_choose_budget_picks_on_validation_then_fewer_steps_then_grid_order():
    curves = {1e-3: [0.2, 0.5, 0.6], 2e-3: [0.3, 0.6, 0.6], 4e-3: [0.6, 0.4, 0.1]}
    # 0.6 is reached at chunk 0 by lr 4e-3: the fewest steps win the tie
    assert fusion.choose_budget(curves) == (4e-3, 0)
    assert fusion.choose_budget({1e-3: [0.2, 0.7], 2e-3: [0.7, 0.1]}) == (2e-3, 0)
    assert fusion.choose_budget({2e-3: [0.5, 0.5], 1e-3: [0.5]}) == (2e-3, 0)   # same step: the earlier grid point
    assert fusion.choose_budget({1e-3: [0.1, 0.9]}) == (1e-3, 1)
    with pytest.raises(ValueError, match="curves"):
        fusion.choose_budget({})


def test_lr_grid_is_a_cell_setting_and_shared_fields_are_recorded(fake, tmp_path):
    """A grid of several learning rates is part of every cell (recomputes), and the chosen lr is reported."""
    c = _config()
    c.variants, c.mi_variants = ["havp", "stage1"], []
    out = fusion.run(c, str(tmp_path))
    assert [r["lr_by_val"] for r in out["tables"]["main"]] == [2e-3, 2e-3]
    assert "hier_vs_stage1" in {cl["id"] for cl in out["claims"]}
    c.lr_grid = [1e-3, 2e-3]
    fusion.run(c, str(tmp_path))
    assert len(fake) == 4 and fake[-1][2] == (1e-3, 2e-3)


def test_tasks_run_concurrently_in_task_order_and_match_a_sequential_run(fake, tmp_path, monkeypatch):
    """`run_tasks` runs pour and cabinet in two threads: pour's first training waits until cabinet's has
    started (a sequential run would time out here). The results come back in task order and equal those of the
    tasks run one at a time; an error in one task is raised after both have stopped."""
    import threading
    c = fcfg.get_config("quick")
    c.variants, c.mi_variants, c.cabinet.variants = ["havp"], [], ["havp"]
    started = {"pour": threading.Event(), "cabinet": threading.Event()}
    inner = fusion.train_and_eval

    def train_and_eval(config, variant, data, run_dir, writer, task="pour"):
        started[task].set()
        if task == "pour":
            assert started["cabinet"].wait(timeout=60), "the cabinet task did not start while pour ran"
        return inner(config, variant, data, run_dir, writer, task)

    monkeypatch.setattr(fusion, "train_and_eval", train_and_eval)
    with fusion.MetricsWriter(tmp_path / "m.jsonl") as w:
        configs, both = fusion.run_tasks(c, str(tmp_path / "a"), ["pour", "cabinet"], w)
    assert [tc.train_steps for tc in configs] == [c.train_steps, c.cabinet.train_steps]
    assert c.train_steps != c.cabinet.train_steps
    with fusion.MetricsWriter(tmp_path / "m2.jsonl") as w:
        alone = [fusion.run_tasks(c, str(tmp_path / "b"), [t], w)[1][0] for t in ("pour", "cabinet")]
    assert _dump(both) == _dump(alone)

    def broken(config, variant, data, run_dir, writer, task="pour"):
        if task == "cabinet":
            raise RuntimeError("cabinet broke")
        return inner(config, variant, data, run_dir, writer, task)

    monkeypatch.setattr(fusion, "train_and_eval", broken)
    with fusion.MetricsWriter(tmp_path / "m3.jsonl") as w, pytest.raises(RuntimeError, match="cabinet broke"):
        fusion.run_tasks(c, str(tmp_path / "c"), ["pour", "cabinet"], w)
    assert (tmp_path / "c" / "cells" / "havp" / "s0.json").exists()      # pour finished and kept its records
