"""Metrics as JSONL, a progress reporter, and atomic JSON writing."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np


def to_builtin(x: Any) -> Any:
    """Converts jax/numpy scalars and arrays (recursively) into JSON-serialisable Python values."""
    if isinstance(x, dict):
        return {str(k): to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_builtin(v) for v in x]
    if hasattr(x, "__array__") and not isinstance(x, (str, bytes)):
        arr = np.asarray(x)
        if arr.ndim == 0:
            return to_builtin(arr.item())
        return [to_builtin(v) for v in arr.tolist()]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else (1e308 if x > 0 else -1e308)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return to_builtin(float(x))
    return x


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 1) -> None:
    """Writes `obj` as JSON to `path` through a temporary file in the same directory and `os.replace`.

    A crash mid-write leaves the previous file intact; readers never see a half-written file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_builtin(obj), f, indent=indent, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes text through a temporary file and `os.replace` (same guarantees as write_json_atomic)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


class MetricsWriter:
    """Appends one JSON object per call to a JSONL file: {"step": int, **scalars}; flushed every line.

    Every numeric value also goes to TensorBoard event files in `<dir of path>/tb/` (tensorboardX), one
    schema for every experiment: the tag is `<seed/cell/method prefix>/<key>`, the step is `step`.
    Opening an existing file drops a last line that was cut mid-write. After a resume from step S,
    `truncate_after(S, seed=0)` removes that run's records past S, so no step appears twice.
    Thread-safe: an experiment may run independent parts in threads (fusion runs its tasks concurrently).
    """

    PREFIX_KEYS = ("cell", "method", "arm", "task", "seed")

    def __init__(self, path: str | os.PathLike, *, tensorboard: bool = True):
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        if os.path.exists(path):
            records, cut = _read_records(path)
            if cut:
                self._rewrite(records)
        self._f = open(path, "a")
        self._lock = threading.Lock()
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
                self._tb = SummaryWriter(os.path.join(os.path.dirname(os.path.abspath(path)), "tb"))
            except ImportError:  # the optional dependency is missing: JSONL only
                self._tb = None

    def _rewrite(self, records: list[dict]) -> None:
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def write(self, step: int, **scalars: Any) -> None:
        record = {"step": int(step), **to_builtin(scalars)}
        with self._lock:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()
            if self._tb is not None:
                prefix = "/".join(f"{k}{record[k]}" if k == "seed" else str(record[k])
                                  for k in self.PREFIX_KEYS if k in record)
                for k, v in record.items():
                    if k != "step" and k not in self.PREFIX_KEYS and isinstance(v, (int, float)) \
                            and not isinstance(v, bool):
                        self._tb.add_scalar(f"{prefix}/{k}" if prefix else k, v, int(step))

    def truncate_after(self, step: int, **match: Any) -> int:
        """Drops records with `step` > step whose fields equal `match` (e.g. seed=0); returns how many."""
        with self._lock:
            self._f.flush()
            records, _ = _read_records(self.path)
            keep = [r for r in records
                    if not (r.get("step", -1) > step and all(r.get(k) == v for k, v in match.items()))]
            if len(keep) != len(records):
                self._f.close()
                self._rewrite(keep)
                self._f = open(self.path, "a")
            return len(records) - len(keep)

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()
            if self._tb is not None:
                self._tb.close()
                self._tb = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_records(path: str | os.PathLike) -> tuple[list[dict], bool]:
    """(records, whether a cut last line was dropped); a corrupt line elsewhere is a ValueError."""
    with open(path) as f:
        lines = f.read().split("\n")
    records, cut = [], False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1 or all(not rest.strip() for rest in lines[i + 1:]):
                cut = True                    # the last line, cut mid-write by a kill
                continue
            raise ValueError(f"{os.fspath(path)}: line {i + 1} is not JSON") from None
    return records, cut


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics file; a last line cut mid-write is dropped."""
    return _read_records(path)[0]


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress with rate and ETA: a redrawn bar on a terminal, a plain line every `every_s` otherwise.

    Usage: `p = Progress(total=100, desc="train"); p.update(1, loss=0.3); p.close()`.
    """

    def __init__(self, total: int, desc: str = "", *, every_s: float = 10.0, stream=None):
        self.total = max(int(total), 1)
        self.desc = desc
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.n = 0
        self.start = time.perf_counter()
        self._last = -math.inf
        self.lines: list[str] = []

    def line(self, postfix: dict | None = None) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else math.inf
        post = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in (postfix or {}).items())
        frac = self.n / self.total
        bar = ("[" + "#" * int(20 * frac) + "." * (20 - int(20 * frac)) + "] ") if self.tty else ""
        return (f"{self.desc}: {bar}{self.n}/{self.total} ({100 * frac:.0f}%) "
                f"{rate:.2f} it/s elapsed {_fmt_time(elapsed)} ETA {_fmt_time(eta)} {post}").rstrip()

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n = min(self.n + n, self.total)
        now = time.perf_counter()
        if self.tty or now - self._last >= self.every_s or self.n == self.total:
            self._last = now
            text = self.line(to_builtin(postfix))
            self.lines.append(text)
            if self.tty:
                self.stream.write("\r" + text + "\x1b[K")
                if self.n == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.n < self.total:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
