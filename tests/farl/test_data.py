"""The tfds builder of FARL's offline demonstrations stores exactly the in-memory arrays."""
import numpy as np
import pytest

from jaxlab.core.datasets import prepare, to_numpy
from jaxlab.farl.data import SPLITS, FarlDemos, demo_splits


def test_builder_matches_in_memory_demos(tmp_path):
    src = prepare(FarlDemos, data_dir=str(tmp_path), config="bounded_push_tiny")
    ref = demo_splits("bounded_push", num_envs=4, steps=20)
    assert set(src) == set(SPLITS)
    for split in SPLITS:
        got = to_numpy(src[split])
        assert len(got["index"]) == 4 * 20
        for k, v in ref[split].items():
            np.testing.assert_array_equal(got[k], v, err_msg=f"{split}/{k}")
    # the three kinds are what they claim: retreat steps only in the recovery split
    assert ref["task"]["rec"].sum() == 0 and ref["failure"]["rec"].sum() == 0 and ref["recovery"]["rec"].sum() > 0


def test_demo_splits_unknown_task():
    with pytest.raises(ValueError, match="task"):
        demo_splits("juggle")
