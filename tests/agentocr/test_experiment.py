"""The experiment's configs convert to typed parameters and its study cells are well formed (no training)."""

import re

import pytest

import experiments.agentocr as X
from experiments.configs.agentocr import get_config


@pytest.mark.parametrize("size", ["quick", "full"])
def test_configs_convert_and_cells_are_valid(size):
    config = get_config(size)
    for v in config.variants:
        ep, rs, cfgs, bc = X.typed(config, v)
        assert ep.variant == v and set(cfgs) == {"text", "ocr"} and rs.width == config.width
        cells = X.cells_for(config, v)
        ids = [c.id for c in cells]
        assert len(set(ids)) == len(ids) and all(f"{v}.{a}" in ids for a in X.ARMS)
        assert all(re.fullmatch(r"[A-Za-z0-9_.,=+-]+", i) for i in ids)   # core.study's folder-name rule
    assert len(config.seeds) >= (3 if size == "full" else 2)
    with pytest.raises(ValueError, match="size"):
        get_config("huge")


def test_tuning_grid_selection_and_chosen_hparams_reach_the_cells():
    config = get_config("full")
    tc = X.tuning_cells(config, "shelf")
    arms = {c.config["arm"] for c in tc}
    assert arms == {"text_grpo", "ocr_grpo_c1", "agentocr_k5"}          # K = 1 waits for K = 5's lambda
    n = len(config.rl_lr_grid)
    assert sum(c.config["arm"] == "agentocr_k5" for c in tc) == n * len(config.lam_grid)
    assert all(c.config["split"] == "val" for c in tc) and len({c.id for c in tc}) == len(tc)
    k1 = [c for c in X.tuning_cells(config, "shelf", lam=0.1) if c.config["arm"] == "agentocr_k1"]
    assert len(k1) == n and all(c.config["lam"] == 0.1 and c.config["every_k"] == 1 for c in k1)
    # selection: highest validation success, ties -> fewer tokens, then grid order
    res = {c.id: {100: {"success": 0.5, "tokens_mean": 40.0}} for c in tc}
    k5 = [c for c in tc if c.config["arm"] == "agentocr_k5"]
    res[k5[-1].id][100]["tokens_mean"] = 30.0
    assert X.choose(res, tc, "agentocr_k5", 100) == k5[-1].config
    res[k5[0].id][100]["success"] = 0.6
    assert X.choose(res, tc, "agentocr_k5", 100) == k5[0].config
    text = [c for c in tc if c.config["arm"] == "text_grpo"]
    assert X.choose(res, tc, "text_grpo", 100) == text[0].config
    chosen = {a: {"lr": 5e-4, "lam": 0.1} for a in X.GRPO_ARMS}
    cells = {c.id: c.config for c in X.cells_for(config, "shelf", chosen)}
    assert cells["shelf.agentocr_k1"]["lam"] == 0.1 and cells["shelf.text_grpo"]["lam"] == 0.0
    assert all(cells[f"shelf.{a}"]["lr"] == 5e-4 for a in X.GRPO_ARMS)
    # test and validation tasks are disjoint from each other and across RL seeds
    val = set(X.eval_tasks(config, None, "val"))
    tests = [set(X.eval_tasks(config, s, "test")) for s in config.seeds]
    assert all(not (val & t) for t in tests) and not (tests[0] & tests[1])
    assert int(config.val_rl_seed) not in config.seeds
