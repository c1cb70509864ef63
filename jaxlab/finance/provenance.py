"""Provenance: per-step JSONL records that let a run's manipulated batches be replayed exactly.

A record holds the step, epoch, PRNG key data, proportion alpha, the batch's mean op probabilities,
the batch indices, the chosen pair q, the strength lam_q, the mask, the sampled mix targets b, a SHA-256
of the planner parameters, and the SHA-256 digest of the manipulated batch (x~, y~). `replay` feeds the
logged inputs back into the same pure augmentation function and compares digests.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterable

import jax
import numpy as np


def array_digest(*arrays) -> str:
    """SHA-256 over dtype, shape and bytes of each array."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def params_digest(params) -> str:
    """SHA-256 of a parameter pytree (leaves in tree order)."""
    return array_digest(*jax.tree_util.tree_leaves(params))


def key_data(key) -> list:
    """Raw uint32 words of a PRNG key (typed or legacy)."""
    try:
        data = jax.random.key_data(key)
    except TypeError:
        data = key
    return [int(v) for v in np.asarray(data).reshape(-1)]


def key_from_data(words) -> jax.Array:
    """Inverse of key_data for legacy uint32 keys."""
    return jax.numpy.asarray(np.asarray(words, np.uint32))


def make_record(*, step, epoch, key, alpha, p_bq, idx_b, q_b, lam_b, mask_b, b_b, phi, x_t, y_t, method) -> dict:
    """One JSON-serialisable provenance record (floats are float32 values, which round-trip exactly)."""
    return {"step": int(step), "epoch": int(epoch), "method": method, "key": key_data(key),
            "alpha": float(alpha), "p_mean": [float(v) for v in np.asarray(p_bq).mean(0)],
            "idx": [int(v) for v in np.asarray(idx_b)], "q": [int(v) for v in np.asarray(q_b)],
            "lam": [float(v) for v in np.asarray(lam_b, np.float32)],
            "mask": [bool(v) for v in np.asarray(mask_b)], "b": [int(v) for v in np.asarray(b_b)],
            "phi_sha256": params_digest(phi), "digest": array_digest(x_t, y_t)}


class ProvenanceLog:
    """Append-only JSONL writer (context manager)."""

    def __init__(self, path: str):
        self.path = path
        self._f = open(path, "w")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_log(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def replay_record(record: dict, augment_fn: Callable, data_x, data_y, data_asset, data_day) -> tuple[str, np.ndarray]:
    """Regenerates one step's batch from the record. augment_fn(x, y, asset, day, q, lam, mask, key) ->
    (x_t, y_t, b). Returns (digest, b)."""
    idx = np.asarray(record["idx"], np.int64)
    x_t, y_t, b = augment_fn(data_x[idx], data_y[idx], data_asset[idx], data_day[idx],
                             np.asarray(record["q"], np.int32), np.asarray(record["lam"], np.float32),
                             np.asarray(record["mask"], bool), key_from_data(record["key"]))
    return array_digest(x_t, y_t), np.asarray(b)


def replay(records: Iterable[dict], augment_fn: Callable, data_x, data_y, data_asset, data_day) -> dict:
    """Replays every record; returns {'steps', 'matched', 'mismatched_steps'}."""
    n, bad = 0, []
    for r in records:
        n += 1
        d, b = replay_record(r, augment_fn, data_x, data_y, data_asset, data_day)
        if d != r["digest"] or [int(v) for v in b] != r["b"]:
            bad.append(r["step"])
    return {"steps": n, "matched": n - len(bad), "mismatched_steps": bad}
