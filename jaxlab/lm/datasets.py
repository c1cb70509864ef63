"""tensorflow-datasets builder over the arithmetic generator (array_record, no downloads, no TF).

    from jaxlab.core.datasets import prepare, to_numpy
    splits = prepare(ArithmeticCoT, data_dir=..., config="chain2")   # {"train", "validation", "test"}
    rows = to_numpy(splits["test"])                                  # ordered by `index`

Every example is the same `Problem` that `jaxlab.lm.tasks.generate` returns for the same
(family, split, seed); keys are `f"{split}-{index}"` (deterministic).
"""

from __future__ import annotations


import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.datasets import LocalCodePath

from jaxlab.lm import tasks

_SIZES = {"train": 20_000, "validation": 1_000, "test": 1_000}
_SPLIT_NAME = {"train": "train", "validation": "val", "test": "test"}


class ArithmeticCoTConfig(tfds.core.BuilderConfig):
    def __init__(self, *, family: str, digits: int | None = None, seed: int = 0, **kw):
        name = family if digits is None and seed == 0 else f"{family}_d{digits}_s{seed}"
        super().__init__(name=name, **kw)
        self.family, self.digits, self.seed = family, digits, seed


class ArithmeticCoT(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """Arithmetic problems with gold chain of thought (one family per builder config)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [ArithmeticCoTConfig(family=f, version="1.0.0") for f in tasks.FAMILIES]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "index": np.int64, "question": tfds.features.Text(),
                "cot": tfds.features.Text(), "answer": np.int64,
                "family": tfds.features.Text(), "group": np.int64, "digits": np.int64}),
            description=__doc__)

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {s: self._generate_examples(s) for s in _SIZES}

    def _generate_examples(self, split):
        c = self.builder_config
        n = _SIZES[split]
        if c.family == "add1":
            n = min(n, 100)
        probs = (tasks.all_add1() if c.family == "add1" else
                 tasks.generate(c.family, n, seed=c.seed, split=_SPLIT_NAME[split],
                                digits=c.digits, unique=split != "train"))
        for i, p in enumerate(probs):
            yield f"{split}-{i}", {"index": i, "question": p.question, "cot": p.steps,
                                   "answer": p.answer, "family": p.family, "group": p.group,
                                   "digits": p.digits}
