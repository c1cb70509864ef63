"""AgentOCR miniature (arXiv 2601.04786) on ShelfWorld: text vs image history, segment optical cache,
self-compression with a ln(c) reward under GRPO.

Per task variant: behaviour cloning of a text-history and an image-history policy from the scripted expert
(shared by all RL seeds, cached in the workdir), then per RL seed the arms Text-BC, OCR-BC, Text+GRPO,
OCR+GRPO (c = 1), AgentOCR (K = 5) and K = 1, plus a fixed-c sweep of the OCR-BC policy. Every arm reports
success and mean / peak history tokens per step (words for the text history, visual tokens for the image).
The arms are cells of `core.study` (config-hash-stamped, resumable).
Run: python experiments/agentocr.py --config=experiments/configs/agentocr.py:quick --workdir=results/adhoc/agentocr
"""

import contextlib
import os
import shutil

import flax.serialization
import jax
import numpy as np

from jaxlab.agentocr import env as aenv
from jaxlab.agentocr import policy
from jaxlab.agentocr import render
from jaxlab.agentocr import train as atrain
from jaxlab.core import loop, plots, study
from jaxlab.core.config import config_hash
from jaxlab.core.metrics import MetricsWriter, read_json, write_json_atomic
from jaxlab.core.summary import claim, mean_std, untestable

GRPO_CHUNK = 4     # GRPO iterations between in-cell checkpoints (a killed cell resumes at the last one)
ARMS = ("text_bc", "ocr_bc", "text_grpo", "ocr_grpo_c1", "agentocr_k5", "agentocr_k1")


def typed(config, variant):
    """ConfigDict -> (EnvParams, RenderSettings, {kind: PolicyConfig}, BCHParams) (the library boundary)."""
    ep = aenv.EnvParams(variant=variant, n_receptacles=config.n_receptacles, n_objects=config.n_objects,
                     horizon=config.horizon)
    rs = render.RenderSettings(width=config.width, font=config.font, line_px=config.line_px)
    cfgs = {k: policy.PolicyConfig(kind=k, d=config.d, layers=config.layers, heads=config.heads, mlp=config.mlp,
                              stem=tuple(config.stem), canvas_h=config.canvas_h, text_len=config.text_len,
                              hist_len=config.hist_len) for k in ("text", "ocr")}
    bc = atrain.BCHParams(lr=config.bc_lr, batch=config.bc_batch, aux_digit=config.aux_digit, data_seed=config.data_seed)
    return ep, rs, cfgs, bc


def bc_params(config, variant, kind, workdir):
    """Behaviour-cloned parameters and their selection record, cached under workdir/bc/ (file name carries
    the hash of everything that determines them).

    With bc_select > 1 the run is cut into bc_select chunks and the checkpoint with the highest validation
    success (n_val validation tasks, eval_temp; ties -> the later checkpoint) is kept; its step and the
    validation curve are stored next to it (`.json`)."""
    ep, rs, cfgs, hp = typed(config, variant)
    cfg = cfgs[kind]
    tag = config_hash({"v": variant, "k": kind, "ep": ep._asdict(), "rs": rs._asdict(), "cfg": cfg._asdict(),
                       "hp": hp._asdict(), "n": config.bc_episodes, "steps": config.bc_steps,
                       "select": config.bc_select, "val": [config.val_seed, config.n_val, config.eval_temp]})
    path = os.path.join(workdir, "bc", f"{variant}_{kind}_{tag}.msgpack")
    meta_path = path[:-len(".msgpack")] + ".json"
    target = policy.init_params(cfg, jax.random.PRNGKey(0))
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(path, "rb") as f:
            return flax.serialization.from_bytes(target, f.read()), read_json(meta_path)
    seeds = range(config.data_seed, config.data_seed + config.bc_episodes)
    data = atrain.bc_dataset(ep, cfg, seeds, settings=rs, c_seed=config.data_seed)
    trainer, collect = atrain.make_bc(cfg, hp, data)
    snaps = {}

    def eval_fn(state):
        step = int(state.step)
        if step not in snaps:
            r = evaluate(state.params, cfg, ep, rs, config, None, c_fixed=1.0, split="val")
            snaps[step] = (r["success"], jax.device_get(state.params))
        return {"val_success": snaps[step][0]}
    select = int(config.bc_select) > 1
    state, _ = loop.run(trainer, jax.random.PRNGKey(config.data_seed), steps=config.bc_steps,
                        chunk=max(1, config.bc_steps // max(1, int(config.bc_select))), collect=collect,
                        eval_fn=eval_fn if select else None, progress=f"bc {variant}/{kind}")
    if select:
        best = max(snaps, key=lambda k: (snaps[k][0], k))
        params = snaps[best][1]
        meta = {"chosen_step": best, "val_success": {str(k): v[0] for k, v in sorted(snaps.items())}}
    else:
        params, meta = state.params, {"chosen_step": int(config.bc_steps), "val_success": {}}
    meta["samples"] = int(len(data["act"]))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flax.serialization.to_bytes(params))
    write_json_atomic(meta_path, meta)
    return params, meta


def eval_tasks(config, seed, split):
    """Test tasks of an RL seed (eval_seed + seed * n_eval ...) or the validation tasks (val_seed ...)."""
    if split == "val":
        return list(range(config.val_seed, config.val_seed + config.n_val))
    return list(range(config.eval_seed + seed * config.n_eval, config.eval_seed + (seed + 1) * config.n_eval))


def evaluate(params, cfg, ep, rs, config, seed, c_fixed=None, split="test"):
    """Success and history tokens per step on the test tasks of RL seed `seed` or on the validation tasks,
    sampled at eval_temp."""
    tasks = eval_tasks(config, seed, split)
    sample_seed = config.eval_seed + (seed if split == "test" else 7919)
    ro = atrain.rollout(params, cfg, ep, tasks, sample_seed=sample_seed, c_fixed=c_fixed, settings=rs,
                   temperature=config.eval_temp)
    tok = "words" if cfg.kind == "text" else "visual"
    return {"success": float(ro["success"].mean()), "tokens_mean": float(ro[f"{tok}_mean"].mean()),
            "tokens_peak": float(ro[f"{tok}_peak"].mean()), "words_mean": float(ro["words_mean"].mean()),
            "chars_mean": float(ro["chars_mean"].mean()), "visual_mean": float(ro["visual_mean"].mean()),
            "mean_c": float(ro["mean_c"].mean()), "invalid": float(ro["n_invalid"].mean()),
            "crops": int(ro["crops"])}


def random_success(ep, tasks, seed=0):
    """Success of a uniformly random policy over the admissible list (the chance level of `success`)."""
    rng = np.random.default_rng(seed)
    wins = 0
    for s in tasks:
        env = aenv.ShelfWorld(ep)
        env.reset(int(s))
        while not env.done:
            adm = env.admissible()
            env.step(adm[int(rng.integers(len(adm)))])
        wins += env.success
    return wins / len(tasks)


def make_run_cell(config, workdir, bc_cache):
    def run_cell(cell, seed):
        c = cell.config
        ep, rs, cfgs, _ = typed(config, c["variant"])
        cfg = cfgs[c["kind"]]
        params = bc_cache[(c["variant"], c["kind"])][0]
        split = c.get("split", "test")
        if c["mode"] == "fixed":
            return evaluate(params, cfg, ep, rs, config, seed, c_fixed=c["c"])
        if c["mode"] == "bc":
            return evaluate(params, cfg, ep, rs, config, seed, c_fixed=1.0)
        hp = atrain.GRPOHParams(lr=c["lr"], minibatch=config.minibatch, clip_eps=config.clip_eps,
                           lam=c["lam"], every_k=c["every_k"], learn_c=c["learn_c"])
        rng = np.random.default_rng([config.train_seed, seed])     # iteration i's tasks: the stream's i-th draw
        tasks = np.stack([rng.integers(0, 10_000, config.tasks_per_iter) for _ in range(config.iterations)])
        c_fixed = None if c["learn_c"] else 1.0
        trainer, collect = atrain.grpo_trainer(params, cfg, ep, hp, task_seeds=tasks, group_size=config.group_size,
                                               sample_seed=config.train_seed + 1000 * seed, c_fixed=c_fixed,
                                               settings=rs)
        ckpt_dir = os.path.join(workdir, "cells", cell.id, f"run_{config_hash(c)}", f"s{seed}")
        state, hist = loop.run(trainer, jax.random.PRNGKey(0), steps=config.iterations, chunk=GRPO_CHUNK,
                               collect=collect, ckpt_dir=ckpt_dir, progress=f"grpo {cell.id} s{seed}")
        out = evaluate(state.params, cfg, ep, rs, config, seed, c_fixed=c_fixed, split=split)
        out["train_success"] = [float(x) for x in hist["success"]]
        out["train_mean_c"] = [float(x) for x in hist["mean_c"]]
        shutil.rmtree(ckpt_dir, ignore_errors=True)    # the study record now holds the result
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(ckpt_dir))         # the run folder, once no other seed's checkpoint is in it
        return out
    return run_cell


GRPO_ARMS = {"text_grpo": dict(kind="text", mode="grpo"), "ocr_grpo_c1": dict(kind="ocr", mode="grpo"),
             "agentocr_k5": dict(kind="ocr", mode="grpo", every_k=5, learn_c=True),
             "agentocr_k1": dict(kind="ocr", mode="grpo", every_k=1, learn_c=True)}


def _fmt(x):
    return f"{float(x):g}"


def tuning_cells(config, variant, lam=None):
    """Validation runs (RL seed val_rl_seed, validation tasks): every lr of rl_lr_grid for each GRPO arm;
    AgentOCR K = 5 also over lam_grid; K = 1 only when `lam` (K = 5's chosen lambda) is given, at that lambda."""
    base = {"variant": variant, "iterations": config.iterations, "lam": 0.0, "every_k": 1, "learn_c": False,
            "split": "val", "cfg": config_hash(config)}
    cells = []
    for arm, kw in GRPO_ARMS.items():
        if arm == "agentocr_k1" and lam is None:
            continue
        lams = list(config.lam_grid) if arm == "agentocr_k5" else [lam] if arm == "agentocr_k1" else [0.0]
        for lr in config.rl_lr_grid:
            for lm in lams:
                cid = f"{variant}.tune.{arm}.lr={_fmt(lr)}" + (f",lam={_fmt(lm)}" if kw.get("learn_c") else "")
                cells.append(study.Cell(cid, {**base, **kw, "lr": float(lr), "lam": float(lm), "arm": arm}))
    return cells


def choose(res, cells, arm, seed):
    """The tuning cell of `arm` with the highest validation success (ties: fewer history tokens, then grid
    order) -> its config."""
    mine = [c for c in cells if c.config["arm"] == arm]
    best = max(mine, key=lambda c: (res[c.id][seed]["success"], -res[c.id][seed]["tokens_mean"],
                                    -mine.index(c)))
    return best.config


def cells_for(config, variant, chosen=None):
    """The test cells of one variant; `chosen` = {arm: {"lr", "lam"}} (default: the grids' first values)."""
    chosen = chosen or {a: {"lr": float(config.rl_lr_grid[0]), "lam": float(config.lam_grid[0])} for a in GRPO_ARMS}
    base = {"variant": variant, "iterations": config.iterations, "lam": 0.0, "every_k": 1, "learn_c": False}
    arms = {"text_bc": dict(kind="text", mode="bc"), "ocr_bc": dict(kind="ocr", mode="bc")}
    for a, kw in GRPO_ARMS.items():
        arms[a] = {**kw, "lr": float(chosen[a]["lr"])}
        if kw.get("learn_c"):
            arms[a]["lam"] = float(chosen[a]["lam"])
    cells = [study.Cell(f"{variant}.{a}", {**base, **kw, "cfg": config_hash(config)}) for a, kw in arms.items()]
    cells += [study.Cell(f"{variant}.fixed_c={c}", {**base, "kind": "ocr", "mode": "fixed", "c": float(c),
                                                      "cfg": config_hash(config)}) for c in config.fixed_c]
    return cells


def _vals(res, cell_id, key, seeds):
    return [float(res[cell_id][s][key]) for s in seeds]


def run(config, workdir):
    seeds = list(config.seeds)
    quick = bool(config.smoke)
    smoke = " (quick mode: a pipeline smoke run; verdicts are not evidence)" if quick else ""
    writer = MetricsWriter(os.path.join(workdir, "metrics.jsonl"))
    cells, res, bc_cache, hparams, tune_table = [], {}, {}, {}, []
    vs = [int(config.val_rl_seed)]
    for v in config.variants:          # variant by variant, so a partial run finishes the first one first
        for k in ("text", "ocr"):
            bc_cache[(v, k)] = bc_params(config, v, k, workdir)
        run_cell = make_run_cell(config, workdir, bc_cache)
        chosen = {a: {"lr": float(config.rl_lr_grid[0]), "lam": float(config.lam_grid[0])} for a in GRPO_ARMS}
        if len(config.rl_lr_grid) > 1 or len(config.lam_grid) > 1:
            tc = tuning_cells(config, v)
            tres = study.run_study(tc, run_cell, workdir=workdir, seeds=vs)
            for a in ("text_grpo", "ocr_grpo_c1", "agentocr_k5"):
                chosen[a] = choose(tres, tc, a, vs[0])
            tc1 = [c for c in tuning_cells(config, v, lam=chosen["agentocr_k5"]["lam"])
                   if c.config["arm"] == "agentocr_k1"]
            tres.update(study.run_study(tc1, run_cell, workdir=workdir, seeds=vs))
            chosen["agentocr_k1"] = choose(tres, tc1, "agentocr_k1", vs[0])
            for c in tc + tc1:
                r = tres[c.id][vs[0]]
                tune_table.append({"cell": c.id, "lr": c.config["lr"], "lam": c.config["lam"],
                                   "val_success": r["success"], "val_tokens_mean": round(r["tokens_mean"], 2),
                                   "val_mean_c": round(r["mean_c"], 3),
                                   "chosen": chosen[c.config["arm"]] == c.config})
        hparams[v] = {f"bc_{k}": {"lr": float(config.bc_lr), **bc_cache[(v, k)][1]} for k in ("text", "ocr")}
        hparams[v].update({a: {"lr": chosen[a]["lr"],
                               "lam": chosen[a]["lam"] if GRPO_ARMS[a].get("learn_c") else 0.0}
                           for a in GRPO_ARMS})
        vc = cells_for(config, v, chosen)
        res.update(study.run_study(vc, run_cell, workdir=workdir, seeds=seeds))
        cells += vc
    claims, table = [], []
    for cell in cells:
        for s in seeds:
            r = res[cell.id][s]
            writer.write(s, **{f"{cell.id}/{k}": v for k, v in r.items() if isinstance(v, (int, float))})
        row = {"cell": cell.id, "seeds": len(seeds)}
        for key in ("success", "tokens_mean", "tokens_peak", "chars_mean", "words_mean", "visual_mean", "mean_c"):
            m, sd = mean_std(_vals(res, cell.id, key, seeds))
            row[f"{key}_mean"], row[f"{key}_std"] = round(m, 4), round(sd, 4)
        table.append(row)
    writer.close()
    chance, chance_table = {}, []
    for v in config.variants:        # chance level: a uniformly random admissible policy on the same test tasks
        ep = typed(config, v)[0]
        chance[v] = float(np.mean([random_success(ep, eval_tasks(config, s, "test"), s) for s in seeds]))
        chance_table.append({"variant": v, "random_policy_success": round(chance[v], 4), "seeds": len(seeds)})
    for v in config.variants:
        ag, tg, k1 = f"{v}.agentocr_k5", f"{v}.text_grpo", f"{v}.agentocr_k1"
        t_succ = _vals(res, tg, "success", seeds)
        ch = f"; chance = random admissible policy's success {chance[v]:.3f}"
        claims.append(claim(f"{v}_bc_learns", "Behaviour cloning (OCR-BC) solves ShelfWorld above chance",
                            "success", ours=("ocr_bc", _vals(res, f"{v}.ocr_bc", "success", seeds)),
                            baselines={"random_policy": [chance[v]] * len(seeds)}, higher_is_better=True,
                            block="sanity", note="the learning regime the paper claims rest on" + ch + smoke))
        if max(t_succ) == 0.0:
            claims.append(untestable(f"{v}_success_ratio", "AgentOCR keeps >= 95% of Text+GRPO's success",
                                     "success", f"Text+GRPO succeeds on no episode ({v}){smoke}"))
        else:
            margin = 0.05 * float(np.mean(t_succ))
            claims.append(claim(f"{v}_success_ratio", "AgentOCR keeps >= 95% of Text+GRPO's success", "success",
                                ours=("agentocr_k5", _vals(res, ag, "success", seeds)),
                                baselines={"text_grpo": t_succ}, higher_is_better=True, kind="no_worse",
                                margin=max(margin, 1e-6), chance=chance[v],
                                note="margin = 5% of Text+GRPO's mean success (the paper's 95% criterion)"
                                + ch + smoke))
        half = [0.5 * x for x in _vals(res, tg, "tokens_mean", seeds)]
        claims.append(claim(f"{v}_token_savings", "AgentOCR uses > 50% fewer history tokens per step than "
                            "Text+GRPO (visual tokens vs word tokens)", "history_tokens_per_step",
                            ours=("agentocr_k5", _vals(res, ag, "tokens_mean", seeds)),
                            baselines={"half_of_text_grpo": half}, higher_is_better=False,
                            note="word tokens ~ BPE-like; visual = ceil(H/28)ceil(W/28)" + smoke))
        claims.append(claim(f"{v}_k1_overcompresses", "A dense compression reward (K=1) loses success vs K=5",
                            "success", ours=("agentocr_k5", _vals(res, ag, "success", seeds)),
                            baselines={"agentocr_k1": _vals(res, k1, "success", seeds)}, higher_is_better=True,
                            paired=True, chance=chance[v],
                            note="arms share task draws and eval tasks per seed; same lambda" + ch + smoke))
        claims.append(claim(f"{v}_k1_higher_c", "With K=1 the agent picks larger c than with K=5", "mean_c",
                            ours=("agentocr_k1", _vals(res, k1, "mean_c", seeds)),
                            baselines={"agentocr_k5": _vals(res, ag, "mean_c", seeds)}, higher_is_better=True,
                            paired=True, note=smoke.strip()))
        claims.append(claim(f"{v}_image_cheaper_bc", "Image history costs fewer tokens than text history "
                            "(OCR-BC visual vs Text-BC words)", "history_tokens_per_step",
                            ours=("ocr_bc", _vals(res, f"{v}.ocr_bc", "tokens_mean", seeds)),
                            baselines={"text_bc": _vals(res, f"{v}.text_bc", "tokens_mean", seeds)},
                            higher_is_better=False, block="sanity"))
        sweep = [f"{v}.fixed_c={c}" for c in config.fixed_c]
        claims.append(claim(f"{v}_tokens_fall_with_c", "Visual tokens fall as c grows (fixed-c sweep)",
                            "history_tokens_per_step", ours=(sweep[-1], _vals(res, sweep[-1], "tokens_mean", seeds)),
                            baselines={sweep[0]: _vals(res, sweep[0], "tokens_mean", seeds)},
                            higher_is_better=False, paired=True, block="sanity"))
    claims.append(_cache_sanity(config))
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    figs = []
    for v in config.variants:
        arms = [f"{v}.{a}" for a in ARMS]
        path = os.path.join(workdir, "figures", f"{v}_arms.png")
        plots.grouped_bars(path, list(ARMS), {
            "success": ([np.mean(_vals(res, a, "success", seeds)) for a in arms],
                        [np.std(_vals(res, a, "success", seeds), ddof=1) for a in arms]),
            "tokens/100": ([np.mean(_vals(res, a, "tokens_mean", seeds)) / 100 for a in arms],
                           [np.std(_vals(res, a, "tokens_mean", seeds), ddof=1) / 100 for a in arms])},
            ylabel="success / history tokens per step (x100)", title=f"ShelfWorld ({v}){smoke}")
        figs.append(os.path.relpath(path, workdir))
    ag = table[[r["cell"] for r in table].index(f"{config.variants[0]}.agentocr_k5")]
    tg = table[[r["cell"] for r in table].index(f"{config.variants[0]}.text_grpo")]
    headline = (f"{config.variants[0]}: AgentOCR success {ag['success_mean']:.2f} with {ag['tokens_mean_mean']:.0f} "
                f"visual tokens/step vs Text+GRPO {tg['success_mean']:.2f} with {tg['tokens_mean_mean']:.0f} word "
                f"tokens/step ({len(seeds)} seeds){' [smoke run]' if quick else ''}")
    tables = {"main": table, "chance": chance_table}
    if tune_table:
        tables["tuning"] = tune_table
    return {"seeds": seeds, "claims": claims, "tables": tables, "figures": figs, "headline": headline,
            "hyperparameters": hparams}


def _cache_sanity(config):
    """Segment cache vs fresh render: byte identity on expert histories (per seed: fraction identical)."""
    rs = render.RenderSettings(width=config.width, font=config.font, line_px=config.line_px)
    fr = []
    for s in config.seeds:
        env, _ = aenv.expert_episode(aenv.EnvParams(variant="code"), 900 + s)
        cache, ok, segs = render.SegmentCache(rs), [], env.segments() * 2
        for t in range(1, len(segs) + 1):
            ok.append(np.array_equal(cache.render(segs[:t]), render.render_history_nocache(segs[:t], rs)))
        fr.append(float(np.mean(ok)) + 0.0 * cache.hits)
    return claim("cache_byte_identity", "Cached stacked images equal fresh renders", "fraction_identical",
                 ours=("segment_cache", fr), baselines={"required": [1.0] * len(fr)}, higher_is_better=True,
                 kind="no_worse", margin=1e-9, block="sanity", note="exact equality; margin only numerical")


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("agentocr", run)
