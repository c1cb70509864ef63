"""Dr. MAS (arXiv 2602.08847) on the tiny LM: a Solver/Checker system trained with GRPO-traj (the paper's
vanilla), global-step normalization (issue #81's ablation) and Dr. MAS (per-(prompt, agent)
normalization), under a faithful and a stress reward regime, with shared and non-shared weights.

Per (study, mode, seed) one RL run from the same role-SFT warm start; a seed varies prompt draws and
sampling (one SFT model). Records per-agent pre-clip gradient norms, E[A^2], the Lemma factor, checker
precision/recall, retry rate, verdict collapse, and held-out system avg@k / pass@k. Every run is a
cell of `jaxlab.core.study` (config-hash-stamped records; a rerun resumes), and checkpointed while it runs.

    python experiments/drmas.py --config=experiments/configs/drmas.py:quick --workdir=/tmp/drmas
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxlab.core import plots
from jaxlab.core.config import config_module_attr
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim, mean_std, untestable
from jaxlab.lm import cache, tasks
from jaxlab.lm.tokenizer import NO, YES, CharTokenizer
from jaxlab.lm.train import model_config, sft_spec
from jaxlab.rl import multiagent as ma
from jaxlab.rl import orchestra as orc
from jaxlab.rl.drmas import spike_stats


def _studies():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "drmas.py")
    return config_module_attr(path, "STUDIES")


def problems(config):
    t = config.task
    return tasks.train_eval_split(t.family, n_train=t.n_train, n_eval=t.n_eval, eval_seed=t.eval_seed,
                                  digits=t.digits)


def role_sft_config(config):
    """The SFT config of the role warm start: the stock quick model's, with the role_sft knobs."""
    rs = config.role_sft
    c = config.sft.copy_and_resolve_references()
    c.data.seq_len = rs.seq_len
    c.optim.update(steps=rs.steps, lr=rs.lr, warmup=rs.warmup, batch_size=rs.batch_size)
    c.train.update(chunk=100, eval_every=100_000, target_acc=0.0)
    if rs.verdict_weight != 1.0:      # loss weight of the checker's verdict token (jaxlab.lm SFT knob)
        with c.unlocked():            # the experiment's config is locked (config_flags)
            c.data.token_weights = {YES: float(rs.verdict_weight), NO: float(rs.verdict_weight)}
    return c


def role_rows(config):
    """Solver / checker / retry rows of `role_sft.n_problems` problems, plus verdict rows (the
    comparison and verdict given the gold recomputation) of the first `role_sft.verdict_rows`."""
    rs, t = config.role_sft, config.task
    probs = tasks.generate(t.family, rs.n_problems, seed=rs.data_seed, split="train", digits=t.digits)
    rows = orc.sft_rows(probs, seed=rs.data_seed, wrong_frac=rs.wrong_frac,
                        unparseable_frac=rs.unparseable_frac, compare_width=rs.compare_width)
    if rs.verdict_rows:
        rows += orc.checker_rows(probs[:rs.verdict_rows], seed=rs.data_seed, wrong_frac=0.5,
                                 unparseable_frac=rs.unparseable_frac, compare_width=rs.compare_width)
    return rows


def role_recipe(config) -> dict:
    """The role warm start's recipe (it enters the model-cache key with a digest of the rows)."""
    rs = config.role_sft
    return {"name": "drmas_roles_v1", "family": config.task.family, "digits": config.task.digits,
            **{k: rs[k] for k in ("n_problems", "wrong_frac", "unparseable_frac", "data_seed",
                                   "verdict_weight", "compare_width", "verdict_rows")}}


def warm_start(config):
    """(params, info) of the role-SFT model: stock quick SFT model -> fine-tuned on role rows (cached)."""
    base, _ = cache.load_or_train(sft_spec(config.sft), config.sft_seed)
    return cache.load_or_train(sft_spec(role_sft_config(config)), config.sft_seed, rows=role_rows(config),
                               recipe=role_recipe(config), init_params=base,
                               init_key=cache.model_key(sft_spec(config.sft), config.sft_seed))


def hparams(config, *, mode: str, regime: str, shared: bool) -> ma.MAHParams:
    r = config.rl
    fields = {f: r[f] for f in ma.MAHParams._fields if f in r}
    return ma.MAHParams(mode=mode, regime=regime, shared=shared, **fields)


def cells(config, sft_key: str):
    """One study.Cell per (study, mode); the cell config holds everything that determines a run."""
    from jaxlab.core import study
    studies = _studies()
    out = []
    for name in config.studies:
        if name not in studies:
            raise ValueError(f"studies: unknown study {name!r}; expected one of {sorted(studies)}")
        st = studies[name]
        for mode in st["modes"]:
            hp = hparams(config, mode=mode, regime=st["regime"], shared=st["shared"])
            out.append(study.Cell(f"{name}.{mode}", {
                "hp": hp._asdict(), "steps": config.rl.steps, "chunk": config.rl.chunk,
                "sft": sft_key, "task": config.task.to_dict(), "study": name}))
    return out


def _series(hist, name):
    return np.asarray(hist[name], np.float64)


def run(config, workdir: str) -> dict:
    from jaxlab.core import study
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    params, info = warm_start(config)
    tok = CharTokenizer()
    cfg = model_config(config.sft, tok)
    train_p, eval_p = problems(config)
    studies = _studies()
    k = config.rl.eval_samples
    mw = MetricsWriter(os.path.join(workdir, "metrics.jsonl"))

    def build(hp):
        return ma.make_train(hp, cfg=cfg, init_params=params, train_problems=train_p,
                             eval_problems=eval_p, tok=tok)

    def run_start(cell, seed):
        m = build(hparams(config, mode="drmas", regime="faithful", shared=True))
        return m.eval_fn(m.trainer.init(jax.random.PRNGKey(0)))

    start_cell = study.Cell("sft_start", {"sft": info["key"], "task": config.task.to_dict(),
                                          "k": k, "rl": config.rl.to_dict()})
    start = study.run_study([start_cell], run_start, workdir=workdir, seeds=[0],
                            progress=False)["sft_start"][0]
    mw.write(0, kind="sft_start", **start)

    def run_cell(cell, seed):
        hp = ma.MAHParams(**cell.config["hp"])
        m = build(hp)
        ckpt = os.path.join(workdir, "ckpt", f"{cell.id}_s{seed}")

        def log(step, rec):
            mw.write(step, cell=cell.id, seed=seed, **{a: b for a, b in rec.items()
                                                       if np.ndim(b) == 0})
        _, hist = ma.train(m, jax.random.PRNGKey(seed), steps=config.rl.steps,
                           chunk=config.rl.chunk, ckpt_dir=ckpt, log_fn=log)
        gn = _series(hist, "grad_norm_agent").reshape(-1, ma.K)
        spikes = [spike_stats(gn[:, a], threshold=config.norm_threshold, window=config.spike_window,
                              factor=config.spike_factor) for a in range(ma.K)]
        final = hist["eval"][-1]
        return {"final": final, "gain": final[f"avg@{k}"] - start[f"avg@{k}"],
                "spikes": [s_["spikes"] for s_ in spikes],
                "frac_above": [s_["frac_above"] for s_ in spikes],
                "frac_above_any": float(np.mean((gn > config.norm_threshold).any(1))),
                "median_norm": [s_["median"] for s_ in spikes],
                "grad_norm_agent": gn.tolist(),
                "adv_sq": _series(hist, "adv_sq").reshape(-1, ma.K).tolist(),
                "lemma": _series(hist, "lemma").reshape(-1, ma.K).tolist(),
                "checker_acc_train": hist["checker_acc"], "team_acc_train": hist["team_acc"],
                "retry_rate_train": hist["retry_rate"], "yes_rate_train": hist["yes_rate"]}

    cs = cells(config, info["key"])
    res = study.run_study(cs, run_cell, workdir=workdir, seeds=list(config.seeds))
    mw.close()
    return summarize(config, workdir, res, start)


def summarize(config, workdir, res, start) -> dict:
    seeds = list(config.seeds)
    k = config.rl.eval_samples
    studies = _studies()
    vals = lambda cid, f: [f(res[cid][s]) for s in seeds]
    rows, figures, claims = [], [], []
    for name in config.studies:
        st = studies[name]
        for mode in st["modes"]:
            cid = f"{name}.{mode}"
            row = {"study": name, "mode": mode}
            for key, f in [(f"avg@{k}", lambda r: r["final"][f"avg@{k}"]),
                           (f"pass@{k}", lambda r: r["final"][f"pass@{k}"]),
                           ("gain", lambda r: r["gain"]),
                           ("checker_acc", lambda r: r["final"]["checker_acc"]),
                           ("checker_precision", lambda r: r["final"]["checker_precision"]),
                           ("checker_recall", lambda r: r["final"]["checker_recall"]),
                           ("reject_recall", lambda r: r["final"]["reject_recall"]),
                           ("retry_rate", lambda r: r["final"]["retry_rate"]),
                           ("collapsed", lambda r: r["final"]["collapsed"]),
                           ("frac_above_any", lambda r: r["frac_above_any"])] + [
                    (f"{what}_{ag}", (lambda w, a: lambda r: (r[w][a] if w in ("spikes", "frac_above",
                                                                               "median_norm")
                                                              else float(np.mean(np.asarray(r[w])[:, a]))))(what, a))
                    for what in ("spikes", "frac_above", "median_norm", "adv_sq", "lemma")
                    for a, ag in enumerate(orc.AGENTS)]:
                m_, s_ = mean_std(vals(cid, f))
                row[f"{key}_mean"], row[f"{key}_std"] = m_, s_
            rows.append(row)
        # per-agent pre-clip gradient norm curves (mean +- std over seeds)
        for a, ag in enumerate(orc.AGENTS):
            series = {mode: np.asarray([np.asarray(res[f"{name}.{mode}"][s]["grad_norm_agent"])[:, a]
                                        for s in seeds]) for mode in st["modes"]}
            T = next(iter(series.values())).shape[1]
            path = f"figures/grad_norm_{name}_{ag}.png"
            plots.curves(os.path.join(workdir, path),
                         np.arange(1, T + 1), series, xlabel="RL step",
                         ylabel=f"{ag} pre-clip grad norm", title=f"{name}: {ag}", logy=True)
            figures.append(path)
    return {"seeds": seeds, "tables": {"main": rows, "sft_start": [start]}, "figures": figures,
            "claims": make_claims(config, res, start), "headline": headline(config, rows, start)}


def make_claims(config, res, start) -> list:
    seeds = list(config.seeds)
    k = config.rl.eval_samples
    have = lambda name: name in config.studies
    get = lambda cid, f: [float(f(res[cid][s])) for s in seeds]
    share = lambda r: r["frac_above_any"]
    spikes = lambda r: sum(r["spikes"])
    out = []
    thr = config.norm_threshold
    seed_note = ("a seed varies prompt draws and sampling from one role-SFT model; arms share the "
                 "sampling keys per seed (paired)")
    for name, label in (("stress_shared", "shared weights"), ("stress_split", "non-shared weights")):
        modes = _studies()[name]["modes"]
        base_modes = [m for m in modes if m != "drmas"]
        cid = "stress_spikes" + ("" if name == "stress_shared" else "_split")
        text = (f"Stress regime, {label}: Dr. MAS puts a smaller share of updates above the pre-clip "
                f"gradient-norm threshold {thr:g} than " + " and ".join(base_modes))
        if not have(name):
            out.append(untestable(cid, text, f"share of updates with any agent's norm > {thr:g}",
                                  f"study {name} not run in this suite", block="paper"))
            continue
        out.append(claim(cid, text, f"share of updates with any agent's pre-clip norm > {thr:g}",
                         ours=("drmas", get(f"{name}.drmas", share)),
                         baselines={m: get(f"{name}.{m}", share) for m in base_modes},
                         higher_is_better=False, paired=True, block="paper", note=seed_note))
        out.append(claim(cid.replace("spikes", "spike_count"),
                         f"Stress regime, {label}: Dr. MAS has fewer gradient-norm spikes (norm > "
                         f"{config.spike_factor:g} x the median of the previous {config.spike_window} "
                         f"updates, summed over agents) than " + " and ".join(base_modes),
                         "spike count", ours=("drmas", get(f"{name}.drmas", spikes)),
                         baselines={m: get(f"{name}.{m}", spikes) for m in base_modes},
                         higher_is_better=False, paired=True, block="paper", note=seed_note))
    text = (f"Faithful regime (shared weights): Dr. MAS's held-out system avg@{k} is no worse than "
            f"GRPO-traj's")
    if have("faithful_shared"):
        out.append(claim("faithful_accuracy", text, f"avg@{k}",
                         ours=("drmas", get("faithful_shared.drmas", lambda r: r["final"][f"avg@{k}"])),
                         baselines={"grpo_traj": get("faithful_shared.grpo_traj",
                                                     lambda r: r["final"][f"avg@{k}"])},
                         higher_is_better=True, kind="no_worse", margin=config.faithful_margin,
                         paired=True, block="paper",
                         note=f"margin {config.faithful_margin} avg@{k}: about two seed standard "
                              f"deviations of the KPO study's avg@8 on the same task; " + seed_note))
    else:
        out.append(untestable("faithful_accuracy", text, f"avg@{k}",
                              "study faithful_shared not run in this suite", block="paper"))
    if have("stress_shared"):
        chk = lambda r: float(np.mean(np.asarray(r["adv_sq"])[:, 1]))
        out.append(claim("global_inflates_checker",
                         "Sanity (Lemma): in the stress regime global-step gives the checker a larger "
                         "E[A^2] than Dr. MAS (which keeps it <= 1)", "checker E[A^2] (mean over steps)",
                         ours=("global_step", get("stress_shared.global_step", chk)),
                         baselines={"drmas": get("stress_shared.drmas", chk)},
                         higher_is_better=True, paired=True, block="sanity", note=seed_note))
    return out


def headline(config, rows, start) -> str:
    k = config.rl.eval_samples
    parts = []
    for r in rows:
        parts.append(f"{r['study']}/{r['mode']}: share>{config.norm_threshold:g} "
                     f"{r['frac_above_any_mean']:.2f}, avg@{k} {r[f'avg@{k}_mean']:.3f}")
    return (f"Dr. MAS on the tiny-LM solver/checker ({len(config.seeds)} seed(s), SFT start avg@{k} "
            f"{start[f'avg@{k}']:.3f}, checker acc {start['checker_acc']:.2f}): " + "; ".join(parts))


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("drmas", run)
