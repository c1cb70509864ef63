"""Dataset cache errors: a built data set with a missing or corrupt file gives one error naming the folder."""

import glob
import os

import numpy as np
import pytest

from jaxlab.core import datasets
from jaxlab.l2d import data as l2d_data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    sources = datasets.prepare(l2d_data.DigitsL2D, data_dir=root)
    return root, {k: datasets.to_numpy(v) for k, v in sources.items()}


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def _train_file(root):
    return glob.glob(os.path.join(root, "**", "*train.array_record*"), recursive=True)[0]


def test_rebuild_reads_back_the_same_arrays(built, tmp_path):
    root, arrays = built
    again = {k: datasets.to_numpy(v) for k, v in datasets.prepare(l2d_data.DigitsL2D, data_dir=root).items()}
    for split in arrays:
        np.testing.assert_array_equal(arrays[split]["x"], again[split]["x"])


@pytest.mark.parametrize("kind", ["missing", "truncated", "corrupt"])
def test_broken_cache_names_the_folder(built, tmp_path, kind):
    root = _copy(built[0], str(tmp_path / "data"))
    path = _train_file(root)
    if kind == "missing":
        os.remove(path)
    elif kind == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(200)
    else:
        with open(path, "r+b") as fh:
            fh.seek(100)
            fh.write(b"\x00garbage" * 50)
    with pytest.raises(datasets.DatasetCacheError, match=r"digits_l2_d/1\.0\.0 is corrupt or incomplete.*delete"):
        {k: datasets.to_numpy(v) for k, v in datasets.prepare(l2d_data.DigitsL2D, data_dir=root).items()}
