"""tensorflow-datasets builder for the synthetic regime-switching macro world (paper B; array_record, no TF).

    from jaxlab.core.datasets import prepare
    from jaxlab.finance.tfds_macro import SyntheticMacroWorldBuilder, world_from_sources
    splits = prepare(SyntheticMacroWorldBuilder, data_dir=..., config="tiny")
    world = world_from_sources(splits)        # equals macro.synthetic_macro_world(seed, ...)

One example per day: {index, date (days since 1970-01-01), ohlcv [S, 5] float64, macro [4] float64,
regime, sigma [S] float64}. Chronological 0.6 / 0.2 / 0.2 splits; keys f"{split}-{day}".
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.datasets import LocalCodePath
from jaxlab.finance import data as data_lib
from jaxlab.finance import macro as macro_lib
from jaxlab.finance.tfds_builders import concat_splits

SPLITS = ("train", "validation", "test")


class MacroWorldConfig(tfds.core.BuilderConfig):
    def __init__(self, *, name: str, seed: int = 0, num_assets: int = 3, num_days: int = 1500,
                 stress_window=None, **kw):
        super().__init__(name=name, **kw)
        self.seed, self.num_assets, self.num_days, self.stress_window = seed, num_assets, num_days, stress_window


class SyntheticMacroWorldBuilder(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """Seeded regime-switching VAR(1) macro world with spread-driven asset volatility."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        MacroWorldConfig(name="quick", num_days=1500, stress_window=(1300, 1400), version="1.0.0"),
        MacroWorldConfig(name="tiny", num_days=200, stress_window=(170, 190), version="1.0.0"),
    ]

    def _info(self):
        S = self.builder_config.num_assets
        t = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.float64, encoding=tfds.features.Encoding.BYTES)
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"index": np.int64, "date": np.int64, "regime": np.int64,
                                                 "ohlcv": t((S, 5)), "macro": t((len(macro_lib.SYN_MACRO_NAMES),)),
                                                 "sigma": t((S,))}),
            description=__doc__)

    def _split_generators(self, dl_manager):
        del dl_manager
        return {s: self._generate_examples(s) for s in SPLITS}

    def _generate_examples(self, split):
        c = self.builder_config
        w = macro_lib.synthetic_macro_world(c.seed, num_days=c.num_days, num_assets=c.num_assets,
                                            stress_window=c.stress_window)
        a, b = data_lib.chronological_split(c.num_days)
        lo, hi = {"train": (0, a), "validation": (a, b), "test": (b, c.num_days)}[split]
        for t in range(lo, hi):
            yield f"{split}-{t}", {"index": t, "date": int(w.panel.dates[t].astype(np.int64)),
                                   "regime": int(w.regimes[t]), "ohlcv": w.panel.ohlcv[t], "macro": w.macro[t],
                                   "sigma": w.sigma[t]}


def world_from_sources(sources: dict, splits=SPLITS) -> macro_lib.MacroWorld:
    """Concatenates the splits back into a MacroWorld (stress window not stored: (0, 0))."""
    days = concat_splits(sources, splits)
    ohlcv = days["ohlcv"]
    panel = data_lib.make_panel(days["date"].astype("datetime64[D]"), ohlcv,
                                [f"macro_syn{i}" for i in range(ohlcv.shape[1])], {"source": "tfds SyntheticMacroWorld"})
    return macro_lib.MacroWorld(panel, days["macro"], days["regime"], days["sigma"], (0, 0))
