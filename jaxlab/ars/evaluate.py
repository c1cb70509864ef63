"""The LM-free analysis of one seed: splits, val selection, head fitting, detectors (raw/shaped/controls).

Inputs are arrays computed once from the frozen LM (`Bundle`, per-position `CFSet`s); nothing here reads
a test row to fit or select anything: fitting uses `split.train`, every choice uses `split.val`, and
test rows are only scored (tests/ars/test_evaluate.py corrupts the test rows and checks that every
choice and every val number is unchanged).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

from jaxlab.ars import detectors as det_lib
from jaxlab.ars.losses import ARSHParams
from jaxlab.ars.train import HeadData, fit_head
from jaxlab.core.classification import auroc

EMBED_DETECTORS = ("probe", "ccs", "haloscope", "eigenscore")          # the selection / claim set
ALL_DETECTORS = ("probe", "probe_lowlabel", "ccs", "ccs_labelled", "haloscope", "eigenscore")


class Bundle(NamedTuple):
    """Seed-independent arrays of N problems (L layers, d dims, K samples)."""
    y: np.ndarray          # [N] 1 = the greedy answer is correct
    u: np.ndarray          # [L, N, d] last answer token (EOS excluded), block outputs
    u_yes: np.ndarray      # [L, N, d] verdict-token state of x⊕r⊕a⊕<yes>
    u_no: np.ndarray       # [L, N, d] ... ⊕<no>
    samples: np.ndarray    # [L, N, K, d] K answers sampled at T (EigenScore)
    nll: np.ndarray        # [N] mean NLL of the answer tokens (perplexity baseline)
    sem_entropy: np.ndarray  # [N] semantic entropy of the K sampled parsed answers


class CFSet(NamedTuple):
    """Counterfactuals of one intervention (position, layer, rho) for one seed. M draws."""
    agree: np.ndarray      # [N, M] bool parsed answer equals the original's
    parsed: np.ndarray     # [N, M] bool the counterfactual answer parses
    ucf: np.ndarray        # [L, N, M, d] counterfactual embeddings


class Split(NamedTuple):
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class DetOpts(NamedTuple):
    probe_l2: float = 1.0
    n_low_labels: int = 200
    ccs_restarts: int = 8
    halo_kmax: int = 10
    eigen_alpha: float = 1e-3


def make_split(n: int, seed: int, *, test_frac: float = 0.25, n_val: int = 100) -> Split:
    """Seeded split of n rows: round(test_frac n) test, n_val val, the rest train (at least 2)."""
    n_test = int(round(test_frac * n))
    if n - n_test - n_val < 2:
        raise ValueError(f"n: {n} rows leave no training rows after {n_test} test and {n_val} val")
    perm = np.random.default_rng([int(seed), 1601]).permutation(n)
    return Split(np.sort(perm[n_test + n_val:]), np.sort(perm[n_test:n_test + n_val]), np.sort(perm[:n_test]))


def sweep_subset(split: Split, n: int | None) -> tuple[np.ndarray, Split]:
    """About n rows for the costly sweeps (other intervention positions) that keep the split's parts:
    every val row, and the first rows of train and test (in index order; the problem pool is a seeded
    random draw) so test keeps its share of the whole. n None or >= the whole: every row.
    Returns (rows [n'] sorted indices into the whole, the split re-indexed into rows), so a head fitted
    on the subset still fits on train rows only, selects on val rows only and scores test rows only."""
    total = len(split.train) + len(split.val) + len(split.test)
    if n is None or n >= total:
        return np.arange(total), split
    n_test = int(round(n * len(split.test) / total))
    n_train = n - len(split.val) - n_test
    if n_train < 2:
        raise ValueError(f"sweep rows: {n} rows leave no training rows after {n_test} test and "
                         f"{len(split.val)} val rows")
    rows = np.sort(np.concatenate([split.train[:n_train], split.val, split.test[:n_test]]))
    sub = Split(*(np.searchsorted(rows, part) for part in (split.train[:n_train], split.val, split.test[:n_test])))
    return rows, sub


def take_rows(x: Bundle | CFSet, rows: np.ndarray) -> Bundle | CFSet:
    """The rows [n'] of a Bundle or CFSet (problems sit on axis 0 of 1-D/[N, ...] fields, axis 1 of [L, N, ...])."""
    layered = {"u", "u_yes", "u_no", "samples", "ucf"}
    return type(x)(**{f: (v[:, rows] if f in layered else v[rows]) for f, v in x._asdict().items()})


def _oriented(score_va, score_te, y_va, y_te):
    s = det_lib.orient(score_va, y_va)
    return auroc(s * score_va, y_va), auroc(s * score_te, y_te)


def choose_layer(b: Bundle, split: Split, *, l2: float = 1.0) -> tuple[int, list[float]]:
    """Layer with the best VAL AUROC of the raw logistic probe fitted on train."""
    vals = []
    for l in range(b.u.shape[0]):
        m = det_lib.fit_logistic(b.u[l, split.train], b.y[split.train], l2=l2)
        vals.append(auroc(det_lib.logistic_scores(m, b.u[l, split.val]), b.y[split.val]))
    return int(np.argmax(vals)), vals


def detectors(rep, b: Bundle, layer: int, split: Split, key, opts: DetOpts,
              which: Sequence[str] = ALL_DETECTORS) -> dict:
    """Every embedding detector on the representation rep ([..., d] -> [..., k]).

    Returns {detector: {"val": AUROC, "test": AUROC}} with each detector's sign (and HaloScope's k and
    percentile) chosen on val; all fits use train rows only (probe_lowlabel: n_low_labels of them).
    """
    tr, va, te = split
    y = b.y
    f = rep(b.u[layer])
    out = {}
    if "probe" in which:
        m = det_lib.fit_logistic(f[tr], y[tr], l2=opts.probe_l2)
        out["probe"] = _oriented(det_lib.logistic_scores(m, f[va]), det_lib.logistic_scores(m, f[te]), y[va], y[te])
    if "probe_lowlabel" in which:
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist() + [7])
        sub = np.sort(rng.choice(tr, min(opts.n_low_labels, len(tr)), replace=False))
        if 0 < y[sub].sum() < len(sub):
            m = det_lib.fit_logistic(f[sub], y[sub], l2=opts.probe_l2)
            out["probe_lowlabel"] = _oriented(det_lib.logistic_scores(m, f[va]), det_lib.logistic_scores(m, f[te]),
                                              y[va], y[te])
    if "ccs" in which or "ccs_labelled" in which:
        fp, fn = rep(b.u_yes[layer]), rep(b.u_no[layer])
        if "ccs" in which:
            norm = det_lib.ccs_normalizer(fp[tr], fn[tr])
            xp, xn = det_lib.ccs_normalize(norm, fp, fn)
            w, c = det_lib.fit_ccs(jax.random.fold_in(key, 3), xp[tr], xn[tr], restarts=opts.ccs_restarts)
            s = det_lib.ccs_scores(w, c, xp, xn)
            out["ccs"] = _oriented(s[va], s[te], y[va], y[te])
        if "ccs_labelled" in which:
            diff = fp - fn
            m = det_lib.fit_logistic(diff[tr], y[tr], l2=opts.probe_l2)
            out["ccs_labelled"] = _oriented(det_lib.logistic_scores(m, diff[va]), det_lib.logistic_scores(m, diff[te]),
                                            y[va], y[te])
    if "haloscope" in which:
        (sv, st), info = det_lib.haloscope(f[tr], f[va], y[va], [f[va], f[te]],
                                     ks=range(1, opts.halo_kmax + 1))
        out["haloscope"] = (auroc(sv, y[va]), auroc(st, y[te]))
    if "eigenscore" in which:
        es = det_lib.eigenscore(rep(b.samples[layer]), alpha=opts.eigen_alpha)
        out["eigenscore"] = _oriented(es[va], es[te], y[va], y[te])
    return {k: {"val": float(v[0]), "test": float(v[1])} for k, v in out.items()}


def scalar_baselines(b: Bundle, alpha_n: np.ndarray, split: Split) -> dict:
    """Agreement alpha alone, perplexity (-NLL) and semantic entropy: {name: {"val", "test"}}."""
    out = {}
    for name, s in (("agreement", alpha_n), ("perplexity", -b.nll), ("semantic_entropy", -b.sem_entropy)):
        s = np.asarray(s, np.float64)
        if np.ptp(s[split.val]) == 0:  # a constant score on val: AUROC 1/2 by the tie rule
            out[name] = {"val": 0.5, "test": float(auroc(s[split.test], b.y[split.test]))
                         if np.ptp(s[split.test]) > 0 else 0.5}
            continue
        v, t = _oriented(s[split.val], s[split.test], b.y[split.val], b.y[split.test])
        out[name] = {"val": float(v), "test": float(t)}
    return out


def mean_auroc(res: dict, split_name: str, which: Sequence[str] = EMBED_DETECTORS) -> float:
    return float(np.mean([res[d][split_name] for d in which if d in res]))


def head_data(cfs: CFSet, b: Bundle, layer: int, rows: np.ndarray) -> HeadData:
    return HeadData(b.u[layer, rows].astype(np.float32), cfs.ucf[layer, rows].astype(np.float32),
                    cfs.agree[rows])


def shaped_grid(b: Bundle, cfs: CFSet, layer: int, split: Split, key, hps: Sequence[ARSHParams],
                epochs_grid: Sequence[int], opts: DetOpts, which=EMBED_DETECTORS,
                eval_epochs: Sequence[int] | None = None) -> list[dict]:
    """For each head hyperparameter (k, tau, ...) and checkpoint epoch: fit g on TRAIN rows, run the
    detectors on z = g(u). Every head trains max(epochs_grid) epochs (one cosine schedule) and is read at
    the checkpoints of epochs_grid; eval_epochs (default: all) limits which checkpoints are evaluated.
    Returns a list of {"k", "tau", "epochs", "W", "det": {...}}."""
    data = head_data(cfs, b, layer, split.train)
    eval_epochs = set(epochs_grid if eval_epochs is None else eval_epochs)
    out = []
    for i, hp in enumerate(hps):
        hp = hp._replace(epochs=max(epochs_grid))
        ws, loss = fit_head(jax.random.fold_in(key, i), data, hp, checkpoints=tuple(sorted(epochs_grid)))
        for e, w in zip(sorted(epochs_grid), np.asarray(ws)):
            if e not in eval_epochs:
                continue
            rep = lambda x, w=w: np.asarray(x, np.float32) @ w.T
            det = detectors(rep, b, layer, split, jax.random.fold_in(key, 100 + i), opts, which)
            out.append({"k": hp.k, "tau": hp.tau, "epochs": int(e), "W": w, "det": det,
                        "final_loss": float(np.mean(np.asarray(loss)[-10:]))})
    return out


def best_on_val(entries: Sequence[dict], which=EMBED_DETECTORS) -> dict:
    """The entry with the highest mean VAL AUROC over `which` (first one on ties)."""
    return max(entries, key=lambda e: mean_auroc(e["det"], "val", which))


def pca_rep(f_tr: np.ndarray, k: int):
    """PCA control: projection on the top-k principal axes of the TRAIN embeddings."""
    mu = f_tr.mean(0)
    _, _, vt = np.linalg.svd(f_tr - mu, full_matrices=False)
    v = vt[:k]
    return lambda x: (np.asarray(x, np.float64) - mu) @ v.T


def random_rep(key, d: int, k: int):
    """Random-projection control: Gaussian [k, d] / sqrt(d)."""
    w = np.asarray(jax.random.normal(key, (k, d))) / np.sqrt(d)
    return lambda x: np.asarray(x, np.float64) @ w.T


def positive_stats(cfs: CFSet, b: Bundle, layer: int, rows: np.ndarray) -> dict:
    """Diagnostics of the training signal: share of anchors with a positive / a negative, and the share of
    agreeing counterfactuals whose embedding differs from the original's (else s+ is constant)."""
    agree = cfs.agree[rows]
    diff = np.abs(cfs.ucf[layer, rows] - b.u[layer, rows][:, None]).max(-1) > 1e-5
    n_pos = agree.sum()
    return {"anchors_with_positive": float(agree.any(1).mean()),
            "anchors_with_negative": float((~agree).any(1).mean()),
            "positives_not_identical": float((diff & agree).sum() / max(n_pos, 1))}


def analyse_seed(b: Bundle, cf_main: dict, positions_fn, seed: int, *, hps: Sequence[ARSHParams],
                 epochs_grid: Sequence[int], opts: DetOpts, test_frac: float = 0.25, n_val: int = 100,
                 sweep_n: int | None = None) -> dict:
    """Everything for one seed.

    cf_main: {rho: CFSet} boundary counterfactuals at the LM-head input (this seed's delta draws);
    positions_fn(rho, rows) -> {name: CFSet over rows}: the other interventions, generated at the
    val-chosen rho for the sweep rows (None or returning {} skips them). sweep_n: the position sweep runs
    on about sweep_n rows (`sweep_subset`; None: all), where the boundary is refitted with the same
    hyperparameters so every position is compared on the same rows. Returns a JSON-able dict (W dropped).
    """
    key = jax.random.PRNGKey(seed)
    split = make_split(len(b.y), seed, test_frac=test_frac, n_val=n_val)
    layer, layer_vals = choose_layer(b, split, l2=opts.probe_l2)
    res = {"seed": seed, "layer": layer, "layer_val_probe_auroc": layer_vals,
           "n_train": int(len(split.train)), "n_val": int(len(split.val)), "n_test": int(len(split.test)),
           "acc": float(b.y.mean())}
    grid = {}
    for i, (rho, cfs) in enumerate(sorted(cf_main.items())):
        grid[rho] = shaped_grid(b, cfs, layer, split, jax.random.fold_in(key, 10 + i), hps, epochs_grid, opts)
    per_rho_best = {rho: best_on_val(v) for rho, v in grid.items()}
    rho_star = max(per_rho_best, key=lambda r: mean_auroc(per_rho_best[r]["det"], "val"))
    best = per_rho_best[rho_star]
    res["chosen"] = {"rho": rho_star, "k": best["k"], "tau": best["tau"], "epochs": best["epochs"]}
    res["grid"] = [{"rho": r, "k": e["k"], "tau": e["tau"], "epochs": e["epochs"], "loss": e["final_loss"],
                    "val_mean": mean_auroc(e["det"], "val"), "test_mean": mean_auroc(e["det"], "test")}
                   for r, v in grid.items() for e in v]
    res["per_rho"] = {str(r): {"val_mean": mean_auroc(e["det"], "val"), "test_mean": mean_auroc(e["det"], "test"),
                               "disagree": float(1 - cf_main[r].agree.mean()),
                               "unparsed": float(1 - cf_main[r].parsed.mean()),
                               "disagree_correct": float(1 - cf_main[r].agree[b.y > 0].mean()),
                               "disagree_wrong": float(1 - cf_main[r].agree[b.y == 0].mean()),
                               **positive_stats(cf_main[r], b, layer, split.train)}
                      for r, e in per_rho_best.items()}
    # shaped (all detectors) at the chosen point, raw and the controls at the same k
    w = best["W"]
    k = best["k"]
    reps = {"shaped": lambda x: np.asarray(x, np.float32) @ w.T, "raw": lambda x: np.asarray(x, np.float64),
            "pca": pca_rep(b.u[layer, split.train], k), "random": random_rep(jax.random.fold_in(key, 999),
                                                                             b.u.shape[-1], k)}
    res["detectors"] = {name: detectors(r, b, layer, split, jax.random.fold_in(key, 5), opts)
                        for name, r in reps.items()}
    alpha = cf_main[rho_star].agree.mean(1)
    res["baselines"] = scalar_baselines(b, alpha, split)
    # other intervention positions / layers at the chosen rho, k, tau, epochs
    res["positions"] = {}
    rows, sub = sweep_subset(split, sweep_n)
    whole = len(rows) == len(b.y)
    b_sub = b if whole else take_rows(b, rows)
    cf_pos = positions_fn(rho_star, rows) if positions_fn is not None else {}
    hp = ARSHParams(k=k, tau=best["tau"], epochs=max(epochs_grid), lr=hps[0].lr,
                    weight_decay=hps[0].weight_decay, batch_size=hps[0].batch_size, loss=hps[0].loss,
                    reg=hps[0].reg)              # the boundary head's schedule, read at its chosen epoch
    if cf_pos and not whole:                     # the boundary on the sweep rows, fitted the same way
        cf_pos = {**cf_pos, "boundary": take_rows(cf_main[rho_star], rows)}
    for name, cfs in cf_pos.items():
        e = shaped_grid(b_sub, cfs, layer, sub, jax.random.fold_in(key, 20), [hp], epochs_grid, opts,
                        eval_epochs=[best["epochs"]])[0]
        res["positions"][name] = {"val_mean": mean_auroc(e["det"], "val"), "test_mean": mean_auroc(e["det"], "test"),
                                  "det": e["det"], "disagree": float(1 - cfs.agree.mean()),
                                  "unparsed": float(1 - cfs.parsed.mean())}
    if "boundary" not in res["positions"]:
        res["positions"]["boundary"] = {"val_mean": mean_auroc(best["det"], "val"),
                                        "test_mean": mean_auroc(best["det"], "test"), "det": best["det"],
                                        "disagree": res["per_rho"][str(rho_star)]["disagree"],
                                        "unparsed": res["per_rho"][str(rho_star)]["unparsed"]}
    res["sweep_rows"] = {"n": int(len(rows)), "n_train": int(len(sub.train)), "n_val": int(len(sub.val)),
                         "n_test": int(len(sub.test))}
    res["split"] = {"train": split.train.tolist(), "val": split.val.tolist(), "test": split.test.tolist()}
    return res
