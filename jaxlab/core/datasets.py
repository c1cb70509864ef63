"""tensorflow-datasets builders without TensorFlow: build to array_record, read as a data source.

Synthetic data sets are `tfds.core.GeneratorBasedBuilder`s in an importable module, with deterministic
keys and no downloads. In `_info`, use `tfds.core.DatasetInfo(builder=self, features=...)`.
The array_record order follows the hashed key, so store an integer `index` feature and use
`to_numpy` to get the split back in generation order.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds


class LocalCodePath:
    """Mixin for builders that live inside a package (put it first in the bases).

    tfds' default `code_path` goes through `etils.epath.resource_path`, which imports
    `importlib_resources` (not a dependency we install); the file of the class is all tfds needs.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath
        return epath.Path(inspect.getfile(cls))


def default_data_dir() -> str:
    return os.environ.get("JAXLAB_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxlab", "tfds"))


def prepare(builder_cls, data_dir: str | None = None, **builder_kwargs: Any) -> dict[str, Any]:
    """Builds `builder_cls` (array_record) into `data_dir` once and returns {split: data source}."""
    builder = builder_cls(data_dir=data_dir or default_data_dir(), file_format="array_record", **builder_kwargs)
    builder.download_and_prepare()
    return dict(builder.as_data_source())


def to_numpy(source: Any, order_key: str = "index") -> dict[str, np.ndarray]:
    """Stacks a whole split into {feature: array [N, ...]}, sorted by `order_key` when present."""
    n = len(source)
    if n == 0:
        raise ValueError("source: the split is empty")
    rows = [source[i] for i in range(n)]
    out = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
    if order_key in out:
        order = np.argsort(out[order_key], kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out
