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
