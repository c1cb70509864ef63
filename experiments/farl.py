"""FARL miniature: failure-aware offline-to-online PPO on FailureBench-style Brax tasks.

Per task: scripted offline data -> offline pretraining (BC + Uni-O4-style clipped step, recovery BC, world-model
ensemble, Recovery-RL twin risk critics) -> eps_safe chosen on held-out validation rollouts of the pretrained TASK
policy (largest grid value with recall >= target; before any comparison) -> online PPO for every arm, seeds vmapped,
counting every IR failure. Every arm and the validation run share one compiled program per task.
The grid runs through `jaxlab.core.study` (records under workdir/cells/ stamped with the hash of the task's
config): resumable at arm granularity, and a changed hyperparameter recomputes instead of reusing old arms.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import plots, study
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim, mean_std
from jaxlab.farl import offline
from jaxlab.farl.envs import make_env
from jaxlab.farl.ppo import make_arm, make_train
from jaxlab.farl.safety import auroc, precision_recall, risk_labels


def _clock():
    return time.time(), time.process_time()


def _since(t):
    return {"wall_s": round(time.time() - t[0], 2), "cpu_s": round(time.process_time() - t[1], 2)}


def choose_eps(scores, labels, grid, target_recall):
    """Largest eps in grid with recall(scores > eps) >= target_recall; (eps, precision, recall).

    If no grid value reaches the target the smallest one is used. scores, labels: same shape."""
    best = (min(grid), *map(float, precision_recall(scores > min(grid), labels)))
    for eps in sorted(grid):
        p, r = map(float, precision_recall(scores > eps, labels))
        if r >= target_recall:
            best = (eps, p, r)
    return best


def trace_time_major(trace):
    """[S, iterations, L, N, ...] per-step traces -> [iterations * L, S * N, ...] time-major (iterations are
    contiguous, so episodes that span two iterations stay whole)."""
    def f(x):
        x = np.asarray(x)
        s, it, l, n = x.shape[:4]
        return x.transpose(1, 2, 0, 3, *range(4, x.ndim)).reshape(it * l, s * n, *x.shape[4:])
    return {k: f(v) for k, v in trace.items()}


def validate_critics(train_seeds, pre, cc):
    """eps_safe for both critics on held-out rollouts of the pretrained task policy (no switch, no learning).

    Runs the online program itself with learn=0 and eps=+inf (keys 3000+i, disjoint from the online seeds), so
    the validation rollouts follow exactly the distribution the critic meets at the start of fine-tuning.
    Labels: a failure within the next H steps of the same episode (`risk_labels`). Rule (fixed in the config,
    before any comparison): the largest eps in cc["eps_grid"] with recall >= cc["target_recall"] (`cc`: a
    `task_config`).
    """
    keys = jnp.stack([jax.random.PRNGKey(3000 + i) for i in range(cc["n_val_seeds"])])
    _, m = train_seeds(keys, make_arm("farl", eps_wm=float("inf"), learn=False), pre)
    tr = trace_time_major(m["trace"])
    labels = np.asarray(risk_labels(jnp.asarray(tr["cost"]), jnp.asarray(tr["done"]), horizon=cc["horizon"]))
    out = {"val_steps": int(labels.size), "val_failures": int(tr["cost"].sum()), "val_positive_steps": int(labels.sum())}
    for name, key in (("farl", "risk_wm"), ("recovery_rl", "risk_q")):
        eps, p, r = choose_eps(tr[key], labels, list(cc["eps_grid"]), cc["target_recall"])
        au = auroc(tr[key].ravel(), labels.ravel()) if 0 < labels.sum() < labels.size else float("nan")
        out[name] = {"eps_safe": eps, "precision": p, "recall": r, "val_trigger_rate": float((tr[key] > eps).mean()),
                     "auroc": au}
    return out


def task_config(config, task) -> dict:
    """Everything (JSON-able) an arm's per-seed result on `task` depends on: the offline stage, the critic
    validation (its keys are 3000 + i for i < number of seeds), the online PPO and the final window."""
    base = {k: v for k, v in config.to_dict().items() if k not in ("tasks", "arms", "seeds")}
    return {**base, "task": task, "n_val_seeds": len(config.seeds)}


def offline_stage(task, cc):
    """Offline data, pretraining, the world model's held-out failure AUROC and the critic validation of one
    task (`cc`: a `task_config`). Returns (record, context): the JSON-able record and what the arms need."""
    env = make_env(task, episode_length=cc["episode_length"])
    timing = {"loadavg_1m_at_start": os.getloadavg()[0]}
    t = _clock()
    make_data = jax.jit(lambda k: offline.make_datasets(env, k, num_envs=cc["data_envs"], steps=cc["data_steps"],
                                                        noise=cc["demo_noise"]))
    raw = make_data(jax.random.PRNGKey(1000))
    timing["data"] = _since(t)
    t = _clock()
    pre, fit = offline.pretrain(jax.random.PRNGKey(1001), raw, gamma_safe=cc["gamma_safe"], bc_steps=cc["bc_steps"],
                                wm_steps=cc["wm_steps"], q_steps=cc["q_steps"],
                                offline_ppo_steps=cc["offline_ppo_steps"], ensemble=cc["ensemble"])
    timing["pretrain"] = _since(t)
    # the world model's failure head on held-out demonstrations (same compiled collector, another key)
    t = _clock()
    held = offline.flatten(make_data(jax.random.PRNGKey(2000))["failure"])
    _, p_fail = offline.wm_predict(pre["wm"], held["obs"], held["action"])
    n_pos = float(held["cost"].sum())
    wm_auroc = auroc(np.asarray(p_fail).max(0), held["cost"]) if 0 < n_pos < len(held["cost"]) else float("nan")
    timing["wm_heldout"] = _since(t)
    train = make_train(env, num_envs=cc["num_envs"], rollout_len=cc["rollout_len"], iterations=cc["iterations"],
                       epochs=cc["epochs"], minibatches=cc["minibatches"], lr=cc["lr"], horizon=cc["horizon"],
                       gamma_risk=cc["gamma_risk"], trace=True)
    train_seeds = jax.jit(jax.vmap(train, in_axes=(0, None, None)))
    t = _clock()
    val = validate_critics(train_seeds, pre, cc)
    timing["validation_incl_compile"] = _since(t)
    record = {"eps_wm": val["farl"]["eps_safe"], "eps_q": val["recovery_rl"]["eps_safe"], "wm_auroc": wm_auroc,
              "validation": val,
              "critic": {c: {"precision": val[c]["precision"], "recall": val[c]["recall"]}
                         for c in ("farl", "recovery_rl")},
              "fit": {k: float(v) for k, v in fit.items()}, "timing": timing}
    return record, {"pre": pre, "train_seeds": train_seeds}


def run_arm(task, cc, arm_name, seeds, offline_rec, ctx, mw) -> list[dict]:
    """Online PPO of one arm on one task for `seeds` (vmapped); one record per seed."""
    arm = make_arm(arm_name, eps_wm=offline_rec["eps_wm"], eps_q=offline_rec["eps_q"], lagrange_lr=cc["lagrange_lr"])
    t = _clock()
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    _, m = ctx["train_seeds"](keys, arm, ctx["pre"])
    m = jax.tree.map(np.asarray, m)  # [S, iterations]
    w = cc["final_window"]
    spent = _since(t)
    for it in range(m["failures"].shape[1]):
        mw.write(it, task=task, arm=arm_name, seeds=list(seeds),
                 cum_failures_mean=float(m["cum_failures"][:, it].mean()),
                 ep_return_mean=float(m["ep_return"][:, it].mean()),
                 trigger_rate_mean=float(m["trigger_rate"][:, it].mean()))
    print(f"farl: {task}/{arm_name} done ({spent['wall_s']:.0f} s)", flush=True)
    return [{"cum_failures": m["cum_failures"][i].tolist(),
             "final_return": float(m["ep_return"][i, -w:].mean()),
             "final_success": float(m["success"][i, -w:].mean()),
             "trigger_rate": float(m["trigger_rate"][i].mean()),
             "return_curve": m["ep_return"][i].tolist(), **spent} for i in range(len(seeds))]


def _nan(x):
    """JSON records hold NaN as null; read it back as NaN."""
    return float("nan") if x is None else x


def run_tasks(config, workdir, mw) -> dict:
    """Every (task, arm) through `jaxlab.core.study`: per task one seed-free offline record (cell
    `<task>__offline`, stored as seed 0) and per arm one record per seed, all stamped with the hash of the task's
    config, so a changed hyperparameter never reuses a result computed under the old one. The offline stage is
    computed at most once per task and only when some record is missing. Returns {task: results as before}."""
    seeds = [int(s) for s in config.seeds]
    cache = {}

    def offline_for(task, cc):
        if task not in cache:
            cache.clear()                                     # one task's compiled programs in memory at a time
            cache[task] = offline_stage(task, cc)
        return cache[task]

    results = {}
    for task in config.tasks:
        cc = task_config(config, task)
        off_cell = study.Cell(f"{task}__offline", cc)
        off = study.run_study([off_cell], lambda cell, seed: offline_for(task, cell.config)[0], workdir=workdir,
                              seeds=[0], progress=False)[off_cell.id][0]
        cells = [study.Cell(f"{task}__{a}", {**cc, "arm": a}) for a in config.arms]

        def run_cell(cell, todo, task=task, cc=cc, off=off):
            rec, ctx = offline_for(task, cc)
            if rec["eps_wm"] != off["eps_wm"] or rec["eps_q"] != off["eps_q"]:
                raise RuntimeError(f"farl: {task}: the offline stage is not reproducible (eps differs from its record)")
            return run_arm(task, cc, cell.config["arm"], todo, off, ctx, mw)

        arms = study.run_study(cells, run_cell, workdir=workdir, seeds=seeds, batch_seeds=True)
        out = {**off, "wm_auroc": _nan(off["wm_auroc"]), "arms": {}}
        out["validation"] = {k: ({**v, "auroc": _nan(v["auroc"])} if isinstance(v, dict) else v)
                             for k, v in off["validation"].items()}
        for cell in cells:
            recs = [arms[cell.id][s] for s in seeds]
            out["arms"][cell.config["arm"]] = {k: [r[k] for r in recs] for k in recs[0]}
        results[task] = out
    return results


def run(config, workdir):
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    steps_per_it = config.num_envs * config.rollout_len
    with MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as mw:
        results = run_tasks(config, workdir, mw)

    seeds = list(config.seeds)
    # Per-seed metric, summed over tasks (cumulative failures) or averaged over tasks (return, success).
    def per_seed(arm, key, reduce):
        vals = np.array([np.asarray(results[t]["arms"][arm][key]) for t in config.tasks])  # [tasks, S(, it)]
        if key == "cum_failures":
            vals = vals[..., -1]
        return (vals.sum(0) if reduce == "sum" else vals.mean(0)).tolist()

    fails = {a: per_seed(a, "cum_failures", "sum") for a in config.arms}
    rets = {a: per_seed(a, "final_return", "mean") for a in config.arms}
    succ = {a: per_seed(a, "final_success", "mean") for a in config.arms}
    trig = {a: per_seed(a, "trigger_rate", "mean") for a in config.arms}
    red = 100.0 * (1.0 - np.mean(fails["farl"]) / max(np.mean(fails["vanilla"]), 1e-9))
    gain = 100.0 * (np.mean(rets["farl"]) / max(abs(np.mean(rets["vanilla"])), 1e-9) - 1.0)
    claims = [
        claim("ir_failures", "FARL cuts intervention-requiring failures during online RL (paper: -73.1%)",
              "cumulative_ir_failures", ours=("farl", fails["farl"]),
              baselines={"vanilla": fails["vanilla"]}, higher_is_better=False,
              note=f"measured change {-red:+.1f}% vs vanilla PPO, summed over {len(config.tasks)} task(s)"),
        claim("ir_failures_vs_safe_baselines", "FARL has fewer IR failures than PPO-Lagrangian and Recovery RL",
              "cumulative_ir_failures", ours=("farl", fails["farl"]),
              baselines={"ppo_lagrangian": fails["ppo_lagrangian"], "recovery_rl": fails["recovery_rl"]},
              higher_is_better=False),
        claim("performance", "FARL raises task performance over vanilla PPO (paper: +11.3%)", "final_episode_return",
              ours=("farl", rets["farl"]), baselines={"vanilla": rets["vanilla"]}, higher_is_better=True,
              note=f"measured change {gain:+.1f}%"),
        claim("recovery_helps", "the recovery policy beats braking on trigger (FARL vs FARL-no-rec)",
              "final_episode_return", ours=("farl", rets["farl"]), baselines={"farl_no_rec": rets["farl_no_rec"]},
              higher_is_better=True),
    ]
    main = []
    for a in config.arms:
        row = {"method": a}
        for name, d in (("cum_failures", fails), ("final_return", rets), ("final_success", succ),
                        ("trigger_rate", trig)):
            mu, sd = mean_std(d[a])
            row[f"{name}_mean"], row[f"{name}_std"] = round(mu, 4), round(sd, 4)
        main.append(row)
    critic = [{"task": t, "critic": c, "eps_safe": results[t]["validation"][c]["eps_safe"],
               "val_precision": round(results[t]["validation"][c]["precision"], 4),
               "val_recall": round(results[t]["validation"][c]["recall"], 4),
               "val_auroc": round(results[t]["validation"][c]["auroc"], 4),
               "val_trigger_rate": round(results[t]["validation"][c]["val_trigger_rate"], 4),
               "val_failures": results[t]["validation"]["val_failures"],
               "online_trigger_rate": round(float(np.mean(results[t]["arms"][c]["trigger_rate"])), 4),
               "wm_failure_auroc_heldout_demos": round(results[t]["wm_auroc"], 4)}
              for t in config.tasks for c in ("farl", "recovery_rl")]
    figures = []
    for t in config.tasks:
        series = {a: np.asarray(results[t]["arms"][a]["cum_failures"]) for a in config.arms}
        x = np.arange(1, config.iterations + 1) * steps_per_it
        figures.append(os.path.relpath(plots.curves(os.path.join(workdir, "figures", f"cum_failures_{t}.png"), x, series,
                                                    xlabel="online env steps", ylabel="cumulative IR failures",
                                                    title=f"{t} (mean ± std over {len(seeds)} seeds)"), workdir))
    headline = (f"FARL IR failures {np.mean(fails['farl']):.1f}±{np.std(fails['farl']):.1f} vs vanilla PPO "
                f"{np.mean(fails['vanilla']):.1f}±{np.std(fails['vanilla']):.1f} ({-red:+.0f}%; paper -73.1%), "
                f"return {gain:+.0f}% (paper +11.3%), {len(config.tasks)} task(s), {len(seeds)} seeds")
    return {"seeds": seeds, "claims": claims, "tables": {"main": main, "critic": critic}, "figures": figures,
            "headline": headline}


if __name__ == "__main__":
    from jaxlab.core.app import launch

    launch("farl", run)
