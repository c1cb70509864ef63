"""The tensorflow-datasets builder reproduces the synthetic universe exactly, split chronologically."""
import numpy as np
import pytest


def test_synthetic_universe_builder_round_trip(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    from jaxlab.core.datasets import prepare, to_numpy
    from jaxlab.finance import data
    from jaxlab.finance.tfds_builders import SyntheticUniverse, panel_from_sources
    src = prepare(SyntheticUniverse, data_dir=str(tmp_path), config="tiny")
    assert set(src) == {"train", "validation", "test"}
    a, b = data.chronological_split(120)
    assert [len(src[s]) for s in ("train", "validation", "test")] == [a, b - a, 120 - b]
    panel = panel_from_sources(src)
    ref, truth = data.synthetic_universe(0, num_assets=4, num_days=120)
    np.testing.assert_array_equal(panel.ohlcv, ref.ohlcv)
    np.testing.assert_array_equal(panel.dates, ref.dates)
    np.testing.assert_array_equal(panel.meta["regimes"], truth.regimes)
    te = to_numpy(src["test"])
    assert te["index"].min() == b and np.all(np.diff(te["index"]) == 1)     # chronological, ordered
    with pytest.raises(ValueError, match="splits"):
        panel_from_sources(src, splits=("train", "test"))                   # a gap is refused
