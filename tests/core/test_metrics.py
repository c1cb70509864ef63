import io
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import metrics


def test_jsonl_writer_round_trip(tmp_path):
    path = tmp_path / "m.jsonl"
    with metrics.MetricsWriter(path) as w:
        w.write(1, loss=jnp.float32(0.5), acc=np.float64(0.25), vec=jnp.arange(2))
        w.write(2, loss=0.25)
    rows = metrics.read_jsonl(path)
    assert rows == [{"step": 1, "loss": 0.5, "acc": 0.25, "vec": [0, 1]}, {"step": 2, "loss": 0.25}]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "summary.json"
    metrics.write_json_atomic(path, {"a": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        metrics.write_json_atomic(path, {"a": Unserialisable()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp_")] == []


def test_progress_lines_have_rate_and_eta():
    stream = io.StringIO()  # not a TTY: periodic lines
    p = metrics.Progress(total=4, desc="train", every_s=0.0, stream=stream)
    for _ in range(4):
        p.update(1, loss=0.5)
    p.close()
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("train: 4/4 (100%)") and "it/s" in lines[-1] and "ETA" in lines[-1]
    assert "loss=0.5" in lines[0] and "\r" not in stream.getvalue()
