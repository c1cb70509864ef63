"""HAVP-style audio-visual-proprioceptive fusion + diffusion policy (arXiv 2602.13640 miniature) on two tasks:
Pour-to-level (the fill is heard) and the Brax/mjx latch cabinet (the release click is heard, not seen).

For every task and fusion variant: train a diffusion policy on scripted demonstrations (seeds vmapped), evaluate
it in closed loop (DDIM), then estimate I(embedding; hidden state) on held-out frames (pour: fill level; cabinet:
latch-released flag). Claims are checked by code.

Workdir layout: the pour task writes at the workdir root (cells/, figures/), the cabinet task under
``<workdir>/cabinet/``; one summary.json / metrics.jsonl at the root covers both. Each (variant, seed) result is a
`jaxlab.core.study` record stamped with the hash of the variant's config (a changed hyperparameter recomputes);
the records of the committed full run predate the study layout (variants/*.json) and are not reused.
Run: python experiments/fusion.py --config=experiments/configs/fusion.py:quick --workdir=results/adhoc/fusion
"""

import concurrent.futures
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import loop, plots, study
from jaxlab.core.checkpoint import Checkpointer
from jaxlab.core.config import config_hash
from jaxlab.core.metrics import MetricsWriter, read_json, write_json_atomic
from jaxlab.core.summary import claim, combine_claims, mean_std
from jaxlab.fusion import cabinet
from jaxlab.fusion import policy as PL
from jaxlab.fusion import pour
from jaxlab.fusion import mi as mi_lib
from jaxlab.fusion.mi import estimate_mi


def _policy_config(config, variant, lr):
    return PL.PolicyConfig(variant=variant, obs_horizon=config.obs_horizon, pred_horizon=config.pred_horizon,
                           action_horizon=config.action_horizon, num_inference_steps=config.num_inference_steps,
                           batch_size=config.batch_size, lr=lr, warmup=config.warmup,
                           train_steps=config.train_steps, denoiser=config.denoiser,
                           num_diffusion_steps=config.num_diffusion_steps, tokenizer=config.tokenizer,
                           mlp_hidden=tuple(config.mlp_hidden))


def _family(task):
    """'pour' or 'cabinet' (the cabinet with distractor knocks is a cabinet)."""
    if task in PL.TASKS:
        return "pour" if task == "pour" else "cabinet"
    raise ValueError(f"tasks: expected names from {PL.TASKS}, got {task!r}")


def task_config(config, task):
    """The flat config of one task: the top level is pour's; ``config.cabinet`` overrides it for the cabinets, and
    ``config.cabinet_distractor`` then overrides that for the cabinet with distractor knocks."""
    _family(task)
    if task == "pour":
        return config
    c = config.copy_and_resolve_references()
    with c.unlocked():
        for section in dict.fromkeys(("cabinet", task)):   # the cabinet's section, then the task's own
            for k, v in config.get(section, {}).items():
                c[k] = v
    return c


def _tag(task, variant):
    """Metric / progress name of a variant: pour keeps the bare name, other tasks are prefixed."""
    return variant if task == "pour" else f"{task}/{variant}"


def lr_grid(config, variant) -> list:
    """The learning rates a variant is trained at: ``lr_grid``, or ``lr_grid_noaudio`` (when set) for the
    audio-free variants (the sanity checks)."""
    if variant.endswith("_noaudio") and config.get("lr_grid_noaudio"):
        return [float(x) for x in config.lr_grid_noaudio]
    return [float(x) for x in config.lr_grid]


def choose_budget(curves: dict) -> tuple:
    """The (lr, chunk index) with the best seed-mean validation success over every grid point and chunk; ties go
    to fewer training steps, then to the earlier grid point. curves: {lr: [val success per chunk]}."""
    best = None
    for lr, curve in curves.items():
        for c, v in enumerate(curve):
            if best is None or (v, -c) > (best[0], -best[2]):
                best = (v, lr, c)
    if best is None:
        raise ValueError("curves: expected at least one validation point")
    return best[1], best[2]


def _train_lr(config, variant, data, run_dir, writer, task, lr, ev_fn):
    """Trains all seeds of one variant at one learning rate: `jaxlab.fusion.policy.policy_trainer` under
    `loop.vmap_seeds`, run by `loop.run` in chunks of ``config.chunk`` with orbax checkpoints under ``run_dir``
    (a rerun resumes). After every chunk the EMA policies are evaluated on validation episodes (key ``val_seed``);
    the chunk with the best seed-mean validation success is kept (its EMA in ``run_dir/ckpt_best``).
    Returns (net, best-chunk ema params [S], {"val_success": [...], "best_chunk": c})."""
    cfg = _policy_config(config, variant, lr)
    tag = _tag(task, variant) + ("" if len(lr_grid(config, variant)) == 1 else f"@lr{lr:g}")
    net, trainer, tdata = PL.policy_trainer(cfg, data, PL.task_params(task), chunk=config.chunk)
    trainer = loop.vmap_seeds(trainer)
    keys = jnp.stack([jnp.stack([jax.random.PRNGKey(s), jax.random.PRNGKey(s + 7919)]) for s in config.seeds])
    meta = {"variant": variant, "seeds": list(config.seeds)}
    best_ckpt = Checkpointer(os.path.join(run_dir, "ckpt_best"), save_every=1, keep=1, metadata=meta)
    best_path = os.path.join(run_dir, "best.json")
    best = {"val": -np.inf, "chunk": -1, "ema": None}
    if best_ckpt.latest_step() is not None and os.path.exists(best_path):
        target = loop.jit_init(keys, init=trainer.init).extra["ema"]
        best.update(read_json(best_path), ema=best_ckpt.restore(target)[1])

    def eval_fn(state):
        val = float(np.mean(np.asarray(ev_fn(state.extra["ema"], jax.random.PRNGKey(config.val_seed))["success"])))
        c = -(-int(np.asarray(state.step)[0]) // config.chunk) - 1
        if val > best["val"]:
            best.update(val=val, chunk=c, ema=state.extra["ema"])
            best_ckpt.maybe_save(c + 1, state.extra["ema"], force=True)
            best_ckpt.wait()
            write_json_atomic(best_path, {"val": val, "chunk": c})
        return {"val_success": val}

    def log_fn(step, record):
        writer.write(step, **{f"loss/{tag}": record["loss"], f"val_success/{tag}": record["eval/val_success"]})

    _, history = loop.run(trainer, keys, steps=config.train_steps, chunk=config.chunk, data=tdata, eval_fn=eval_fn,
                          ckpt_dir=os.path.join(run_dir, "ckpt"), log_fn=log_fn, progress=f"fusion/{tag}", keep=1)
    best_ckpt.close()
    return net, best["ema"], {"val_success": [e["val_success"] for e in history["eval"]], "best_chunk": best["chunk"]}


def train_and_eval(config, variant, data, run_dir, writer, task="pour"):
    """Trains all seeds of one variant at every learning rate of ``config.lr_grid`` (`_train_lr`; one folder per
    grid point under ``run_dir``, named by the cell's config hash), picks the (lr, chunk) with the best seed-mean
    validation success (`choose_budget`), and evaluates that chunk's EMA policies on test episodes (key
    ``eval_seed``). Only validation episodes choose. Returns (net, ema params [S], metrics)."""
    grid = lr_grid(config, variant)
    if not grid:
        raise ValueError("lr_grid: expected at least one learning rate")
    if config.train_steps < 1 or config.chunk < 1:
        raise ValueError(f"train_steps, chunk: expected >= 1, got {config.train_steps}, {config.chunk}")
    env = PL.task_params(task)
    cfg = _policy_config(config, variant, grid[0])
    act = PL.make_policy_fn(PL.make_train(cfg, data, env)[0], cfg, env)   # the network does not depend on lr
    ev_fn = jax.jit(jax.vmap(lambda prm, k: PL.rollout_policy(act, prm, k, config.n_eval, cfg, env),
                             in_axes=(0, None)))
    runs = {}
    for lr in grid:
        sub = run_dir if len(grid) == 1 else os.path.join(run_dir, f"lr_{lr:g}")
        runs[float(lr)] = _train_lr(config, variant, data, sub, writer, task, float(lr), ev_fn)
    lr, chunk = choose_budget({k: h["val_success"] for k, (_, _, h) in runs.items()})
    net, best, hist = runs[lr]
    ev = ev_fn(best, jax.random.PRNGKey(config.eval_seed))
    out = {k: np.asarray(v).mean(axis=1).tolist() for k, v in ev.items()}
    out["best_steps"] = min((chunk + 1) * config.chunk, config.train_steps)
    out["best_lr"] = lr
    out["val_success"] = hist["val_success"]
    out["val_grid"] = {f"{k:g}": h["val_success"] for k, (_, _, h) in runs.items()}
    return net, best, out


def mi_analysis(config, net, ema, variant, task="pour"):
    """I(embedding; hidden state) on held-out frames for each seed's frozen encoder. Pour: fill level on pouring
    frames (flow > 0); cabinet: latch-released flag on the decisions r-1..r+2 around the release step r."""
    obs, y = _mi_frames(config) if task == "pour" else _cabinet_data(config, task)[1:]
    n = y.shape[0]
    half = n // 2
    res = {}
    embs = jax.jit(jax.vmap(lambda prm, o: net.apply(prm, o, method=PL.PolicyNet.embeddings),
                            in_axes=(0, None)))(ema, obs)  # each [S, n, k]
    for s_i, seed in enumerate(config.seeds):
        for name, zz in embs.items():
            z = zz[s_i]
            z_tr, z_te = _pca(np.asarray(z[:half]), np.asarray(z[half:]), config.mi_pca_dims)
            for m in config.mi_methods:
                r = estimate_mi(jax.random.PRNGKey(seed), z_tr, y[:half], z_te, y[half:], method=m,
                                steps=config.mi_steps, n_boot=config.mi_boot, batch=min(256, half))
                res.setdefault(f"{variant}/{name}/{m}", []).append(r)
    return res


def _pca(z_train, z_test, k):
    """Projects both splits on the top-k principal components of the train split (limits critic overfitting
    on small held-out sets; k <= 0 keeps all dimensions)."""
    if k <= 0 or k >= z_train.shape[1]:
        return z_train, z_test
    mu = z_train.mean(0)
    _, _, vt = np.linalg.svd(z_train - mu, full_matrices=False)
    return (z_train - mu) @ vt[:k].T, (z_test - mu) @ vt[:k].T


def _cabinet_data(config, task="cabinet"):
    """Cabinet demonstrations and held-out MI frames from ONE jitted batch of expert episodes (one mjx compile):
    episodes [0, n_demos) are the training demonstrations, the next ``mi_episodes`` are held out for the MI
    analysis. MI frames: decisions t in {r-1, r, r+1, r+2} (r = release step), label = latch released before the
    decision (0, 0, 1, 1); the door moves less than half a pixel until r+2, so only audio can tell.
    Returns (dataset (PolicyObs [N, ...], actions [N, Tp, 1]), MI PolicyObs [M, ...], MI labels [M])."""
    return _cabinet_data_cached(task, int(config.data_seed), int(config.n_demos), int(config.mi_episodes),
                                int(config.obs_horizon), int(config.pred_horizon), float(config.action_noise))


@functools.lru_cache(maxsize=1)
def _cabinet_data_cached(task, data_seed, n_demos, mi_episodes, obs_horizon, pred_horizon, action_noise):
    """`_cabinet_data` keyed by every input (the cache replaces a hand-keyed dict)."""
    env = PL.task_params(task)
    n = n_demos + mi_episodes

    @jax.jit
    def make(keys):
        trajs = jax.vmap(lambda k: cabinet.rollout_expert(k, env, action_noise=action_noise))(keys)
        obs, act = jax.vmap(lambda tr: PL.trajectory_dataset(
            tr, obs_horizon=obs_horizon, pred_horizon=pred_horizon))(trajs)
        return obs, act, trajs.states.release_t[:, -1]

    obs, act, r = make(jax.random.split(jax.random.PRNGKey(data_seed), n))
    flat = lambda x: x[:n_demos].reshape((-1,) + x.shape[2:])  # noqa: E731
    data = (jax.tree.map(flat, obs), flat(act))
    r = np.asarray(r)
    ok = np.zeros(n, bool)
    ok[n_demos:] = (r[n_demos:] >= 1) & (r[n_demos:] + 2 < env.horizon)
    ep = np.repeat(np.nonzero(ok)[0], 4)
    t = np.tile(np.arange(-1, 3), int(ok.sum())) + r[ep]
    y = (t >= r[ep] + 1).astype(np.float32)
    return data, jax.tree.map(lambda x: x[ep, t], obs), y


def _mi_frames(config):
    """Held-out pour frames for the MI analysis (flow > 0) and their fill labels."""
    return _mi_frames_cached(int(config.data_seed), int(config.mi_episodes), int(config.obs_horizon),
                             int(config.pred_horizon))


@functools.lru_cache(maxsize=1)
def _mi_frames_cached(data_seed, mi_episodes, obs_horizon, pred_horizon):
    """`_mi_frames` keyed by every input (the old hand-made key left out ``data_seed``)."""
    keys = jax.random.split(jax.random.PRNGKey(data_seed + 1), mi_episodes)
    trajs = jax.jit(jax.vmap(lambda k: pour.rollout_expert(k)))(keys)
    obs, _ = jax.jit(jax.vmap(lambda tr: PL.trajectory_dataset(
        tr, obs_horizon=obs_horizon, pred_horizon=pred_horizon)))(trajs)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    # label of the decision at t = fill of the last observed state (after step t-1); t = 0 frames have no
    # flow and are dropped by the flow > 0 filter, so their label (shifted copy) is never used
    fill = jnp.concatenate([trajs.states.fill[:, :1], trajs.states.fill[:, :-1]], axis=1)
    flow = jnp.concatenate([jnp.zeros_like(trajs.states.flow[:, :1]), trajs.states.flow[:, :-1]], axis=1)
    obs, fill, flow = jax.tree.map(flat, obs), flat(fill), flat(flow)
    keep = np.asarray(flow) > 0
    return jax.tree.map(lambda x: x[keep], obs), np.asarray(fill)[keep]


_NOT_CELL = ("variants", "mi_variants", "tasks", "task", "cabinet", "cabinet_distractor")
_MI_KEYS = ("mi_methods", "mi_episodes", "mi_steps", "mi_pca_dims", "mi_boot")


def cell_config(config, task, variant) -> dict:
    """Everything one (task, variant) cell's per-seed results depend on. The seeds are part of it: the training
    budget is picked on the seed mean of the validation success, so one seed's result depends on the others.
    MI settings enter only the cells that run the MI analysis."""
    mi = variant in config.mi_variants
    cc = {k: v for k, v in config.to_dict().items()
          if k not in _NOT_CELL and (mi or k not in _MI_KEYS)}
    return {**cc, "task": task, "variant": variant, "mi": mi}


def _none_to_nan(x):
    if isinstance(x, dict):
        return {k: _none_to_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_none_to_nan(v) for v in x]
    return float("nan") if x is None else x


_SHARED = ("best_steps", "best_lr", "val_success", "val_grid")


def run_task(config, workdir, task, writer):
    """Trains, evaluates and analyses every variant of one task through `jaxlab.core.study`: one record per
    (variant, seed) under ``workdir/cells/<variant>/``, stamped with the hash of `cell_config`, so a changed
    hyperparameter never reuses a variant trained under the old one; in-cell orbax checkpoints live in a folder
    named by the same hash. Returns (results per variant, MI dict)."""
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    env = PL.task_params(task)
    data = {}
    seeds = [int(s) for s in config.seeds]
    cells = [study.Cell(v, cell_config(config, task, v)) for v in config.variants]

    def run_cell(cell, todo):
        variant = cell.config["variant"]
        if "d" not in data:
            data["d"] = (_cabinet_data(config, task)[0] if task != "pour" else PL.expert_dataset(
                jax.random.PRNGKey(config.data_seed), config.n_demos, obs_horizon=config.obs_horizon,
                pred_horizon=config.pred_horizon, action_noise=config.action_noise, p=env))
        run_dir = os.path.join(workdir, "cells", cell.id, f"run_{config_hash(cell.config)}")
        net, ema, res = train_and_eval(config, variant, data["d"], run_dir, writer, task)
        mi = mi_analysis(config, net, ema, variant, task) if cell.config["mi"] else {}
        writer.write(0, **{f"success/{_tag(task, variant)}": float(np.mean(res["success"]))})
        shared = {k: res[k] for k in _SHARED if k in res}   # chosen for all seeds together (seed-mean val)
        per_seed = {k: v for k, v in res.items() if k not in _SHARED}
        out = []
        for s in todo:
            i = seeds.index(s)
            out.append({**{k: v[i] for k, v in per_seed.items()}, **shared,
                        "mi": {k.split("/", 1)[1]: v[i] for k, v in mi.items()}})
        return out

    records = study.run_study(cells, run_cell, workdir=workdir, seeds=seeds, batch_seeds=True)
    results, mi = {}, {}
    for cell in cells:
        recs = [_none_to_nan(records[cell.id][s]) for s in seeds]
        results[cell.id] = {k: [r[k] for r in recs] for k in recs[0] if k not in _SHARED + ("mi",)}
        results[cell.id].update({k: recs[0][k] for k in _SHARED if k in recs[0]})
        for name in recs[0]["mi"]:
            mi[f"{cell.id}/{name}"] = [r["mi"][name] for r in recs]
    return results, mi


# task -> (error metric (lower is better), its description, third column of the table)
_TASK_METRICS = {"pour": ("fill_error", "final fill error", "overflow"),
                 "cabinet": ("slam", "slam rate", "timeout")}


def task_claims(task, config, results, mi):
    """The paper's claims on one task, verdicts computed by ``jaxlab.core.summary.claim``. Pour keeps its
    original claim ids; cabinet ids are prefixed ``cabinet/``."""
    pre = "" if task == "pour" else f"{task}/"
    err_key, err_name, _ = _TASK_METRICS[_family(task)]
    succ = {v: results[v]["success"] for v in config.variants}
    err = {v: results[v][err_key] for v in config.variants}
    hidden = "the fill level" if task == "pour" else "the latch release"
    claims = []
    if "havp" in succ:
        base = {v: succ[v] for v in ("concat", "transformer") if v in succ}
        if base:
            claims.append(claim(pre + "hier_vs_flat_symmetric",
                                f"[{task}] Hierarchical (audio-first + higher-order) fusion beats flat and symmetric "
                                "fusion when audio carries the task state", "success_rate", ours=("havp", succ["havp"]),
                                baselines=base, higher_is_better=True,
                                note="HAVP-style = our reconstruction (stage 1 cross-attn+FiLM, stage 2 LMF)."))
            claims.append(claim(pre + "hier_vs_flat_symmetric_error", f"Same, measured by {err_name}", err_key,
                                ours=("havp", err["havp"]), baselines={v: err[v] for v in base},
                                higher_is_better=False))
        if "stage1" in succ:
            claims.append(claim(pre + "hier_vs_stage1", f"[{task}] The second fusion stage adds to the first: the "
                                "hierarchical model (stage 1 + the higher-order stage 2) beats stage 1 alone",
                                "success_rate", ours=("havp", succ["havp"]), baselines={"stage1": succ["stage1"]},
                                higher_is_better=True, note="stage1 = the same audio-first cross-attention + FiLM "
                                "encoder without the low-rank multimodal fusion stage; each tuned on validation."))
        pairs = [(v, v + "_noaudio") for v in config.variants
                 if not v.endswith("_noaudio") and v + "_noaudio" in succ]
        if pairs:
            parts = [claim(f"{pre}audio_needed/{v}", f"{v} with audio beats {n}", "success_rate", ours=(v, succ[v]),
                           baselines={n: succ[n]}, higher_is_better=True, block="sanity") for v, n in pairs]
            claims.append(combine_claims(pre + "audio_needed", f"[{task}] Audio-free variants fail on the "
                                         "audio-dependent task: every fusion variant with audio beats its audio-free "
                                         "counterpart", parts, block="sanity"))
            if _family(task) == "cabinet":
                parts = [claim(f"{pre}audio_free_slams_more/{v}", f"{n} slams more than {v}", "slam_rate",
                               ours=(v, err[v]), baselines={n: err[n]}, higher_is_better=False, block="sanity")
                         for v, n in pairs]
                claims.append(combine_claims(pre + "audio_free_slams_more", "[cabinet] Audio-free variants slam "
                                             "the door more often than their audio twins", parts))
    if "havp/audio/infonce" in mi and "havp/vision/infonce" in mi:
        audio, vision = ([r["mi"] for r in mi[f"havp/{e}/infonce"]] for e in ("audio", "vision"))
        claims.append(claim(pre + "mi_audio_vs_vision", f"[{task}] Audio embeddings carry more information about "
                            f"{hidden} than vision embeddings (MI analysis)", "infonce_nats",
                            ours=("havp/audio", audio), baselines={"havp/vision": vision}, higher_is_better=True,
                            paired=True, note="paired: both embeddings of one trained policy per seed, same frames",
                            untestable_reason=mi_lib.failure_reason(audio, vision)))
    return claims


def task_table(task, config, results):
    err_key, _, third = _TASK_METRICS[_family(task)]
    table = []
    for v in config.variants:
        sm, ss = mean_std(results[v]["success"])
        em, es = mean_std(results[v][err_key])
        om, _ = mean_std(results[v][third])
        table.append({"method": v, "success_mean": sm, "success_std": ss, f"{err_key}_mean": em,
                      f"{err_key}_std": es, f"{third}_rate": om, "train_steps_by_val": results[v].get("best_steps"),
                      "lr_by_val": results[v].get("best_lr"),
                      "val_success_curve": results[v].get("val_success")})
    return table


_EMB_COLORS = {"audio": "tab:blue", "fused": "tab:purple", "vision": "tab:orange"}


def mi_figure(path, mi_rows, y, title):
    """MI per fusion variant (groups), one bar per embedding x estimator: colour = embedding, hatched = MINE.
    (Was 26 same-coloured bars with joined labels.) A variant without an embedding has no bar there."""
    variants = list(dict.fromkeys(r["variant"] for r in mi_rows))
    embs = [e for e in _EMB_COLORS if any(r["embedding"] == e for r in mi_rows)]
    embs += sorted({r["embedding"] for r in mi_rows} - set(embs))
    ests = list(dict.fromkeys(r["estimator"] for r in mi_rows))
    series, styles = {}, {}
    for e in embs:
        for j, est in enumerate(ests):
            got = {r["variant"]: r for r in mi_rows if r["embedding"] == e and r["estimator"] == est}
            name = f"{e} ({est})"
            series[name] = ([got[v]["mi_mean"] if v in got else np.nan for v in variants],
                            [got[v]["mi_std"] if v in got else np.nan for v in variants])
            styles[name] = {"color": _EMB_COLORS.get(e), "hatch": "//" if j else None,
                            "edgecolor": "white" if j else None}
    return plots.grouped_bars(path, variants, series, ylabel=f"I(z; {y}) (nats, mean ± std over seeds)",
                              title=f"{title}: MI of each embedding with the hidden state (held-out frames)",
                              styles=styles, zero_line=True)


def task_figures(task, config, workdir, table, mi_rows):
    sub = "" if task == "pour" else task
    title = {"pour": "Pour-to-level", "cabinet": "Latch cabinet",
             "cabinet_distractor": "Latch cabinet, quiet click + distractor knocks"}[task]
    y = "fill" if task == "pour" else "released"
    figs = [os.path.relpath(plots.grouped_bars(
        os.path.join(workdir, sub, "figures", "success.png"), list(config.variants),
        {"success": ([r["success_mean"] for r in table], [r["success_std"] for r in table])},
        ylabel="success rate", title=f"{title}: success by fusion variant"), workdir)]
    if mi_rows:
        figs.append(os.path.relpath(mi_figure(os.path.join(workdir, sub, "figures", "mi.png"), mi_rows, y, title),
                                    workdir))
    return figs


def run_tasks(config, workdir, tasks, writer):
    """`run_task` of every task, two at a time in threads: the tasks share nothing but the metrics writer
    (thread-safe), and one task's compiles (single-threaded in XLA) overlap the other's training, so both
    cores stay busy. Every computation is the same as in a sequential run. Returns (task configs, results)
    in the order of ``tasks``; an error in a task is raised once both threads have stopped."""
    configs = [task_config(config, task) for task in tasks]

    def one(i):
        task = tasks[i]
        return run_task(configs[i], workdir if task == "pour" else os.path.join(workdir, task), task, writer)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(2, max(1, len(tasks)))) as pool:
        futures = [pool.submit(one, i) for i in range(len(tasks))]
    return configs, [f.result() for f in futures]


def run(config, workdir):
    t0, c0 = time.time(), time.process_time()
    tasks = [t.strip() for t in str(config.get("tasks", "pour")).split(",") if t.strip()]
    claims, tables, figs, heads, seeds = [], {}, [], [], []
    with MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as writer:
        for task, tc, (results, mi) in zip(tasks, *run_tasks(config, workdir, tasks, writer)):
            claims += task_claims(task, tc, results, mi)
            table, mi_rows = task_table(task, tc, results), mi_lib.mi_table_rows(mi)
            pre = "" if task == "pour" else f"{task}_"
            tables[pre + "main"], tables[pre + "mi"] = table, mi_rows
            figs += task_figures(task, tc, workdir, table, mi_rows)
            seeds = sorted(set(seeds) | set(tc.seeds))
            err_key = _TASK_METRICS[_family(task)][0]
            best = max(table, key=lambda r: r["success_mean"])
            h = next(r for r in table if r["method"] == tc.variants[0])
            heads.append(f"{task}: {h['method']} success {h['success_mean']:.2f}±{h['success_std']:.2f} "
                         f"({err_key} {h[err_key + '_mean']:.2f}; best {best['method']} {best['success_mean']:.2f}; "
                         f"{len(tc.seeds)} seeds, {tc.train_steps} steps)")
    cost = f"this invocation {time.time() - t0:.0f}s wall, {time.process_time() - c0:.0f}s CPU"
    headline = "; ".join(heads) + f"; {cost} (reused study records cost nothing here)"
    return {"seeds": seeds, "claims": claims, "tables": tables, "figures": figs, "headline": headline}


if __name__ == "__main__":
    from jaxlab.core.app import launch

    launch("fusion", run)
