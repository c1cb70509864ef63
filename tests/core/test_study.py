"""core.study: records stamped with the config hash; a changed config never reuses an old cell."""

import json
import os

import pytest

from jaxlab.core import study


def _cells(lr):
    return study.grid({"lr": lr, "steps": 3}, method=("a", "b"), J=(2, 8))


def _run_cell_counting(calls):
    def run_cell(cell, seed):
        calls.append((cell.id, seed))
        c = cell.config
        return {"score": c["lr"] * c["J"] + seed + (0.5 if c["method"] == "a" else 0.0), "curve": [seed, c["J"]]}
    return run_cell


def _summary(results):
    return {cid: [r["score"] for r in per.values()] for cid, per in sorted(results.items())}


def test_grid_ids_and_configs():
    cells = _cells(0.1)
    assert [c.id for c in cells] == ["method=a,J=2", "method=a,J=8", "method=b,J=2", "method=b,J=8"]
    assert cells[1].config == {"lr": 0.1, "steps": 3, "method": "a", "J": 8}


def test_changed_hyperparameter_never_reuses_an_old_cell(tmp_path, capsys):
    calls = []
    first = study.run_study(_cells(0.1), _run_cell_counting(calls), workdir=str(tmp_path), seeds=(0, 1),
                            progress=False)
    assert len(calls) == 8
    again = study.run_study(_cells(0.1), _run_cell_counting(calls), workdir=str(tmp_path), seeds=(0, 1),
                            progress=False)
    assert len(calls) == 8 and again == first                     # same config: every record reused
    changed = study.run_study(_cells(0.5), _run_cell_counting(calls), workdir=str(tmp_path), seeds=(0, 1),
                              progress=False)
    assert len(calls) == 16                                       # every cell recomputed under lr 0.5
    assert changed["method=a,J=8"][0]["score"] == pytest.approx(0.5 * 8 + 0.5)
    assert "config changed" in capsys.readouterr().err
    rec = json.load(open(study.record_path(str(tmp_path), "method=a,J=8", 0)))
    assert rec["config"]["lr"] == 0.5 and rec["seed"] == 0 and len(rec["config_hash"]) == 12
    # A new seed only computes that seed.
    study.run_study(_cells(0.5), _run_cell_counting(calls), workdir=str(tmp_path), seeds=(0, 1, 2), progress=False)
    assert len(calls) == 20 and {s for _, s in calls[16:]} == {2}


def test_killed_study_resumes_to_the_same_summary(tmp_path):
    clean = study.run_study(_cells(0.2), _run_cell_counting([]), workdir=str(tmp_path / "clean"), seeds=(0, 1, 2),
                            progress=False)

    class Killed(Exception):
        pass

    calls = []

    def dying(cell, seed):
        if len(calls) == 5:
            raise Killed()
        return _run_cell_counting(calls)(cell, seed)

    with pytest.raises(Killed):
        study.run_study(_cells(0.2), dying, workdir=str(tmp_path / "run"), seeds=(0, 1, 2), progress=False)
    # A record cut mid-write (by another tool) counts as absent, never as a result.
    victim = study.record_path(str(tmp_path / "run"), "method=a,J=2", 0)
    with open(victim, "w") as f:
        f.write('{"cell": "method=a,J=2", "seed": 0, "config_h')
    more = []
    resumed = study.run_study(_cells(0.2), _run_cell_counting(more), workdir=str(tmp_path / "run"), seeds=(0, 1, 2),
                              progress=False)
    assert len(more) == 12 - 5 + 1
    assert _summary(resumed) == _summary(clean) and resumed == clean


def test_batch_seeds_and_bad_input(tmp_path):
    def run_batch(cell, seeds):
        return [{"s": s * cell.config["J"]} for s in seeds]

    res = study.run_study(_cells(0.1), run_batch, workdir=str(tmp_path), seeds=[3, 4], batch_seeds=True,
                          progress=False)
    assert res["method=b,J=8"] == {3: {"s": 24}, 4: {"s": 32}}
    with pytest.raises(ValueError, match="unique"):
        study.run_study(_cells(0.1), run_batch, workdir=str(tmp_path), seeds=[1, 1], progress=False)
    with pytest.raises(ValueError, match="at least one seed"):
        study.run_study(_cells(0.1), run_batch, workdir=str(tmp_path), seeds=[], progress=False)
    with pytest.raises(ValueError, match="duplicate"):
        study.run_study(_cells(0.1) * 2, run_batch, workdir=str(tmp_path), seeds=[0], progress=False)
    with pytest.raises(ValueError, match="folder"):
        study.run_study([study.Cell("a/b", {})], run_batch, workdir=str(tmp_path), seeds=[0], progress=False)
    with pytest.raises(ValueError, match="axis 'J'"):
        study.grid({}, J=())
    assert not os.path.exists(os.path.join(str(tmp_path), "cells", "a"))
