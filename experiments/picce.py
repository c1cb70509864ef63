"""PiCCE miniature: does adding experts make the vanilla multi-expert L2D classifier underfit, and does
PiCCE fix it?  (Liu, Cao et al., "When More Experts Hurt", arXiv 2602.17144.)

Grid: methods x J x expert settings x data sets x seeds x hyperparameter points, with the training budget read
off each run (short / medium fixed epoch counts, and the epoch of best validation system error = "converged").
Seeds and J are ``vmap`` axes over the ``jaxlab.l2d.train.l2d_trainer`` (its init, then its epochs as one
``loop.scan_steps``): one ``jax.jit`` per (data set, setting, method), compiled once and called at every
hyperparameter point (the learning rate and the loss's own weight are traced arguments, the data a jit
argument). The grid runs through ``jaxlab.core.study`` with one cell per (data set, setting, method,
hyperparameter point): each (cell, seed) record under ``workdir/cells/`` is stamped with the hash of the cell's
config (every hyperparameter its arrays depend on, the grid point included), so rerunning the same command resumes
and a changed grid computes the points it has not seen.

Tuning (issue 13): every method gets the same learning-rate grid (``config.lr_grid``); the realizable surrogate's
alpha (``rs_alpha_grid``) and the decoupled baseline's lambda (``decoupled_weight_grid``) are tuned jointly with
it. For each (data set, setting, method, budget) the point with the lowest *validation* system error (mean over
seeds and all J) is chosen (`select_by_validation`, which sees validation numbers only), and the test numbers
are reported at that point. Budgets share the grid runs, so the choice per budget costs no extra training.

The paper's claim is checked by code in four parts, per data set, setting and budget:
  (a) vanilla CE class mass follows 1/(1+A) while PiCCE-CE's stays >= ~1/2;
  (b) vanilla classifier accuracy falls from J=2 to J_max while PiCCE's stays flat (within 2 points);
  (c) PiCCE coverage is higher at large J (J >= 8);
  (d) PiCCE system error is no worse at large J.
(b)-(d) are checked for the CE family (PiCCE-CE vs CE) and the OvA family (PiCCE-OvA vs OvA);
  (e) when the realizable surrogate and the decoupled (post-hoc) baseline are run: the paper's "existing
  underfitting remedies fail with many experts": PiCCE's system error at large J is no worse than theirs.
It also reports which expert each method defers to against the most accurate one (winner-take-all).
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import plots, study
from jaxlab.core.config import config_hash
from jaxlab.core.summary import claim, combine_claims
from jaxlab.l2d import data as data_lib
from jaxlab.l2d import train as train_lib

FAMILIES = {"CE": ("picce_ce", "ce"), "OvA": ("picce_ova", "ova")}
PARTS = {
    "a": "vanilla CE class mass follows 1/(1+A) while PiCCE-CE's stays at least about 1/2",
    "b": "vanilla classifier accuracy falls as J grows while PiCCE's stays flat",
    "c": "PiCCE's coverage is higher than vanilla's at large J",
    "d": "PiCCE's system error is no worse than vanilla's at large J",
    "e": "PiCCE's system error is no worse than the tuned underfitting remedies' (realizable, decoupled) at large J",
}
REMEDIES = ("realizable", "decoupled")
#: the loss keyword each method's own grid tunes, and the config key of that grid
METHOD_GRIDS = {"realizable": ("alpha", "rs_alpha_grid"), "decoupled": ("expert_weight", "decoupled_weight_grid")}
SCALARS = ("system_error", "coverage", "classifier_accuracy", "class_mass", "defer_to_best", "defer_regret")


# ----------------------------------------------------------------------------- running the grid
def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def _save_npz(path, arrays):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def grid_points(config, method) -> list[dict]:
    """The hyperparameter points of `method`: `lr_grid`, times its own loss weight's grid (see METHOD_GRIDS)."""
    lrs = [float(v) for v in config.lr_grid]
    if not lrs or not all(np.isfinite(lr) and lr > 0 for lr in lrs):
        raise ValueError(f"config key 'lr_grid': expected learning rates > 0, got {lrs}")
    if method not in METHOD_GRIDS:
        return [{"lr": lr} for lr in lrs]
    name, key = METHOD_GRIDS[method]
    if not list(config[key]) or not all(np.isfinite(float(v)) and float(v) >= 0 for v in config[key]):
        raise ValueError(f"config key {key!r}: expected at least one finite value >= 0, got {list(config[key])}")
    return [{"lr": lr, name: float(v)} for lr in lrs for v in config[key]]


def point_tag(point: dict) -> str:
    """'lr=0.001,alpha=0.5': a grid point as text (cell ids, tables)."""
    return ",".join(f"{k}={float(v):g}" for k, v in point.items())


def cell_config(config, dataset, setting, method, point) -> dict:
    """Everything that determines one (data set, setting, method, grid point) cell's arrays (its study config)."""
    return {"dataset": dataset, "setting": setting, "method": method, "num_classes": int(config.num_classes),
            "num_experts": [int(j) for j in config.num_experts], "hidden": [int(h) for h in config.hidden],
            "lr": float(point["lr"]), "batch_size": int(config.batch_size), "epochs": int(config.epochs[dataset]),
            "data_source": str(config.data_source),
            "gmm_config": str(config.gmm_config) if dataset == "gmm" else None,
            "loss_kwargs": {k: float(v) for k, v in point.items() if k != "lr"}}


def make_cells(config) -> list[study.Cell]:
    return [study.Cell(f"{d}__{s}__{m}__{point_tag(p)}", cell_config(config, d, s, m, p))
            for d in config.datasets for s in config.settings for m in config.methods
            for p in grid_points(config, m)]


def _program_key(cc: dict) -> str:
    """What one compiled program serves: the cell config without the traced grid point (lr, loss weight)."""
    return json.dumps({k: v for k, v in cc.items() if k not in ("lr", "loss_kwargs")}, sort_keys=True)


def train_cell(cc: dict, seeds, splits, programs: dict | None = None) -> dict:
    """Trains one cell (config `cc`, see `cell_config`) over all J and `seeds`; flat arrays [n_J, S, ...].

    `programs` caches one jitted grid per `_program_key`, so the other grid points of a (data set, setting,
    method) reuse its compilation (the grid point is a traced argument)."""
    programs = {} if programs is None else programs
    key = _program_key(cc)
    if key not in programs:
        train = train_lib.make_train(
            splits, method=cc["method"], setting=cc["setting"], num_classes=cc["num_classes"],
            max_experts=max(cc["num_experts"]), hidden=tuple(cc["hidden"]), batch_size=cc["batch_size"],
            epochs=cc["epochs"])
        programs[key] = (train, train_lib.grid_fn(train))
    train, fn = programs[key]
    _, metrics = train_lib.run_grid(train, list(seeds), list(cc["num_experts"]),
                                    {"lr": cc["lr"], **cc["loss_kwargs"]}, fn=fn)
    return _flatten(jax.device_get(metrics))


def load_data(cc: dict):
    """The (x, y, eta) splits of a cell's data set (`cc`: a `cell_config`)."""
    splits = data_lib.load(cc["dataset"], source=cc["data_source"], config=cc["gmm_config"])
    return {s: {k: v for k, v in d.items() if k in ("x", "y", "eta")} for s, d in splits.items()}


def _npz_name(cell, seed):
    return f"s{int(seed)}.{config_hash(cell.config)}.npz"


def _load_arrays(workdir, cell, seed, result):
    """The per-seed arrays of a study record, or None when the npz is missing or stamped by another config."""
    path = os.path.join(workdir, "cells", cell.id, result.get("arrays", ""))
    try:
        with np.load(path) as f:
            if str(f["config_hash"]) != config_hash(cell.config):
                return None
            return {k: f[k] for k in f.files if k != "config_hash"}
    except (OSError, KeyError, ValueError):
        return None


def run_all_cells(config, workdir):
    """Runs (or reuses) every cell through `jaxlab.core.study`.

    Returns {(dataset, setting, method): {grid point tag: arrays [n_J, S, ...]}}. Each (cell, seed) record holds
    the name of an npz with that seed's arrays [n_J, E, ...]; the npz is stamped with the same config hash, so
    a changed hyperparameter never reuses an old cell. Seeds stay a `vmap` axis.
    """
    cells = make_cells(config)
    seeds = [int(s) for s in config.seeds]
    data, programs = {}, {}
    with metrics_lib.MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as writer:
        def run_cell(cell, todo):
            key = (cell.config["dataset"], cell.config["data_source"], cell.config["gmm_config"])
            if key not in data:
                data.clear()                                        # one data set in memory at a time
                programs.clear()                                    # (and the trains that hold it)
                data[key] = load_data(cell.config)
            t0 = time.perf_counter()
            arrays = train_cell(cell.config, todo, data[key], programs)
            out = []
            for i, seed in enumerate(todo):
                name = _npz_name(cell, seed)
                per_seed = {k: v[:, i] for k, v in arrays.items()}       # every leaf is [n_J, S, ...]
                folder = os.path.join(workdir, "cells", cell.id)
                _save_npz(os.path.join(folder, name), {**per_seed, "config_hash": np.asarray(config_hash(cell.config))})
                for old in os.listdir(folder):                      # arrays of a replaced config
                    if old.startswith(f"s{int(seed)}.") and old.endswith(".npz") and old != name:
                        os.remove(os.path.join(folder, old))
                out.append({"arrays": name,
                            "final_val_system_error": float(per_seed["val/system_error"][..., -1].mean())})
            writer.write(cells.index(cell), cell=cell.id, seconds=time.perf_counter() - t0, seeds=list(todo),
                         final_val_system_error=float(arrays["val/system_error"][..., -1].mean()))
            return out

        for _ in range(2):                                          # 2nd pass: only if an npz went missing
            records = study.run_study(cells, run_cell, workdir=workdir, seeds=seeds, batch_seeds=True)
            results, lost = {}, []
            for cell in cells:
                per = [_load_arrays(workdir, cell, s, records[cell.id][s]) for s in seeds]
                if any(p is None for p in per):
                    lost += [study.record_path(workdir, cell.id, s) for s, p in zip(seeds, per) if p is None]
                    continue
                cc = cell.config
                tag = point_tag({"lr": cc["lr"], **cc["loss_kwargs"]})
                results.setdefault((cc["dataset"], cc["setting"], cc["method"]), {})[tag] = {
                    k: np.stack([p[k] for p in per], 1) for k in per[0]}
            if not lost:
                return results
            for path in lost:
                os.remove(path)
    raise RuntimeError(f"picce: cell arrays could not be stored under {workdir!r}")


# ----------------------------------------------------------------------------- budgets and tables
def budget_indices(config, dataset, arrays):
    """{budget name: epoch index [n_J, S]}: fixed epoch counts plus argmin of validation system error."""
    n_j, n_s, n_e = arrays["val/system_error"].shape
    out = {}
    names = ["short", "medium"]
    for name, ep in zip(names, list(config.budgets[dataset])):
        out[f"{name} ({int(ep)} ep)"] = np.full((n_j, n_s), min(int(ep), n_e) - 1)
    out["converged (best val)"] = np.argmin(arrays["val/system_error"], axis=-1)
    return out


def at_budget(arr, idx):
    """arr [n_J, S, E, ...] at per-run epoch idx [n_J, S] -> [n_J, S, ...]."""
    return np.take_along_axis(arr, idx.reshape(idx.shape + (1,) * (arr.ndim - 2)), axis=2)[:, :, 0]


def cell_stats(arrays, idx):
    """Per-seed test metrics at a budget: {metric: [n_J, S]} (+ deferral concentration)."""
    out = {k: at_budget(arrays[f"test/{k}"], idx) for k in SCALARS}
    dfrac = at_budget(arrays["test/defer_frac"], idx)                  # [n_J, S, J_max]
    total = dfrac.sum(-1)
    out["defer_top_share"] = np.where(total > 0, dfrac.max(-1) / np.maximum(total, 1e-12), np.nan)
    out["experts_used"] = (dfrac > 0.01 * np.maximum(total[..., None], 1e-12)).sum(-1) * (total > 0)
    exp_acc = at_budget(arrays["test/expert_accuracy"], idx)
    out["best_expert_error"] = 1.0 - np.nanmax(exp_acc, axis=-1)
    out["mass_vanilla_theory"] = arrays["mass_vanilla_theory"]
    out["mass_picce_theory"] = arrays["mass_picce_theory"]
    out["epoch"] = idx + 1.0
    return out


# ----------------------------------------------------------------------------- tuning on validation
def select_by_validation(val_error_by_point: dict) -> tuple[str, dict]:
    """The grid point with the lowest validation system error, mean over seeds and J.

    Args:
      val_error_by_point: {point tag: validation system error at one budget, [n_J, S]}. Only validation
        numbers come in: test numbers cannot enter the choice. A non-finite mean (a diverged run) never wins;
        ties go to the first point in grid order.
    Returns:
      (chosen tag, {tag: mean validation system error}).
    """
    if not val_error_by_point:
        raise ValueError("val_error_by_point: expected at least one grid point")
    means = {t: float(np.mean(v)) for t, v in val_error_by_point.items()}
    order = list(means)
    best = min(order, key=lambda t: (means[t] if np.isfinite(means[t]) else np.inf, order.index(t)))
    return best, means


def choose_points(config, dataset, arrays_by_point):
    """Per budget, the validation-chosen grid point of one (data set, setting, method).

    Reads only ``val/system_error`` of each point's arrays (``[n_J, S, E]``). Returns
    ({budget: {"point": tag, "val_system_error": {tag: mean}}}, {tag: {budget: epoch index [n_J, S]}}).
    """
    idx = {t: budget_indices(config, dataset, a) for t, a in arrays_by_point.items()}
    budgets = list(next(iter(idx.values())))
    chosen = {}
    for b in budgets:
        val = {t: at_budget(arrays_by_point[t]["val/system_error"], idx[t][b]) for t in arrays_by_point}
        best, means = select_by_validation(val)
        chosen[b] = {"point": best, "val_system_error": means}
    return chosen, idx


def tuned_stats(config, dataset, arrays_by_point):
    """({budget: test `cell_stats` at the validation-chosen point}, the choices of `choose_points`)."""
    chosen, idx = choose_points(config, dataset, arrays_by_point)
    stats = {b: cell_stats(arrays_by_point[c["point"]], idx[c["point"]][b]) for b, c in chosen.items()}
    return stats, chosen


def parse_tag(tag: str) -> dict:
    """Inverse of `point_tag`: 'lr=0.001,alpha=0.5' -> {"lr": 0.001, "alpha": 0.5}."""
    return {k: float(v) for k, v in (kv.split("=") for kv in tag.split(","))}


def hparam_rows(chosen_by_cell) -> list[dict]:
    """One row per (data set, setting, method, budget): the chosen point and every point's validation error."""
    rows = []
    for (d, s, m), per_budget in chosen_by_cell.items():
        for b, c in per_budget.items():
            point = parse_tag(c["point"])
            rows.append({"dataset": d, "setting": s, "method": m, "budget": b, "chosen": c["point"],
                         "lr": point["lr"], "alpha": point.get("alpha"), "expert_weight": point.get("expert_weight"),
                         "val_system_error": c["val_system_error"][c["point"]],
                         "grid_val_system_error": {t: round(v, 5) for t, v in c["val_system_error"].items()}})
    return rows


# ----------------------------------------------------------------------------- the claims
def _threshold(values, S):
    return [float(values)] * S


def check_parts(config, stats_by_method, family, label):
    """Claim entries for parts (a)-(d) of one (data set, setting, budget) cell and one family."""
    ours_m, base_m = FAMILIES[family]
    js = np.asarray(config.num_experts)
    ours, base = stats_by_method[ours_m], stats_by_method[base_m]
    n_seeds = ours["coverage"].shape[1]
    large = js >= config.large_j
    j2 = int(np.flatnonzero(js == 2)[0]) if 2 in js else 0
    jmax = int(np.argmax(js))
    out = {}
    if family == "CE":
        multi = js >= 2
        rel = np.abs(base["class_mass"] - base["mass_vanilla_theory"]) / base["mass_vanilla_theory"]
        dev = rel[multi].max(0)                                        # [S] worst J per seed
        floor = ours["class_mass"].min(0)                              # [S] smallest mass over J
        out["a"] = combine_claims(f"a/{label}", PARTS["a"], [
            claim(f"a1/{label}", "vanilla CE mass within tolerance of 1/(1+A) at every J >= 2",
                  "max_J |mass - 1/(1+A)| / (1/(1+A))", ours=(base_m, dev),
                  baselines={f"tolerance {config.mass_rel_tol}": _threshold(config.mass_rel_tol, n_seeds)},
                  higher_is_better=False, kind="better"),
            claim(f"a2/{label}", "PiCCE-CE class mass >= ~1/2 at every J", "min_J class mass",
                  ours=(ours_m, floor), baselines={f"floor {config.mass_floor}": _threshold(config.mass_floor, n_seeds)},
                  higher_is_better=True, kind="better"),
        ])
    drop_base = base["classifier_accuracy"][j2] - base["classifier_accuracy"][jmax]
    drop_ours = ours["classifier_accuracy"][j2] - ours["classifier_accuracy"][jmax]
    out["b"] = combine_claims(f"b/{label}", PARTS["b"], [
        claim(f"b1/{label}", f"vanilla accuracy falls from J=2 to J={js[jmax]} by > {config.drop_margin}",
              "accuracy drop J=2 -> J_max", ours=(base_m, drop_base), baselines={"no drop": _threshold(0.0, n_seeds)},
              higher_is_better=True, kind="better", margin=config.drop_margin),
        claim(f"b2/{label}", f"PiCCE accuracy flat: |drop| <= {config.flat_tol}", "|accuracy drop J=2 -> J_max|",
              ours=(ours_m, np.abs(drop_ours)), baselines={f"tolerance {config.flat_tol}": _threshold(config.flat_tol, n_seeds)},
              higher_is_better=False, kind="better"),
    ])
    out["c"] = claim(f"c/{label}", PARTS["c"], f"coverage (mean over J >= {config.large_j})",
                     ours=(ours_m, ours["coverage"][large].mean(0)), baselines={base_m: base["coverage"][large].mean(0)},
                     higher_is_better=True, kind="better")
    out["d"] = claim(f"d/{label}", PARTS["d"], f"system error (mean over J >= {config.large_j})",
                     ours=(ours_m, ours["system_error"][large].mean(0)),
                     baselines={base_m: base["system_error"][large].mean(0)}, higher_is_better=False,
                     kind="no_worse", margin=config.error_margin,
                     note=f"margin {config.error_margin} = that many absolute points of system error")
    if all(r in stats_by_method for r in REMEDIES):
        out["e"] = claim(
            f"e/{label}", PARTS["e"], f"system error (mean over J >= {config.large_j})",
            ours=(ours_m, ours["system_error"][large].mean(0)),
            baselines={r: stats_by_method[r]["system_error"][large].mean(0) for r in REMEDIES},
            higher_is_better=False, kind="no_worse", margin=config.error_margin,
            note=(f"margin {config.error_margin} = that many absolute points of system error (as in (d)); "
                  "every arm at its own validation-chosen grid point (lr; alpha / lambda of the remedies)"))
    return out


# ----------------------------------------------------------------------------- figures
def make_figures(config, workdir, stats, dataset, setting):
    js = np.asarray(config.num_experts, float)
    figs = []
    budgets = list(stats[(dataset, setting, config.methods[0])].keys())
    for b_i, budget in enumerate([budgets[0], budgets[-1]]):
        tag = "short" if b_i == 0 else "converged"
        sm = {m: stats[(dataset, setting, m)][budget] for m in config.methods}
        for metric, ylabel in (("classifier_accuracy", "classifier accuracy"), ("coverage", "coverage"),
                               ("system_error", "system error")):
            name = f"figures/{dataset}_{setting}_{tag}_{metric}.png"
            plots.curves(os.path.join(workdir, name), js, {m: sm[m][metric].T for m in sm}, xlabel="J (experts)",
                         ylabel=ylabel, title=f"{dataset} / {setting} / {budget}", logx=True)
            figs.append(name)
        series = {m: sm[m]["class_mass"].T for m in sm if m in ("ce", "picce_ce", "realizable")}
        series["1/(1+A) (Eq. 6)"] = sm[config.methods[0]]["mass_vanilla_theory"].T
        series["1/(1+V) (PiCCE)"] = sm[config.methods[0]]["mass_picce_theory"].T
        name = f"figures/{dataset}_{setting}_{tag}_class_mass.png"
        plots.curves(os.path.join(workdir, name), js, series, xlabel="J (experts)", ylabel="class mass sum_k q_k",
                     title=f"{dataset} / {setting} / {budget}", logx=True)
        figs.append(name)
    return figs


# ----------------------------------------------------------------------------- run
def run(config, workdir):
    results = run_all_cells(config, workdir)
    js = list(config.num_experts)
    stats, chosen = {}, {}
    for (d, s, m), by_point in results.items():
        stats[(d, s, m)], chosen[(d, s, m)] = tuned_stats(config, d, by_point)

    main_rows, defer_rows, grid_rows = [], [], []
    parts = {(p, f): [] for f in FAMILIES for p in PARTS if not (p == "a" and f == "OvA")}
    for d in config.datasets:
        for s in config.settings:
            budgets = stats[(d, s, config.methods[0])].keys()
            for b in budgets:
                by_m = {m: stats[(d, s, m)][b] for m in config.methods}
                for m, st in by_m.items():
                    for ji, j in enumerate(js):
                        row = {"dataset": d, "setting": s, "budget": b, "method": m, "J": j,
                               "hparams": chosen[(d, s, m)][b]["point"]}
                        for k in SCALARS + ("best_expert_error", "epoch"):
                            vals = st[k][ji]
                            row[f"{k}_mean"], row[f"{k}_std"] = (
                                (float(np.nanmean(vals)), float(np.nanstd(vals, ddof=1))) if np.isfinite(vals).sum() > 1
                                else (float("nan"), float("nan")))
                        row["mass_vanilla_theory"] = float(st["mass_vanilla_theory"][ji].mean())
                        row["mass_picce_theory"] = float(st["mass_picce_theory"][ji].mean())
                        main_rows.append(row)
                        if b.startswith("converged") and j > 1:
                            defer_rows.append({
                                "dataset": d, "setting": s, "method": m, "J": j,
                                "defer_rate": float(1 - st["coverage"][ji].mean()),
                                "defer_to_best": float(np.nanmean(st["defer_to_best"][ji])) if np.isfinite(st["defer_to_best"][ji]).any() else float("nan"),
                                "defer_regret": float(np.nanmean(st["defer_regret"][ji])) if np.isfinite(st["defer_regret"][ji]).any() else float("nan"),
                                "top_expert_share": float(np.nanmean(st["defer_top_share"][ji])) if np.isfinite(st["defer_top_share"][ji]).any() else float("nan"),
                                "experts_used": float(st["experts_used"][ji].mean())})
                label = f"{d}/{s}/{b}"
                for fam, (om, bm) in FAMILIES.items():
                    if om not in by_m or bm not in by_m:
                        continue
                    cell = check_parts(config, by_m, fam, label)
                    for p, entry in cell.items():
                        parts[(p, fam)].append(entry)
                        grid_rows.append({"dataset": d, "setting": s, "budget": b, "family": fam, "part": p,
                                          "verdict": entry["verdict"]})

    claims = []
    for (p, fam), entries in parts.items():
        if not entries:
            continue
        held = [e["id"].split("/", 1)[1] for e in entries if e["verdict"] == "reproduced"]
        note = (f"holds in {len(held)}/{len(entries)} (data set/setting/budget) cells"
                + (f": {', '.join(held)}" if held else ""))
        claims.append(combine_claims(f"{p}_{fam}", f"({p}) [{fam}] {PARTS[p]}", entries, note=note))

    figures = []
    for d in config.datasets:
        figures += make_figures(config, workdir, stats, d, config.settings[0])

    def pick(method, d, s, b_prefix, j, key):
        for r in main_rows:
            if (r["method"], r["dataset"], r["setting"], r["J"]) == (method, d, s, j) and r["budget"].startswith(b_prefix):
                return r[key]
        return float("nan")

    d0, s0, jm = config.datasets[0], config.settings[0], max(js)
    verdicts = ", ".join(f"{c['id']}: {c['note'].split(':')[0].replace('holds in ', '')}" for c in claims)
    headline = (f"{d0}/{s0}, J={jm}, short budget: classifier acc CE {pick('ce', d0, s0, 'short', jm, 'classifier_accuracy_mean'):.3f} "
                f"vs PiCCE-CE {pick('picce_ce', d0, s0, 'short', jm, 'classifier_accuracy_mean'):.3f}; class mass "
                f"{pick('ce', d0, s0, 'short', jm, 'class_mass_mean'):.2f} vs {pick('picce_ce', d0, s0, 'short', jm, 'class_mass_mean'):.2f}; "
                f"converged coverage {pick('ce', d0, s0, 'converged', jm, 'coverage_mean'):.2f} vs "
                f"{pick('picce_ce', d0, s0, 'converged', jm, 'coverage_mean'):.2f}. Cells where each part holds: {verdicts}")
    tuning = {"lr_grid": [float(v) for v in config.lr_grid], "rs_alpha_grid": [float(v) for v in config.rs_alpha_grid],
              "decoupled_weight_grid": [float(v) for v in config.decoupled_weight_grid],
              "points_per_method": {m: len(grid_points(config, m)) for m in config.methods},
              "rule": ("per (data set, setting, method, budget): the grid point with the lowest validation system "
                       "error, mean over seeds and all J; test numbers are reported at that point")}
    return {"seeds": list(config.seeds), "claims": claims, "tuning": tuning,
            "tables": {"main": main_rows, "hparams": hparam_rows(chosen), "deferral_targets": defer_rows,
                       "claim_grid": grid_rows},
            "figures": figures, "headline": headline}


if __name__ == "__main__":
    from jaxlab.core.app import launch

    launch("picce", run)
