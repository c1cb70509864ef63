"""Grids of cells with records stamped by the hash of the config that produced them.

    cells = study.grid({"lr": 0.1, "steps": 500}, method=("picce", "ce"), J=(2, 8))
    results = study.run_study(cells, run_cell, workdir=workdir, seeds=(0, 1, 2))
    results["method=picce,J=8"][0]      # the record of seed 0: whatever run_cell returned

* `run_cell(cell, seed) -> dict` (JSON-able: numbers, strings, lists, nested dicts; numpy/jax values
  are converted). With `batch_seeds=True` it is `run_cell(cell, seeds) -> [dict per seed]` instead,
  for experiments that `vmap` the seed axis.
* Each (cell, seed) record is written atomically to `workdir/cells/<cell id>/s<seed>.json` with the
  hash of `cell.config` and the seed. It is reused only when that hash matches.
* **A changed config recomputes.** When a record exists with another hash (a hyperparameter changed),
  the cell is computed again and the record replaced; one line says so. A finished cell is never
  reused under a config that did not produce it, and nothing has to be deleted by hand.
* A killed study resumes: the finished records are reused, the rest computed, and the summary built
  from the records equals the one of an uninterrupted run.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from jaxlab.core import metrics as metrics_lib
from jaxlab.core.config import config_hash

_ID_OK = re.compile(r"^[A-Za-z0-9_.,=+\-]+$")


class Cell(NamedTuple):
    """One point of a study grid. `config` holds everything (JSON-able) that determines its result."""
    id: str
    config: dict


def grid(base: dict, **axes: Sequence[Any]) -> list[Cell]:
    """The cartesian product of `axes` over a shared `base` config; ids read "k1=v1,k2=v2".

    Args:
      base: settings shared by every cell (the experiment's config as a dict, without the seeds).
      axes: name -> values; each cell's config is `{**base, name: value, ...}`.
    """
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"grid axis {name!r}: expected a sequence of values, got {values!r}")
        if len(list(values)) == 0:
            raise ValueError(f"grid axis {name!r}: expected at least one value")
    names = list(axes)
    cells = []
    for combo in itertools.product(*(list(axes[n]) for n in names)):
        point = dict(zip(names, combo))
        cid = ",".join(f"{k}={v}" for k, v in point.items()) or "all"
        cells.append(Cell(cid, {**base, **point}))
    return cells


def record_path(workdir: str, cell_id: str, seed: int) -> str:
    return os.path.join(workdir, "cells", cell_id, f"s{int(seed)}.json")


def load_record(workdir: str, cell: Cell, seed: int) -> dict | None:
    """The stored result of (cell, seed) when its config hash matches `cell.config`, else None.

    A record that is unreadable (cut mid-write by an older tool, edited by hand) counts as absent.
    """
    path = record_path(workdir, cell.id, seed)
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if rec.get("config_hash") != config_hash(cell.config) or rec.get("seed") != int(seed):
        return None
    return rec.get("result")


def _check(cells: Sequence[Cell], seeds: Sequence[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected unique seeds, got {seeds}")
    if not cells:
        raise ValueError("cells: expected at least one cell")
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"cells: duplicate cell ids {dup[:3]}")
    for c in cells:
        if not _ID_OK.match(c.id):
            raise ValueError(f"cell id {c.id!r}: use letters, digits and _ . , = + - only (it names a folder)")
    return seeds


def _save(workdir: str, cell: Cell, seed: int, result: Any) -> dict:
    rec = {"cell": cell.id, "seed": int(seed), "config_hash": config_hash(cell.config),
           "config": cell.config, "result": metrics_lib.to_builtin(result)}
    metrics_lib.write_json_atomic(record_path(workdir, cell.id, seed), rec)
    return rec["result"]


def run_study(cells: Sequence[Cell], run_cell: Callable, *, workdir: str, seeds: Sequence[int],
              batch_seeds: bool = False, progress: bool = True, log=None) -> dict[str, dict[int, Any]]:
    """Runs every (cell, seed) that has no matching record; returns {cell id: {seed: result}}.

    Args:
      cells: the grid (`grid(...)` or hand-made `Cell`s with unique ids).
      run_cell: `run_cell(cell, seed) -> dict`, or `run_cell(cell, seeds) -> [dict]` with `batch_seeds`.
      workdir: records go to `workdir/cells/`.
      seeds: unique ints.
      batch_seeds: call run_cell once per cell with the seeds still missing.
      progress: print progress with rate and ETA.
      log: where the "config changed" lines go (default stderr).
    Results are returned as stored (JSON round trip), so a fresh and a resumed run see equal values.
    """
    seeds = _check(cells, seeds)
    log = log or sys.stderr
    bar = metrics_lib.Progress(len(cells) * len(seeds), desc="study") if progress else None
    out: dict[str, dict[int, Any]] = {}
    for cell in cells:
        out[cell.id] = {}
        missing = []
        for seed in seeds:
            rec = load_record(workdir, cell, seed)
            if rec is None:
                if os.path.exists(record_path(workdir, cell.id, seed)):
                    print(f"study: cell {cell.id} seed {seed}: config changed since its record "
                          f"(now {config_hash(cell.config)}); recomputing", file=log)
                missing.append(seed)
            else:
                out[cell.id][seed] = rec
                if bar is not None:
                    bar.update(1)
        if not missing:
            continue
        if batch_seeds:
            results = list(run_cell(cell, list(missing)))
            if len(results) != len(missing):
                raise ValueError(f"run_cell({cell.id}): returned {len(results)} results for {len(missing)} seeds")
            pairs = zip(missing, results)
        else:
            pairs = ((seed, run_cell(cell, seed)) for seed in missing)
        for seed, result in pairs:
            _save(workdir, cell, seed, result)
            out[cell.id][seed] = load_record(workdir, cell, seed)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {cid: {s: res[s] for s in seeds} for cid, res in out.items()}
