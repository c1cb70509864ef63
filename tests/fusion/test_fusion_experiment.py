"""Experiment config and (slow) end-to-end smoke runs of the experiment and the colab."""

import os

import pytest

from experiments.configs import fusion as fcfg
from jaxlab.fusion.encoders import FUSION_VARIANTS


def test_config_sizes_and_variants():
    q, f = fcfg.get_config("quick"), fcfg.get_config("full")
    assert sorted(f.variants) == sorted(FUSION_VARIANTS) and len(q.seeds) >= 3 and len(f.seeds) >= 3
    # quick keeps what the main claims need at the main job's budget: hierarchical vs flat, and the audio-free
    # twin; the symmetric transformer is in full (every variant)
    assert {"havp", "concat", "havp_noaudio"} <= set(q.variants) <= set(FUSION_VARIANTS)
    assert f.train_steps > q.train_steps and f.n_eval >= 50 and f.cabinet.train_steps > q.cabinet.train_steps
    with pytest.raises(ValueError, match="size"):
        fcfg.get_config("medium")


def test_cabinet_task_config_overrides():
    from experiments import fusion

    q, f = fcfg.get_config("quick"), fcfg.get_config("full")
    assert [t.strip() for t in q.tasks.split(",")] == ["pour", "cabinet"]
    cq, cf = fusion.task_config(q, "cabinet"), fusion.task_config(f, "cabinet")
    assert fusion.task_config(q, "pour") is q  # pour = the top level, unchanged (committed full results stay valid)
    assert sorted(cf.variants) == sorted(FUSION_VARIANTS) and len(cf.seeds) >= 3 and cf.n_eval >= 50
    assert {"havp", "concat", "havp_noaudio"} <= set(cq.variants) and len(cq.seeds) >= 3
    assert cq.n_demos == q.cabinet.n_demos and cq.obs_horizon == q.obs_horizon  # override + inherited field
    assert cf.train_steps > cq.train_steps and cq.mi_variants == ["havp"]
    with pytest.raises(ValueError, match="tasks"):
        fusion.task_config(q, "drawer")


def test_mi_rows_set_failed_estimates_aside_and_give_intervals_over_all_seeds():
    """A negative MI estimate is a failed estimator, not a value: it is counted, left out of the mean, and
    makes the MI claim untestable; every seed's bootstrap interval is reported, not seed 0's."""
    from jaxlab.fusion import mi as mi_lib

    rs = lambda *v: [{"mi": x, "lo": x - 0.1, "hi": x + 0.1} for x in v]
    mi = {"havp/audio/infonce": rs(0.5, 0.7, 0.6), "havp/vision/infonce": rs(0.2, -0.05, 0.3)}
    rows = {r["embedding"]: r for r in mi_lib.mi_table_rows(mi)}
    assert rows["audio"]["n_seeds"] == 3 and rows["audio"]["failed_seeds"] == 0
    assert rows["audio"]["mi_mean"] == pytest.approx(0.6) and rows["audio"]["ci95_lo"] < 0.6 < rows["audio"]["ci95_hi"]
    assert rows["vision"]["failed_seeds"] == 1 and rows["vision"]["mi_mean"] == pytest.approx(0.25)
    assert len(rows["vision"]["seed_boot_ci95"]) == 3
    series = [[r["mi"] for r in mi[k]] for k in ("havp/audio/infonce", "havp/vision/infonce")]
    assert mi_lib.failed_seeds(*series) == [1]
    assert "[1]" in mi_lib.failure_reason(*series) and mi_lib.failure_reason(series[0]) is None


@pytest.mark.slow
def test_experiment_runs_end_to_end(tmp_path):
    from experiments import fusion

    c = fcfg.get_config("quick")
    c.variants = ["havp", "concat", "havp_noaudio"]
    c.seeds = [0, 1, 2]
    c.n_demos, c.train_steps, c.chunk, c.n_eval = 4, 10, 5, 2
    c.num_inference_steps = 2
    c.mi_variants, c.mi_episodes, c.mi_steps, c.mi_boot = ["havp"], 16, 20, 2
    cab = c.cabinet
    cab.variants = ["havp", "concat", "havp_noaudio"]
    cab.n_demos, cab.train_steps, cab.chunk, cab.n_eval, cab.mi_episodes = 4, 10, 5, 2, 40
    out = fusion.run(c, str(tmp_path))
    ids = {cl["id"] for cl in out["claims"]}
    assert {"hier_vs_flat_symmetric", "audio_needed", "mi_audio_vs_vision"} <= ids
    assert {"cabinet/hier_vs_flat_symmetric", "cabinet/audio_needed", "cabinet/audio_free_slams_more",
            "cabinet/mi_audio_vs_vision"} <= ids
    assert {r["method"] for r in out["tables"]["cabinet_main"]} == set(cab.variants)
    assert os.path.exists(tmp_path / "cabinet" / "cells" / "havp" / "s0.json")     # a study record
    assert all(cl["verdict"] in ("reproduced", "not reproduced", "mixed") or
               (cl["id"].endswith("mi_audio_vs_vision") and cl["verdict"] == "untestable here")   # failed MI
               for cl in out["claims"])
    assert all(os.path.exists(tmp_path / f) for f in out["figures"])
    # the training budget is picked on validation episodes after every chunk (2 chunks here)
    assert all(len(r["val_success_curve"]) == 2 and r["train_steps_by_val"] in (5, 10)
               for t in ("main", "cabinet_main") for r in out["tables"][t])
