"""Experiment config and (slow) end-to-end smoke runs of the experiment and the colab."""

import os

import pytest

from experiments.configs import fusion as fcfg
from jaxlab.fusion.encoders import FUSION_VARIANTS


def test_config_sizes_and_variants():
    q, f = fcfg.get_config("quick"), fcfg.get_config("full")
    assert sorted(f.variants) == sorted(FUSION_VARIANTS) and len(q.seeds) >= 3 and len(f.seeds) >= 3
    # quick keeps what the main claims need: hierarchical vs flat vs symmetric, and audio-free twins
    assert {"havp", "concat", "transformer", "havp_noaudio"} <= set(q.variants) <= set(FUSION_VARIANTS)
    assert f.train_steps > q.train_steps and f.n_eval >= 50
    with pytest.raises(ValueError, match="size"):
        fcfg.get_config("medium")


@pytest.mark.slow
def test_experiment_runs_end_to_end(tmp_path):
    from experiments import fusion

    c = fcfg.get_config("quick")
    c.variants = ["havp", "concat", "havp_noaudio"]
    c.seeds = [0, 1, 2]
    c.n_demos, c.train_steps, c.chunk, c.n_eval = 4, 10, 5, 2
    c.num_inference_steps = 2
    c.mi_variants, c.mi_episodes, c.mi_steps, c.mi_boot = ["havp"], 16, 20, 2
    out = fusion.run(c, str(tmp_path))
    ids = {cl["id"] for cl in out["claims"]}
    assert {"hier_vs_flat_symmetric", "audio_needed", "mi_audio_vs_vision"} <= ids
    assert all(cl["verdict"] in ("reproduced", "not reproduced", "mixed") for cl in out["claims"])
    assert all(os.path.exists(tmp_path / f) for f in out["figures"])
    # the training budget is picked on validation episodes after every chunk (2 chunks here)
    assert all(len(r["val_success_curve"]) == 2 and r["train_steps_by_val"] in (5, 10) for r in out["tables"]["main"])
