"""KPO (arXiv 2602.10609) vs GRPO / GRPO dual-clip / GSPO / GMPO on the tiny LM, under two stress
axes (noise-driven ratio spikes, drift-driven ratio growth) and an on-policy control.

For each condition x method x seed: warm-start from the cached SFT model (jaxlab.lm), run the RL trainer
(jaxlab.rl.train), record training curves and held-out avg@k / pass@k. The grid runs through
`jaxlab.core.study`: every run's history is a record under <workdir>/cells/<cond>__<method>/s<seed>.json stamped
with the hash of everything it depends on (RL section, task, SFT model), checkpointed while running under a
folder named by that hash; a rerun resumes, and a changed hyperparameter recomputes the runs it touches.

    python experiments/kpo.py --config=experiments/configs/kpo.py:quick --workdir=/tmp/kpo
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import jax
import numpy as np

from jaxlab.core import plots, study
from jaxlab.core.config import config_hash
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim, mean_std
from jaxlab.lm import cache, tasks
from jaxlab.lm.train import model_config, sft_spec
from jaxlab.lm.tokenizer import CharTokenizer
from jaxlab.rl import diagnostics as dg
from jaxlab.rl.train import make_train, rl_hparams


def _conditions(config) -> dict:
    """{condition: its complete rl settings} from `config.condition_settings` (recorded in config.json)."""
    return config.condition_settings.to_dict()


def user_rl(config) -> dict:
    """The rl values the user set (not None): they win over every condition's settings (issue 20 item 6)."""
    return {k: v for k, v in config.rl.to_dict().items() if v is not None}


def effective_rl(config, cond: str) -> dict:
    """The rl section a run of `cond` trains with: base rl, the condition's settings, the user's values."""
    conds = _conditions(config)
    if cond not in conds:
        raise ValueError(f"conditions: unknown condition {cond!r}; expected one of {sorted(conds)}")
    return {**config.rl.to_dict(), **conds[cond], **user_rl(config)}


def problems(config):
    t = config.task
    return tasks.train_eval_split(t.family, n_train=t.n_train, n_eval=t.n_eval, eval_seed=t.eval_seed,
                                  digits=t.digits)


def val_problems(config, train):
    """The validation problems of the tuning stage (split "val", disjoint from training and from the test
    problems by construction of the splits)."""
    t = config.task
    val = tasks.generate(t.family, int(config.tune.n_val), seed=int(config.tune.val_seed), split="val",
                         digits=t.digits, unique=True)
    tasks.check_disjoint(train, val)
    return val


def params_digest(params) -> str:
    """12-hex sha256 of the parameter bytes (leaf order of the pytree): names the SFT start in cell configs."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:12]


def tune_specs(config) -> list[dict]:
    """The validation grid of the tuning stage: one spec per (method, grid point) under `tune.cond`; each
    grid point is a dict of rl overrides (clip ranges, Q/V, ...)."""
    conds = _conditions(config)
    cond = config.tune.cond
    if cond not in conds:
        raise ValueError(f"tune.cond: unknown condition {cond!r}; expected one of {sorted(conds)}")
    return [dict(cond=cond, label=f"tune_{m}_{j}", method=m, point=dict(point), stage="tune",
                 rl=dict(conds[cond], method=m, **dict(point)))
            for m, points in config.tune.grids.to_dict().items() for j, point in enumerate(points)]


def choose(specs, results, seeds) -> tuple[dict, list[dict]]:
    """{method: the grid point with the highest mean final validation avg@k over the tuning seeds (ties:
    the earlier point)} and the tuning table. Only validation-split numbers enter the choice."""
    best, table = {}, []
    for sp in specs:
        m, sd = mean_std([results[(sp["cond"], sp["label"], s)]["avg"] for s in seeds])
        table.append({"method": sp["method"], "point": json.dumps(sp["point"], sort_keys=True),
                      "val_avg_mean": round(m, 4), "val_avg_std": round(sd, 4)})
        if sp["method"] not in best or m > best[sp["method"]][0]:
            best[sp["method"]] = (m, sp["point"])
    chosen = {m: p for m, (_, p) in best.items()}
    for row in table:
        row["chosen"] = row["point"] == json.dumps(chosen[row["method"]], sort_keys=True)
    return chosen, table


def run_specs(config, chosen: dict | None = None) -> list[dict]:
    """(condition, method label, rl overrides) for every run of the study (seeds apart); `chosen` holds each
    method's settings picked on validation problems (the tuning stage), applied in every condition."""
    chosen = chosen or {}
    conds = _conditions(config)
    if config.rl.method is not None:
        raise ValueError(f"rl.method: each run's method comes from `methods` (and `condition_methods`); set "
                         f"--config.methods={config.rl.method} instead of --config.rl.method")
    specs = []
    for cond in config.conditions:
        if cond not in conds:
            raise ValueError(f"conditions: unknown condition {cond!r}; expected one of {sorted(conds)}")
        methods = list(config.condition_methods.get(cond, config.methods))
        for m in methods:
            specs.append(dict(cond=cond, label=m, rl=dict(conds[cond], method=m, **chosen.get(m, {}))))
        if "gspo" in methods and cond in ("noise", "drift"):
            specs.append(dict(cond=cond, label="gspo_wide", rl=dict(
                conds[cond], method="gspo", gspo_eps_low=config.gspo_wide_eps,
                gspo_eps_high=config.gspo_wide_eps)))
    if "noise" in config.conditions:
        for q in config.qv_sweep:
            specs.append(dict(cond="noise", label=f"kpo_clipped_Q{q:g}",
                              rl=dict(conds["noise"], method="kpo_clipped", kpo_Q=q)))
        if "through" in config.ablations:
            specs.append(dict(cond="noise", label="kpo_clipped_through",
                              rl=dict(conds["noise"], method="kpo_clipped", kpo_grad="through")))
        if "ema" in config.ablations:
            specs.append(dict(cond="noise", label=f"kpo_clipped_ema{config.ema_alpha:g}",
                              rl=dict(conds["noise"], method="kpo_clipped",
                                      kpo_ema_alpha=config.ema_alpha)))
    # run order: the first four methods of config.methods in every condition first, then the rest
    return sorted(specs, key=lambda sp: 0 if sp["label"] in list(config.methods)[:4] else 1)


def make_cells(config, specs, sft_digest: str = "") -> list[study.Cell]:
    """One study cell per (condition, method label): its config holds everything a run's history depends on
    (the merged RL section, the task, the SFT model's config, seed and parameter digest, and for the tuning
    stage its validation set); the seed is the study's axis."""
    cells = []
    for spec in specs:
        rl = config.rl.to_dict()
        rl.update(spec["rl"])
        rl.update({k: v for k, v in user_rl(config).items() if k in _conditions(config)[spec["cond"]]})
        cc = {"cond": spec["cond"], "label": spec["label"], "rl": rl, "task": config.task.to_dict(),
              "sft": config.sft.to_dict(), "sft_seed": int(config.sft_seed)}
        if sft_digest:
            cc["sft_digest"] = sft_digest
        if spec.get("stage") == "tune":
            cc.update(stage="tune", val={"n": int(config.tune.n_val), "seed": int(config.tune.val_seed)})
        cells.append(study.Cell(f"{spec['cond']}__{spec['label']}", cc))
    return cells


def _ckpt_dir(workdir, cell, seed):
    """In-run checkpoints, named by the cell's config hash so a changed config never resumes another's run."""
    return os.path.join(workdir, "ckpt", cell.config["cond"],
                        f"{cell.config['label']}_s{seed}_{config_hash(cell.config)}")


def run_one(cell, seed, *, cfg, sft_params, train_p, eval_p, workdir, mw) -> dict:
    """One RL run (a study cell at one seed); returns its history (the study record)."""
    cc = cell.config
    log = lambda step, **s: mw.write(step, cond=cc["cond"], method=cc["label"], seed=seed, **s)
    ckpt_dir = _ckpt_dir(workdir, cell, seed)
    train = make_train(rl_hparams(cc["rl"]), cfg=cfg, init_params=sft_params, train_problems=train_p,
                       eval_problems=eval_p, log_fn=log, ckpt_dir=ckpt_dir)
    _, hist = train(jax.random.PRNGKey(1000 + seed))
    return hist


def run_stats(config, hist) -> dict:
    k = config.rl.eval_samples
    ev = hist["eval"]
    acc = np.array([e[f"avg@{k}"] for e in ev], dtype=float)        # dtype=float: a JSON null reads as NaN
    ent = np.array(hist.get("entropy", [np.nan]), dtype=float)
    norms = np.concatenate([np.asarray(g, dtype=float) for g in hist.get("grad_norms", [[np.nan]])])
    # collapse at the end: eval avg@k below half its running peak, or the policy entropy below a quarter
    # of its first-step value (the SFT model is already confident, so an absolute 0.05 is too strict)
    collapsed = bool(dg.collapse_flags(acc)[-1]) or bool(np.nanmean(ent[-3:]) < 0.25 * ent[0])
    mean = lambda key: float(np.nanmean(np.asarray(hist[key], dtype=float))) if hist.get(key) else float("nan")
    nan_none = lambda x: float("nan") if x is None else float(x)
    return {"avg": float(acc[-1]), "pass": nan_none(ev[-1][f"pass@{k}"]), "greedy": nan_none(ev[-1]["greedy_acc"]),
            "avg_gain": float(acc[-1] - acc[0]), "collapsed": float(collapsed),
            "spikes": float(dg.spike_count(norms, factor=config.spike_factor)),
            "max_norm": float(np.nanmax(norms)), "frac_big_norm": float(np.mean(norms > config.big_norm)),
            "clip_frac": mean("clip_frac"), "switch_raw": mean("switch_raw"),
            "switch_filt": mean("switch_filt"), "runlen_raw": mean("runlen_raw"),
            "runlen_filt": mean("runlen_filt"), "lowfreq_raw": mean("lowfreq_raw"),
            "lowfreq_filt": mean("lowfreq_filt"), "log_ratio_var": mean("log_ratio_var"),
            "entropy_end": float(np.nanmean(ent[-3:])), "reward_end": float(np.mean(np.asarray(hist["reward"][-5:], dtype=float)))}


def _tune_stage(config, workdir, run_cells, train_p, sft_digest: str):
    """Runs (or reloads) the validation grid and picks each method's settings -> (chosen, tuning table)."""
    specs = tune_specs(config)
    if not specs:
        return {}, []
    val_p = val_problems(config, train_p)
    seeds = list(config.tune.seeds)
    cells = make_cells(config, specs, sft_digest)
    if config.summarize_only and not all(study.load_record(workdir, c, sd) for c in cells for sd in seeds):
        raise ValueError(f"summarize_only: the tuning stage in {workdir!r} has not finished")
    records = run_cells(cells, seeds, val_p)
    res = {(sp["cond"], sp["label"], sd): run_stats(config, records[c.id][sd])
           for sp, c in zip(specs, cells) for sd in seeds}
    chosen, table = choose(specs, res, seeds)
    for row in table:
        row["n_val"] = len(val_p)
    return chosen, table


def run(config, workdir: str) -> dict:
    run_specs(config)      # bad conditions / rl.method fail here, before the SFT model is loaded
    tune_specs(config)
    tok = CharTokenizer()
    cfg = model_config(config.sft, tok)
    # "study": the SFT start is trained by this code into <workdir>/models (a fresh clone reproduces it);
    # "shared": the machine's model cache (quick runs)
    root = os.path.join(workdir, "models") if config.sft_cache == "study" else None
    sft_params, sft_info = cache.load_or_train(sft_spec(config.sft), config.sft_seed, root=root)
    digest = params_digest(sft_params)
    train_p, eval_p = problems(config)
    seeds = list(config.seeds)
    results, hists = {}, {}
    with MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as mw:
        def run_cells(cells, sds, ev_p):
            records = study.run_study(cells, lambda cell, seed: run_one(
                cell, seed, cfg=cfg, sft_params=sft_params, train_p=train_p, eval_p=ev_p, workdir=workdir, mw=mw),
                workdir=workdir, seeds=sds)
            for cell in cells:
                for sd in sds:
                    shutil.rmtree(_ckpt_dir(workdir, cell, sd), ignore_errors=True)   # the record is the result
            return records
        chosen, tune_table = _tune_stage(config, workdir, run_cells, train_p, digest)
        specs = run_specs(config, chosen)
        cells = make_cells(config, specs, digest)
        n_total = len(specs)
        if config.summarize_only:   # report the finished runs only (a long study still in progress)
            keep = [all(study.load_record(workdir, cell, sd) is not None for sd in seeds) for cell in cells]
            specs = [sp for sp, k in zip(specs, keep) if k]
            cells = [cell for cell, k in zip(cells, keep) if k]
            if not specs:
                raise ValueError(f"summarize_only: no spec has finished runs for all seeds in {workdir!r}")
        records = run_cells(cells, seeds, eval_p)
    for spec, cell in zip(specs, cells):
        for seed in seeds:
            h = records[cell.id][seed]
            hists[(spec["cond"], spec["label"], seed)] = h
            results[(spec["cond"], spec["label"], seed)] = run_stats(config, h)
    k = config.rl.eval_samples
    vals = lambda cond, label, key: [results[(cond, label, s)][key] for s in seeds]

    # ---- tables
    table = []
    for spec in specs:
        row = {"condition": spec["cond"], "method": spec["label"]}
        for key in ("avg", "avg_gain", "pass", "greedy", "collapsed", "spikes", "max_norm", "frac_big_norm",
                    "clip_frac", "switch_raw", "switch_filt", "entropy_end"):
            m, s = mean_std(vals(spec["cond"], spec["label"], key))
            row[f"{key}_mean"], row[f"{key}_std"] = round(m, 4), round(s, 4)
        table.append(row)
    sft_ev = hists[(specs[0]["cond"], specs[0]["label"], seeds[0])]["eval"][0]

    # ---- claims (paper: KPO(-clipped) is more stable and at least as accurate as GRPO/GSPO/GMPO)
    claims = []
    have = {(sp["cond"], sp["label"]) for sp in specs}
    conds = [c for c in config.conditions if any(sp["cond"] == c for sp in specs)]
    for cond in [c for c in conds if c != "on_policy"]:
        baselines = [m for m in ("grpo", "grpo_dual", "gspo", "gmpo") if (cond, m) in have]
        ours = "kpo_clipped" if (cond, "kpo_clipped") in have else None
        if ours is None or not baselines:
            continue
        claims.append(claim(
            f"accuracy_{cond}", f"KPO-clipped is at least as accurate as the GRPO family ({cond} stress)",
            f"held-out avg@{k}", ours=(ours, vals(cond, ours, "avg")),
            baselines={b: vals(cond, b, "avg") for b in baselines}, higher_is_better=True,
            kind="no_worse", margin=0.02,
            note=f"final held-out avg@{k} on {len(eval_p)} {config.task.family} problems; margin 0.02 (2 points "
                 f"of avg@{k}: below the smallest gain GRPO makes over the SFT start in the learning regime, "
                 "so a method that loses the whole learning gain fails it)"))
        claims.append(claim(
            f"stability_spikes_{cond}", f"KPO-clipped has fewer gradient-norm spikes than the GRPO family "
            f"({cond} stress)", f"spikes (pre-clip norm > {config.spike_factor:g} x its running median)",
            ours=(ours, vals(cond, ours, "spikes")), baselines={b: vals(cond, b, "spikes") for b in baselines},
            higher_is_better=False, kind="better", note="spike counts per run (every minibatch update), never a "
            "max norm"))
        claims.append(claim(
            f"stability_frac_{cond}", f"KPO-clipped has a smaller share of updates with a pre-clip gradient "
            f"norm > {config.big_norm:g} than the GRPO family ({cond} stress)", f"fraction of updates with norm > "
            f"{config.big_norm:g}", ours=(ours, vals(cond, ours, "frac_big_norm")),
            baselines={b: vals(cond, b, "frac_big_norm") for b in baselines}, higher_is_better=False,
            kind="better", note="the max norm is heavy-tailed across seeds (one spike decides it); this share "
            "is the steadier stability measure the issue asks to report next to it"))
        if (cond, "kpo_tr") in have:
            claims.append(claim(
                f"ours_tr_{cond}", f"Ours (KPO-TR: raw-ratio trust region) is at least as accurate as "
                f"KPO-clipped ({cond})", f"held-out avg@{k}", ours=("kpo_tr", vals(cond, "kpo_tr", "avg")),
                baselines={"kpo_clipped": vals(cond, "kpo_clipped", "avg")}, higher_is_better=True,
                kind="no_worse", margin=0.02, block="variant", note="our variant, not from the paper"))
    if ("learn", "grpo") in have:
        claims.append(claim(
            "grpo_learns", "In the learning regime GRPO raises held-out accuracy over the SFT start "
            "(sanity check of the setting, not a paper claim)", f"held-out avg@{k} gain",
            ours=("grpo", vals("learn", "grpo", "avg_gain")), baselines={"sft_start": [0.0] * len(seeds)},
            higher_is_better=True, kind="better", block="sanity",
            note="final minus step-0 held-out avg@k per seed (step-0 evaluation uses the run's own key)"))
    noisy = [c for c in ("noise", "learn_noise") if (c, "kpo_clipped") in have]
    if noisy:
        claims.append(claim(
            "switch_reduction", "Filtering lowers the switch frequency of the off-policy indicator "
            f"1[|z|>log 1.2] ({noisy[0]} stress, KPO-clipped runs)", "switch frequency",
            ours=("filtered", vals(noisy[0], "kpo_clipped", "switch_filt")),
            baselines={"raw": vals(noisy[0], "kpo_clipped", "switch_raw")}, higher_is_better=False, kind="better", block="sanity",
            note=f"diagnostic filter Q/V={config.rl.diag_Q:g} on every update's log-ratios"))

    # ---- figures
    figs = []
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    for cond in conds:
        labels = [s["label"] for s in specs if s["cond"] == cond and s["label"] in config.methods]
        if not labels:
            continue
        steps = np.arange(1, len(hists[(cond, labels[0], seeds[0])]["reward"]) + 1)
        for key, ylabel in (("reward", "train reward"), ("grad_norm_max", "max pre-clip grad norm")):
            series = {}
            for lb in labels:
                arr = [hists[(cond, lb, s)].get(key) for s in seeds]
                if all(a is not None and len(a) == len(steps) for a in arr):
                    series[lb] = np.array(arr, float)
            if series:
                p = f"figures/{cond}_{key}.png"
                plots.curves(os.path.join(workdir, p), steps, series, xlabel="RL step", ylabel=ylabel,
                             title=f"{cond}: {ylabel} (mean ± std over {len(seeds)} seeds)",
                             logy=key.startswith("grad"))
                figs.append(p)
        ev_steps = [e["step"] for e in hists[(cond, labels[0], seeds[0])]["eval"]]
        series = {lb: np.array([[e[f"avg@{k}"] for e in hists[(cond, lb, s)]["eval"]] for s in seeds])
                  for lb in labels}
        p = f"figures/{cond}_eval_avg.png"
        plots.curves(os.path.join(workdir, p), ev_steps, series, xlabel="RL step",
                     ylabel=f"held-out avg@{k}", title=f"{cond}: held-out avg@{k}")
        figs.append(p)

    def fmt(cond, lb):
        m, s = mean_std(vals(cond, lb, "avg"))
        return f"{lb} {m:.3f}±{s:.3f}"
    main_cond = "noise" if "noise" in conds else conds[0]
    head = (f"KPO on tiny-LM {config.task.family} ({len(seeds)} seeds, "
            f"{effective_rl(config, main_cond)['steps']} steps), "
            f"held-out avg@{k} under {main_cond} stress: "
            + ", ".join(fmt(main_cond, m) for m in config.methods if (main_cond, m) in have)
            + f" (SFT start {sft_ev[f'avg@{k}']:.3f})")
    if "learn_noise" in conds:
        def gain(lb):
            m, sd = mean_std(vals("learn_noise", lb, "avg_gain"))
            return f"{lb} {m:+.3f}±{sd:.3f}"
        head += ("; learning regime under noise, avg@" + str(k) + " gain over the SFT start: "
                 + ", ".join(gain(sp["label"]) for sp in specs if sp["cond"] == "learn_noise"))
    partial = {"partial": f"{len(specs)} of {n_total} method x condition specs finished (summarize_only)"} \
        if len(specs) < n_total else {}
    return {"seeds": seeds, "claims": claims, **partial,
            "tables": {"main": table, **({"tuning": tune_table} if tune_table else {}),
                       "sft_start": [{"greedy": sft_ev["greedy_acc"], f"avg@{k}": sft_ev[f"avg@{k}"],
                                      f"pass@{k}": sft_ev[f"pass@{k}"], "sft_cached": sft_info["cached"],
                                      "sft_key": sft_info["key"], "sft_params_digest": digest,
                                      "sft_cache": config.sft_cache}]},
            **({"chosen_on_validation": chosen} if chosen else {}),
            "figures": figs, "headline": head}


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("kpo", run)
