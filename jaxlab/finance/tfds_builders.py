"""tensorflow-datasets builder for the synthetic regime universe (array_record, no downloads, no TF).

    from jaxlab.core.datasets import prepare
    from jaxlab.finance.tfds_builders import SyntheticUniverse, panel_from_sources
    splits = prepare(SyntheticUniverse, data_dir=..., config="quick")   # {"train", "validation", "test"}
    panel = panel_from_sources(splits)                                 # the same Panel as synthetic_universe

One example per trading day: {index (day), date (days since 1970-01-01), ohlcv [S, 5] float64, regime,
vol_level}. Splits are the chronological 0.6 / 0.2 / 0.2 split of the days (`data.chronological_split`);
keys are `f"{split}-{day}"` (deterministic). Every example equals `data.synthetic_universe(seed, ...)`.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.datasets import LocalCodePath
from jaxlab.finance import data as data_lib

SPLITS = ("train", "validation", "test")


class SyntheticUniverseConfig(tfds.core.BuilderConfig):
    def __init__(self, *, name: str, seed: int = 0, num_assets: int = 20, num_days: int = 700, **kw):
        super().__init__(name=name, **kw)
        self.seed, self.num_assets, self.num_days = seed, num_assets, num_days


class SyntheticUniverse(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """Seeded Markov-regime universe with planted cointegrated pairs and valid OHLC bars."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        SyntheticUniverseConfig(name="quick", num_assets=20, num_days=700, version="1.0.0"),
        SyntheticUniverseConfig(name="full", num_assets=20, num_days=1500, version="1.0.0"),
        SyntheticUniverseConfig(name="tiny", num_assets=4, num_days=120, version="1.0.0"),
    ]

    def _info(self):
        S = self.builder_config.num_assets
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "index": np.int64, "date": np.int64, "regime": np.int64, "vol_level": np.float64,
                "ohlcv": tfds.features.Tensor(shape=(S, 5), dtype=np.float64,
                                               encoding=tfds.features.Encoding.BYTES)}),
            description=__doc__)

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {s: self._generate_examples(s) for s in SPLITS}

    def _generate_examples(self, split):
        c = self.builder_config
        panel, truth = data_lib.synthetic_universe(c.seed, num_assets=c.num_assets, num_days=c.num_days)
        a, b = data_lib.chronological_split(c.num_days)
        lo, hi = {"train": (0, a), "validation": (a, b), "test": (b, c.num_days)}[split]
        for t in range(lo, hi):
            yield f"{split}-{t}", {"index": t, "date": int(panel.dates[t].astype(np.int64)),
                                   "regime": int(truth.regimes[t]), "vol_level": float(truth.vol_level[t]),
                                   "ohlcv": panel.ohlcv[t]}


def concat_splits(sources: dict, splits=SPLITS) -> dict[str, np.ndarray]:
    """Every feature of the given day-indexed splits, concatenated in order; raises ValueError when
    the `index` feature is not consecutive across them (a gap or an overlap)."""
    from jaxlab.core.datasets import to_numpy
    parts = [to_numpy(sources[s]) for s in splits]
    idx = np.concatenate([p["index"] for p in parts])
    if np.any(np.diff(idx) != 1):
        raise ValueError(f"splits: expected consecutive days across {list(splits)}, got a gap or overlap")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def panel_from_sources(sources: dict, splits=SPLITS) -> data_lib.Panel:
    """Concatenates the given splits (in chronological order) back into a validated Panel."""
    days = concat_splits(sources, splits)
    ohlcv = days["ohlcv"]
    dates = days["date"].astype("datetime64[D]")
    names = [f"syn{i}" for i in range(ohlcv.shape[1])]
    return data_lib.make_panel(dates, ohlcv, names, {"source": "tfds SyntheticUniverse",
                                                     "regimes": days["regime"]})
