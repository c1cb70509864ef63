"""Split hygiene: g, the layer and every selection use train/val rows only (corrupting test rows changes
no choice and no val number), plus the split sizes."""

import numpy as np
import pytest

from jaxlab.ars import evaluate as E
from jaxlab.ars.losses import ARSHParams


def _bundle(rng, n=120, L=2, d=8, K=3, M=3):
    y = (rng.random(n) < 0.5).astype(np.int32)
    sig = 2.0 * np.where(y, 1.0, -1.0)[None, :, None] * np.eye(d)[0]
    u = rng.normal(size=(L, n, d)) + sig
    b = E.Bundle(y=y, u=u, u_yes=u + rng.normal(size=(L, n, d)) + sig, u_no=u + rng.normal(size=(L, n, d)) - sig,
                 samples=u[:, :, None] + rng.normal(size=(L, n, K, d)) * (1.5 - y)[None, :, None, None],
                 nll=rng.random(n) + (1 - y), sem_entropy=rng.random(n) + (1 - y))

    def cfset(p_agree):
        agree = rng.random((n, M)) < np.where(y, p_agree, p_agree / 2)[:, None]
        ucf = u[:, :, None] + np.where(agree, 0.0, 1.0)[None, ..., None] * rng.normal(size=(L, n, M, d))
        return E.CFSet(agree, np.ones((n, M), bool), ucf.astype(np.float32))

    return b, {1.0: cfset(0.8), 2.0: cfset(0.5)}, {"trace_0.5": cfset(0.6)}


def _corrupt(b, cf_main, cf_pos, test, rng):
    def bad(x, axis):
        x = np.array(x, copy=True)
        idx = [slice(None)] * x.ndim
        idx[axis] = test
        x[tuple(idx)] = rng.normal(size=x[tuple(idx)].shape) * 10
        return x
    b2 = E.Bundle(y=np.where(np.isin(np.arange(len(b.y)), test), 1 - b.y, b.y), u=bad(b.u, 1),
                  u_yes=bad(b.u_yes, 1), u_no=bad(b.u_no, 1), samples=bad(b.samples, 1), nll=bad(b.nll, 0),
                  sem_entropy=bad(b.sem_entropy, 0))
    cs = lambda c: E.CFSet(np.where(np.isin(np.arange(len(b.y)), test)[:, None], ~c.agree, c.agree),
                           c.parsed, bad(c.ucf, 1))
    return b2, {r: cs(c) for r, c in cf_main.items()}, {p: cs(c) for p, c in cf_pos.items()}


def _val_view(res):
    """Everything that may depend on train/val rows only."""
    out = {"layer": res["layer"], "layer_vals": res["layer_val_probe_auroc"], "chosen": res["chosen"],
           "grid": [(g["rho"], g["k"], g["tau"], g["epochs"], round(g["loss"], 6), round(g["val_mean"], 9))
                    for g in res["grid"]],
           "det_val": {r: {d: round(v["val"], 9) for d, v in dd.items()} for r, dd in res["detectors"].items()},
           "base_val": {n: round(v["val"], 9) for n, v in res["baselines"].items()},
           "pos_val": {p: round(v["val_mean"], 9) for p, v in res["positions"].items()},
           "split": res["split"]}
    return out


def test_make_split_sizes_and_bad_input():
    s = E.make_split(400, 0, test_frac=0.25, n_val=100)
    assert (len(s.train), len(s.val), len(s.test)) == (200, 100, 100)
    assert len(set(s.train) | set(s.val) | set(s.test)) == 400
    assert not np.array_equal(E.make_split(400, 1).test, s.test)
    with pytest.raises(ValueError, match="n"):
        E.make_split(120, 0, test_frac=0.25, n_val=100)


def test_no_fit_or_selection_touches_test_rows():
    rng = np.random.default_rng(0)
    b, cf_main, cf_pos = _bundle(rng)
    kw = dict(hps=[ARSHParams(k=4, tau=0.2, epochs=4, batch_size=32)],
              epochs_grid=[2, 4], opts=E.DetOpts(n_low_labels=30, ccs_restarts=2, halo_kmax=3),
              test_frac=0.25, n_val=30)
    res = E.analyse_seed(b, cf_main, lambda rho, rows: cf_pos, 0, **kw)
    test = np.asarray(res["split"]["test"])
    b2, cf_main2, cf_pos2 = _corrupt(b, cf_main, cf_pos, test, np.random.default_rng(1))
    res2 = E.analyse_seed(b2, cf_main2, lambda rho, rows: cf_pos2, 0, **kw)
    assert _val_view(res) == _val_view(res2)
    # ... while the test numbers do see the corruption (the test really is scored on those rows)
    assert res["detectors"]["raw"]["probe"]["test"] != res2["detectors"]["raw"]["probe"]["test"]
    assert res["detectors"]["raw"]["probe"]["test"] > 0.8            # the synthetic signal is detectable


def test_sweep_subset_keeps_the_split_and_its_parts():
    s = E.make_split(400, 3, test_frac=0.25, n_val=50)
    rows, sub = E.sweep_subset(s, 200)
    assert len(rows) == 200 and np.all(np.diff(rows) > 0)
    assert set(rows[sub.val]) == set(s.val)                       # every val row kept
    assert set(rows[sub.train]) <= set(s.train) and set(rows[sub.test]) <= set(s.test)
    assert len(sub.test) == 50 and len(sub.train) == 100            # test keeps its 25% share
    assert len(set(sub.train) | set(sub.val) | set(sub.test)) == 200
    full_rows, same = E.sweep_subset(s, None)
    assert np.array_equal(full_rows, np.arange(400)) and same is s
    assert np.array_equal(E.sweep_subset(s, 10_000)[0], np.arange(400))
    with pytest.raises(ValueError, match="sweep rows"):
        E.sweep_subset(s, 60)


def test_position_sweep_on_a_subset_touches_no_test_row():
    """With sweep_n, positions and the refitted boundary see the subset's rows only (positions_fn gets
    them), and corrupting the test rows still changes no choice and no val number."""
    rng = np.random.default_rng(0)
    b, cf_main, cf_pos = _bundle(rng)
    seen = []

    def positions_fn(cf):
        def f(rho, rows):
            seen.append(np.asarray(rows))
            return {p: E.take_rows(c, rows) for p, c in cf.items()}
        return f
    kw = dict(hps=[ARSHParams(k=4, tau=0.2, epochs=4, batch_size=32)],
              epochs_grid=[2, 4], opts=E.DetOpts(n_low_labels=30, ccs_restarts=2, halo_kmax=3),
              test_frac=0.25, n_val=30, sweep_n=90)
    res = E.analyse_seed(b, cf_main, positions_fn(cf_pos), 0, **kw)
    assert len(seen[0]) == 90 and res["sweep_rows"] == {"n": 90, "n_train": 38, "n_val": 30, "n_test": 22}
    assert set(res["positions"]) == {"trace_0.5", "boundary"}
    test = np.asarray(res["split"]["test"])
    b2, cf_main2, cf_pos2 = _corrupt(b, cf_main, cf_pos, test, np.random.default_rng(1))
    res2 = E.analyse_seed(b2, cf_main2, positions_fn(cf_pos2), 0, **kw)
    assert _val_view(res) == _val_view(res2)
