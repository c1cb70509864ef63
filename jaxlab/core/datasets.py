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


class DatasetCacheError(ValueError):
    """A built data set in the cache is missing files or does not read back (one line names the folder)."""


def _cache_error(folder: str, e: BaseException) -> DatasetCacheError:
    reason = " ".join(str(e).split())[:200]
    return DatasetCacheError(f"dataset cache {folder} is corrupt or incomplete ({type(e).__name__}: {reason}); "
                             f"delete that folder and rerun to rebuild it")


def prepare(builder_cls, data_dir: str | None = None, **builder_kwargs: Any) -> dict[str, Any]:
    """Builds `builder_cls` (array_record) into `data_dir` once and returns {split: data source}.

    Raises DatasetCacheError (a ValueError naming the folder) when an earlier build is missing files or its
    first and last records do not read back; `to_numpy` raises the same when a record in between is corrupt.
    Disk full or an unwritable `data_dir` while building raise OSError naming the path.
    """
    builder = builder_cls(data_dir=data_dir or default_data_dir(), file_format="array_record", **builder_kwargs)
    builder.download_and_prepare()
    try:
        sources = dict(builder.as_data_source())
        for source in sources.values():
            if len(source):
                source[0], source[len(source) - 1]
    except (RuntimeError, OSError, ValueError) as e:
        raise _cache_error(str(builder.data_dir), e) from None
    return sources


def to_numpy(source: Any, order_key: str = "index") -> dict[str, np.ndarray]:
    """Stacks a whole split into {feature: array [N, ...]}, sorted by `order_key` when present."""
    n = len(source)
    if n == 0:
        raise ValueError("source: the split is empty")
    try:
        rows = [source[i] for i in range(n)]
    except (RuntimeError, OSError) as e:
        info = getattr(source, "dataset_info", None)
        raise _cache_error(str(getattr(info, "data_dir", "?")), e) from None
    out = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
    if order_key in out:
        order = np.argsort(out[order_key], kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out
