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


def test_writer_keeps_every_record_when_threads_write_at_once(tmp_path):
    """MetricsWriter is shared by threads (fusion runs its tasks concurrently): every record of every thread is
    one whole JSON line, none lost, and truncate_after (which rewrites the file) from another thread at the same
    time drops only what it should."""
    import threading
    path = tmp_path / "m.jsonl"
    with metrics.MetricsWriter(path) as w:
        for i in range(50):
            w.write(i + 1, thread=99)

        def writer(t):
            for i in range(300):
                w.write(i, thread=t, value=float(i) * 0.5, pad="x" * (50 * t))
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        removed = sum(w.truncate_after(50 - k, thread=99) for k in range(1, 51))   # 50 rewrites during the writes
        for th in threads:
            th.join()
    rows = metrics.read_jsonl(path)
    assert removed == 50 and len(rows) == 1200 and not [r for r in rows if r["thread"] == 99]
    for t in range(4):
        mine = [r for r in rows if r["thread"] == t]
        assert [r["step"] for r in mine] == list(range(300)) and all(r["pad"] == "x" * (50 * t) for r in mine)
