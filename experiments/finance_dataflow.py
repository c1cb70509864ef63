"""Paper A (arXiv 2601.10143): adaptive financial dataflow vs augmentation baselines, the RL comparison and
the drift table.

run(config, workdir) -> summary dict.
* Forecasting of next-day returns on the synthetic regime universe and skfolio's 20-stock S&P 500 panel
  x task models x methods x seeds x chronological expanding folds (every unit = one training run).
* RL: a DQN trader on the pure-JAX environment trained on the training windows of the RL fold, without
  augmentation (original), with random augmentation (RandAugment bank) and with the trained planner's
  augmentation (ours), evaluated greedily on the test period (equal-weight over the assets).
* Drift: PSI / KS / MMD of validation vs train against test, per fold.
* Provenance log, exact replay and the per-epoch quality monitor for 'ours' (first seed, fold, model).

Resumable: the grid runs through `jaxlab.core.study`; every (unit, seed) result is a record under
`workdir/cells/` stamped with the hash of the unit's config, so running the same command again skips finished
units and a changed hyperparameter recomputes the units it touches (and nothing else).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxlab.core import loop, plots, study
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim, combine_claims, mean_std
from jaxlab.finance import data as data_lib
from jaxlab.finance import dqn as dqn_lib
from jaxlab.finance import monitor, provenance
from jaxlab.finance import train as train_lib
from jaxlab.finance.ops import MIX_OPS, SINGLE_OPS

F_KEYS = ("val_mse", "test_mse", "test_mae", "ic", "icir", "rank_ic", "ls_sharpe", "ls_mdd")
R_KEYS = ("sharpe", "total_return", "mdd", "mean_daily", "val_sharpe")
ARMS = ("original", "randaugment", "ours")


def load_dataset(name, config):
    if name == "synthetic":
        panel, _ = data_lib.synthetic_universe(0, num_assets=config.synthetic_assets,
                                               num_days=config.synthetic_days)
        return panel
    if name == "real":
        return data_lib.skfolio_panel(config.real_start, config.real_end)
    if name == "arch":
        return data_lib.real_panel(config.real_start, config.real_end)
    raise ValueError(f"datasets: unknown data set {name!r}; expected 'synthetic', 'real' or 'arch'")


def drift_table(panel, folds):
    rows = []
    f = data_lib.daily_features(panel).reshape(panel.num_days - 1, -1)
    for k, (a, b, e) in enumerate(folds):
        tr, va, te = f[:a - 1], f[a - 1:b - 1], f[b - 1:e - 1]
        dt, dv = monitor.drift_distances(tr, te), monitor.drift_distances(va, te)
        rows.append({"fold": k, **{f"{m}_train_test": dt[m] for m in dt}, **{f"{m}_val_test": dv[m] for m in dv}})
    return rows


def forecast_units(config):
    return [(ds, k, model, method, seed) for ds in config.datasets for k in range(config.num_folds)
            for model in config.models for method in config.methods for seed in config.seeds]


def rl_units(config):
    return [(ds, seed) for ds in config.datasets for seed in config.seeds]


def _dqn_hparams(config) -> dqn_lib.DQNHParams:
    """The DQN section of the config -> its typed hyperparameters (the library boundary)."""
    r = config.rl
    return dqn_lib.DQNHParams(window=int(r.window), num_envs=int(r.num_envs), buffer_size=int(r.buffer_size),
                              eps_decay_iters=int(r.eps_decay_iters), target_every=int(r.target_every),
                              lr=float(r.lr), gamma=float(r.gamma))


def run_rl(config, prep, tr, out_ours, seed):
    """DQN without / with random / with the planner's augmentation; returns [3 arms, len(R_KEYS)] and B&H."""
    hp = _dqn_hparams(config)
    rng = np.random.default_rng(1000 + seed)
    n = min(config.rl.bank_size, len(prep.x_tr))
    n -= n % config.batch_size
    idx = np.sort(rng.choice(len(prep.x_tr), n, replace=False))
    x, y, a, d = prep.x_tr[idx], prep.y_tr[idx], prep.asset_tr[idx], prep.day_tr[idx]
    st = out_ours["state"]
    key = jax.random.PRNGKey(10_000 + seed)
    banks = {"original": x}
    for name, code in (("randaugment", 1), ("ours", 3)):
        banks[name] = dqn_lib.make_bank(tr.augment, tr.plan, st.params["theta"], st.params["phi"], x, y, a, d,
                                        jax.random.fold_in(key, code), policy_code=code, chunk=config.batch_size)
    fmu, fsd = prep.fmu, prep.fsd
    orig = dqn_lib.bank_from_windows(x, fmu, fsd)
    stacked = [dqn_lib.concat_banks(orig, dqn_lib.bank_from_windows(banks[arm], fmu, fsd)) for arm in ARMS]
    bank = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *stacked)
    alphas = jnp.array([0.0, config.rl.alpha, config.rl.alpha])
    chunk = int(config.rl.chunk)                                       # identical start for every arm
    state, _ = loop.run(dqn_lib.arms_trainer(hp, len(ARMS)), jax.random.fold_in(key, 0),
                        steps=(int(config.rl.iters) // chunk) * chunk, chunk=chunk,
                        data=dqn_lib.DQNBatch(bank, alphas, n), progress=False)
    S = prep.num_assets
    L1 = prep.x_te.shape[1]
    xte, yte = prep.x_te.reshape(-1, S, L1, 5), prep.y_te.reshape(-1, S)
    xva, yva = prep.x_va.reshape(-1, S, L1, 5), prep.y_va.reshape(-1, S)
    mt, _ = dqn_lib.arms_evaluate(state.params, xte, yte, fmu, fsd, hp=hp)
    mv, _ = dqn_lib.arms_evaluate(state.params, xva, yva, fmu, fsd, hp=hp)
    res = np.stack([np.asarray(mt[k]) if k != "val_sharpe" else np.asarray(mv["sharpe"]) for k in R_KEYS], -1)
    bh = dqn_lib.strategy_metrics(jnp.asarray(yte.mean(1)))
    return res, {k: float(v) for k, v in bh.items()}


def _empty_state(config):
    nf, nr = len(forecast_units(config)), len(rl_units(config))
    return {"f": np.full((nf, len(F_KEYS)), np.nan), "f_done": np.zeros(nf, np.int32),
            "r": np.full((nr, len(ARMS), len(R_KEYS)), np.nan), "r_done": np.zeros(nr, np.int32),
            "bh": np.full((len(config.datasets), 4), np.nan),
            "replay": np.zeros((len(config.datasets), 2), np.int32)}


_NOT_CELL = ("size", "seeds", "datasets", "models", "methods", "model", "rl", "rl_model")


def forecast_cell(config, ds, k, model, method) -> study.Cell:
    """One forecasting cell; its config holds every setting a unit's metrics depend on (the seed is the axis)."""
    base = {key: v for key, v in config.to_dict().items() if key not in _NOT_CELL}
    cc = {**base, "dataset": ds, "fold": k, "model": model, "method": method}
    if k == 0 and method == "ours" and model == config.models[0]:
        # this cell's first seed also runs the quality monitor and the provenance log; the monitor draws from
        # the run's NumPy generator, so it changes that run's numbers and belongs to the cell's config
        cc["monitored_seed"] = int(config.seeds[0])
    return study.Cell(f"{ds}__f{k}__{model}__{method}", cc)


def rl_cell(config, ds) -> study.Cell:
    """The RL cell of a data set: the planner comes from the 'ours' unit of rl_model on the last fold."""
    src = forecast_cell(config, ds, config.num_folds - 1, config.rl_model, "ours")
    return study.Cell(f"{ds}__rl", {**src.config, "rl": config.rl.to_dict()})




def forecast_unit(cc: dict, seed: int, data: dict, *, first: bool, workdir: str):
    """Trains one (data set, fold, model, method, seed) unit. Returns (record, (prep, trainer, output))."""
    ds, k = cc["dataset"], cc["fold"]
    prep = data_for(cc, data)["prep"][k]
    tr = train_lib.make_train(train_lib.TrainHParams.from_config(cc), prep)
    log_path = os.path.join(workdir, f"provenance_{ds}.jsonl") if first else None
    out = tr(jax.random.PRNGKey(seed), cc["method"], log_path=log_path, monitor=first)
    rec = {"metrics": [out["metrics"].get(kk, np.nan) for kk in F_KEYS]}
    if first:
        with open(os.path.join(workdir, f"monitor_{ds}.json"), "w") as fh:
            json.dump(out["history"], fh)
        rep = provenance.replay(provenance.read_log(log_path), tr.augment, prep.x_tr, prep.y_tr,
                                prep.asset_tr, prep.day_tr)
        rec["replay"] = [rep["steps"], rep["matched"]]
    return rec, (prep, tr, out)


def data_for(cc: dict, data: dict) -> dict:
    """The panel, folds and prepared folds of a cell's data set (one data set in memory at a time)."""
    key = json.dumps({k: cc[k] for k in ("dataset", "num_folds", "lookback", "synthetic_assets", "synthetic_days",
                                         "real_start", "real_end")}, sort_keys=True)
    if key not in data:
        data.clear()
        panel = load_dataset(cc["dataset"], ml_collections.ConfigDict(cc))
        data[key] = {"panel": panel, "folds": data_lib.expanding_folds(panel.num_days, cc["num_folds"]), "prep": {}}
    d = data[key]
    if cc["fold"] not in d["prep"]:
        d["prep"] = {cc["fold"]: train_lib.prepare(d["panel"], cc["lookback"], *d["folds"][cc["fold"]])}
    return d


def run(config, workdir):
    """The grid through `jaxlab.core.study`: one record per (forecast cell, seed) and per (RL cell, seed), stamped
    with the hash of the cell's config, so a changed hyperparameter recomputes only what it touches and a killed
    run resumes. Per data set, its forecast cells run first, then its RL cell (which reuses the planner trained by
    the source unit in this process, or retrains that deterministic unit when its record was reused)."""
    t_start = time.time()
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    state = _empty_state(config)
    funits, runits = forecast_units(config), rl_units(config)
    seeds = [int(s) for s in config.seeds]
    data, sources = {}, {}
    rl_fold = config.num_folds - 1
    for di, ds in enumerate(config.datasets):
        cells = [forecast_cell(config, ds, k, model, method) for k in range(config.num_folds)
                 for model in config.models for method in config.methods]
        src = forecast_cell(config, ds, rl_fold, config.rl_model, "ours")

        def run_forecast(cell, seed, ds=ds, src=src):
            rec, ctx = forecast_unit(cell.config, seed, data, first=seed == cell.config.get("monitored_seed"),
                                     workdir=workdir)
            if cell.id == src.id:
                sources[(ds, seed)] = ctx
            return rec

        recs = study.run_study(cells, run_forecast, workdir=workdir, seeds=seeds)
        for cell in cells:
            cc = cell.config
            for seed in seeds:
                ui = funits.index((ds, cc["fold"], cc["model"], cc["method"], seed))
                rec = recs[cell.id][seed]
                state["f"][ui] = [np.nan if v is None else v for v in rec["metrics"]]
                state["f_done"][ui] = 1
                if "replay" in rec:
                    state["replay"][di] = rec["replay"]
        if config.rl_model not in config.models or "ours" not in config.methods:
            continue

        def run_rl_cell(cell, seed, ds=ds, src=src):
            if (ds, seed) not in sources:                       # its record was reused: retrain the source unit
                sources[(ds, seed)] = forecast_unit(src.config, seed, data, workdir=workdir,
                                                    first=seed == src.config.get("monitored_seed"))[1]
            prep, tr, out = sources.pop((ds, seed))
            res, bh = run_rl(config, prep, tr, out, seed)
            return {"r": res, "bh": [bh[kk] for kk in ("sharpe", "total_return", "mdd", "mean_daily")]}

        rcell = rl_cell(config, ds)
        rrecs = study.run_study([rcell], run_rl_cell, workdir=workdir, seeds=seeds)[rcell.id]
        for seed in seeds:
            ri = runits.index((ds, seed))
            state["r"][ri] = np.asarray(rrecs[seed]["r"], dtype=float)
            state["r_done"][ri] = 1
            state["bh"][di] = np.asarray(rrecs[seed]["bh"], dtype=float)
        sources.clear()
    return summarize(config, workdir, state, time.time() - t_start)


# ------------------------------------------------------------------------------------------- summary
def mse_figure(path, ds, models, methods, per_seed):
    """Test MSE of every augmenter relative to Original, in percent, per seed then mean ± std (paired: same
    seed and folds). The raw MSEs differ by ~1% (bars from 0 hid that); `per_seed(ds, model, method, key)`."""
    others = [m for m in methods if m != "original"]
    series = {}
    for m in others:
        rel = [[(a / b - 1.0) * 100.0 for a, b in zip(per_seed(ds, model, m, "test_mse"),
                                                      per_seed(ds, model, "original", "test_mse"))]
               for model in models]
        series[m] = ([mean_std(r)[0] for r in rel], [mean_std(r)[1] for r in rel])
    return plots.grouped_bars(path, models, series, ylabel="test MSE change vs Original (%)",
                              title=f"{ds}: test MSE relative to Original (< 0 is better; mean ± std over seeds)",
                              zero_line=True)


def op_weights_figure(path, ds, pm):
    """The planner's mean probability of every (single op, mix op) pair over steps, as departures from the
    uniform 1/16 (a heatmap: the top ops are tied to 3 decimals, so six lines drew one line)."""
    names = [f"{s}+{mx}" for s in SINGLE_OPS for mx in MIX_OPS]
    pm = np.asarray(pm, dtype=np.float64)
    return plots.heatmap(path, pm.T, row_labels=names, xlabel="planner step", center=1.0 / pm.shape[1],
                         title=f"planner op weights ({ds}); white = uniform 1/{pm.shape[1]}",
                         cbar_label="mean p")


def power_check(config, per_seed):
    """The power check (sanity block): the Original forecaster's test IC on the synthetic universe, whose
    idiosyncratic returns carry a planted AR(0.3) signal, must be clearly above 0 (one-sided t bound) for the
    model's forecasting claims to be testable. -> (claims, {model: untestable reason} for failed models)."""
    if "synthetic" not in config.datasets or "original" not in config.methods or len(config.seeds) < 2:
        return [], {}
    parts, failed = [], {}
    for model in config.models:
        ic = per_seed("synthetic", model, "original", "ic")
        c = claim(f"power_ic_{model}", f"the Original {model} finds the planted signal: test IC > 0 (synthetic)",
                  "information coefficient", ours=("original", ic), baselines={"zero": [0.0] * len(ic)},
                  higher_is_better=True, block="sanity", note="mean daily cross-sectional IC on the test split, "
                  "mean over folds per seed; a recipe that cannot find a planted signal cannot show an "
                  "augmentation effect")
        parts.append(c)
        if c["verdict"] != "reproduced":
            failed[model] = (f"power check failed: the Original {model}'s test IC on the synthetic universe is "
                             f"{np.mean(ic):+.3f} (lower bound {c['baselines'][0].get('ci_low', float('nan')):+.3f}"
                             "), not clearly above 0, so an MSE difference cannot be attributed to augmentation")
    return [combine_claims("power_check", "Power check: each task model trained on Original finds the planted "
                           "signal of the synthetic universe", parts, block="sanity")], failed


def summarize(config, workdir, state, elapsed):
    funits, runits = forecast_units(config), rl_units(config)
    with MetricsWriter(os.path.join(workdir, "metrics.jsonl.tmp")) as w:
        for i, (ds, k, model, method, seed) in enumerate(funits):
            w.write(i, kind="forecast", dataset=ds, fold=k, model=model, method=method, seed=seed,
                    **{kk: float(v) for kk, v in zip(F_KEYS, state["f"][i])})
        for i, (ds, seed) in enumerate(runits):
            for j, arm in enumerate(ARMS):
                w.write(len(funits) + i, kind="rl", dataset=ds, arm=arm, seed=seed,
                        **{kk: float(v) for kk, v in zip(R_KEYS, state["r"][i, j])})
    os.replace(os.path.join(workdir, "metrics.jsonl.tmp"), os.path.join(workdir, "metrics.jsonl"))

    def per_seed(ds, model, method, key):
        j = F_KEYS.index(key)
        return [float(np.nanmean([state["f"][i, j] for i, u in enumerate(funits)
                                  if u[0] == ds and u[2] == model and u[3] == method and u[4] == s]))
                for s in config.seeds]

    table = []
    for ds in config.datasets:
        for model in config.models:
            for method in config.methods:
                row = {"dataset": ds, "model": model, "method": method}
                for key in ("test_mse", "test_mae", "ic", "rank_ic", "ls_sharpe", "ls_mdd"):
                    mu, sd = mean_std(per_seed(ds, model, method, key))
                    row[f"{key}_mean"], row[f"{key}_std"] = mu, sd
                table.append(row)
    claims, figures = [], []
    base = [m for m in config.methods if m != "ours"]
    power_claims, no_power = power_check(config, per_seed)
    parts = []
    for model in config.models:
        for ds in config.datasets:
            parts.append(claim(f"mse_vs_original_{ds}_{model}",
                               f"ours has lower test MSE than Original ({ds}, {model})", "test_mse_x1e4",
                               ours=("ours", [v * 1e4 for v in per_seed(ds, model, "ours", "test_mse")]),
                               baselines={"original": [v * 1e4 for v in per_seed(ds, model, "original", "test_mse")]},
                               higher_is_better=False, note="MSE x 1e4, mean over folds per seed",
                               untestable_reason=no_power.get(model)))
    claims.append(combine_claims(
        "forecast_mse", "Planner + scheduler give lower test MSE than Original for most task models "
        "(paper Table II)", parts,
        note="The paper's own mixed cases: for the Transformer its gain over TrivialAugment is ~0 and for the "
             "crypto TCN MAE it loses; so a 'mixed' verdict with the Transformer part not reproduced is the "
             "paper's pattern, not a contradiction. Per-model verdicts are the parts."))
    rparts = []
    augmenters = [b for b in base if b not in ("original", "ours_no_mixup")]
    for model in (config.models if augmenters else []):
        for ds in config.datasets:
            rparts.append(claim(f"mse_vs_random_{ds}_{model}", f"ours beats the random/learned augmentation "
                                f"baselines on test MSE ({ds}, {model})", "test_mse_x1e4",
                                ours=("ours", [v * 1e4 for v in per_seed(ds, model, "ours", "test_mse")]),
                                baselines={b: [v * 1e4 for v in per_seed(ds, model, b, "test_mse")]
                                           for b in augmenters},
                                higher_is_better=False, untestable_reason=no_power.get(model)))
    if rparts:
        claims.append(combine_claims("forecast_mse_vs_augmenters", "Ours beats RandAugment, TrivialAugment and "
                                     "AdaAug on test MSE (paper Table II)", rparts))
    mparts = [claim(f"mse_vs_no_mixup_{ds}_{model}", f"ours beats ours without mix-up on test MSE ({ds}, {model})",
                    "test_mse_x1e4", ours=("ours", [v * 1e4 for v in per_seed(ds, model, "ours", "test_mse")]),
                    baselines={"ours_no_mixup": [v * 1e4 for v in per_seed(ds, model, "ours_no_mixup", "test_mse")]},
                    higher_is_better=False, untestable_reason=no_power.get(model))
              for model in config.models for ds in config.datasets if "ours_no_mixup" in config.methods]
    if mparts:
        claims.append(combine_claims("forecast_mse_mixup_ablation", "The mix-up step helps: ours beats ours "
                                     "without mix-up on test MSE (paper ablation)", mparts))
    # RL
    rl_parts, rl_table = [], []
    for di, ds in enumerate(config.datasets):
        vals = {arm: [float(state["r"][runits.index((ds, s)), j, R_KEYS.index("sharpe")]) for s in config.seeds]
                for j, arm in enumerate(ARMS)}
        rl_parts.append(claim(f"rl_sharpe_{ds}", f"DQN trained with the planner's augmentation has a higher test "
                              f"Sharpe than DQN on the original data ({ds})", "sharpe_sqrt252",
                              ours=("dqn+ours", vals["ours"]), baselines={"dqn": vals["original"]},
                              higher_is_better=True,
                              note="equal-weight over assets, 10 bp per unit traded; randaugment arm in the table"))
        for j, arm in enumerate(ARMS):
            row = {"dataset": ds, "agent": f"dqn+{arm}" if arm != "original" else "dqn"}
            for kk in R_KEYS:
                mu, sd = mean_std([float(state["r"][runits.index((ds, s)), j, R_KEYS.index(kk)])
                                   for s in config.seeds])
                row[f"{kk}_mean"], row[f"{kk}_std"] = mu, sd
            rl_table.append(row)
        rl_table.append({"dataset": ds, "agent": "buy_and_hold_equal_weight",
                         **{f"{kk}_mean": float(v) for kk, v in zip(("sharpe", "total_return", "mdd", "mean_daily"),
                                                                     state["bh"][di])}})
    claims.append(combine_claims("rl_sharpe", "RL trader trained with the adaptive dataflow has better "
                                 "risk-adjusted returns (paper Table III)", rl_parts))
    # drift
    drift_rows = []
    for ds in config.datasets:
        panel = load_dataset(ds, config)
        for r in drift_table(panel, data_lib.expanding_folds(panel.num_days, config.num_folds)):
            drift_rows.append({"dataset": ds, **r})
    dparts = []
    for ds in config.datasets:
        rows = [r for r in drift_rows if r["dataset"] == ds]
        for m in ("psi", "ks", "mmd"):
            dparts.append(claim(f"drift_{ds}_{m}", f"Dist(val, test) < Dist(train, test) under {m} ({ds})", m,
                                ours=("val->test", [r[f"{m}_val_test"] for r in rows]),
                                baselines={"train->test": [r[f"{m}_train_test"] for r in rows]},
                                higher_is_better=False, block="sanity",
                                note="one value per fold (not per seed): a property of the data split"))
    claims.append(combine_claims("drift", "Validation is closer to test than train is (paper Table I)", dparts))
    claims += power_claims
    for di, ds in enumerate(config.datasets):
        drift_rows.append({"dataset": ds, "fold": -1, "replay_steps": int(state["replay"][di, 0]),
                           "replay_matched": int(state["replay"][di, 1])})
    # figures
    for ds in config.datasets:
        rows = [r for r in table if r["dataset"] == ds]
        figures.append(mse_figure(os.path.join(workdir, "figures", f"mse_{ds}.png"), ds, list(config.models),
                                  list(config.methods), per_seed))
        mpath, ppath = (os.path.join(workdir, f"{n}_{ds}.{e}") for n, e in (("monitor", "json"), ("provenance", "jsonl")))
        if os.path.exists(mpath):
            hist = json.load(open(mpath))
            figures.append(plots.lines(os.path.join(workdir, "figures", f"monitor_{ds}.png"), np.arange(len(hist)),
                                       {"MMD aug->val": [h.get("mmd_aug_val", np.nan) for h in hist],
                                        "MMD train->val": [h.get("mmd_train_val", np.nan) for h in hist],
                                        "disc. score": [h.get("disc_score", np.nan) for h in hist]},
                                       xlabel="epoch", ylabel="distance", title=f"quality monitor ({ds})"))
        if os.path.exists(ppath):
            pm = np.array([r["p_mean"] for r in provenance.read_log(ppath)])
            figures.append(op_weights_figure(os.path.join(workdir, "figures", f"op_weights_{ds}.png"), ds, pm))
    figures.append(plots.grouped_bars(os.path.join(workdir, "figures", "rl_sharpe.png"), list(config.datasets),
                                      {r: ([x["sharpe_mean"] for x in rl_table if x["agent"] == r],
                                           [x["sharpe_std"] for x in rl_table if x["agent"] == r])
                                       for r in ("dqn", "dqn+randaugment", "dqn+ours")},
                                      ylabel="test Sharpe (sqrt 252)", title="DQN trader"))
    figures = [os.path.relpath(f, workdir) for f in figures]
    v = {c["id"]: c["verdict"] for c in claims}
    fm = {p["id"].split("_", 3)[-1]: p["verdict"] for p in claims[0]["parts"]}
    headline = (f"forecast MSE vs Original: {v['forecast_mse']} ({sum(x == 'reproduced' for x in fm.values())}/"
                f"{len(fm)} data set x model cells); RL Sharpe: {v['rl_sharpe']}; drift: {v['drift']} "
                f"({len(config.datasets)} data sets x {len(config.models)} models x {len(config.seeds)} seeds x "
                f"{config.num_folds} folds)")
    return {"seeds": list(config.seeds), "claims": claims,
            "tables": {"forecast": table, "rl": rl_table, "drift": drift_rows},
            "figures": figures, "headline": headline, "run_time_s": elapsed}


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("finance_dataflow", run)
