"""ARS miniature (arXiv 2601.17467): answer-agreement representation shaping on the tiny reasoning LM.

Pipeline: frozen SFT LM (model cache) -> task difficulty chosen on 100 selection problems (LM hash-'val'
split) -> N problems of that task from the LM hash-'test' split, greedy CoT answers, correctness labels
-> seed-independent features (last-answer-token states of every layer, <yes>/<no> contrast states, answer
NLL, K answers sampled at T for EigenScore / semantic entropy) -> per seed (core.study, resumable): split
25% test / 100 val / rest train, boundary counterfactuals for every rho (delta ~ N(0, (rho RMS h)^2 I) at the
LM-head input, M greedy draws), layer / rho / k / tau / epochs / signs chosen on val, head g fitted on train,
detectors on raw u, shaped z, PCA and random projections; other positions and a middle-layer intervention
at the chosen rho.
"""

from __future__ import annotations

import os
import sys
import time
from typing import NamedTuple

import jax
import numpy as np

from jaxlab import lm
from jaxlab.ars import counterfactual
from jaxlab.ars import evaluate as ars_eval
from jaxlab.ars.detectors import semantic_entropy
from jaxlab.ars.losses import ARSHParams
from jaxlab.core import plots, study
from jaxlab.core.app import launch
from jaxlab.core.config import config_to_dict, load_config
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim, combine_claims, mean_std
from jaxlab.lm import cache, tasks


def _candidates(spec: str) -> list[tuple[str, int]]:
    out = []
    for part in spec.split(","):
        fam, dg = part.strip().split(":")
        out.append((fam, int(dg)))
    return out


def load_lm(config):
    """The frozen SFT LM from the model cache. With lm.allow_train (quick) a missing model is trained and
    cached (the lm_sft recipe); without it (full: the d=128 model is trained by the lm_sft experiment)
    a missing model is a clear error instead of an hour of SFT inside this experiment."""
    lmc = load_config(config.lm.config, config.lm.size)
    if config.lm.get("allow_train", True):
        params, info = cache.load_or_train(lm.sft_spec(lmc), config.lm.seed)
    else:
        hit = cache.load(lm.sft_spec(lmc), config.lm.seed)
        if hit is None:
            raise ValueError(f"lm: the {config.lm.size} SFT model (seed {config.lm.seed}, cache key "
                             f"{cache.model_key(lm.sft_spec(lmc), config.lm.seed)}) is not in {cache.cache_root()}; train it "
                             f"first: python -m jaxlab.reproduce --suite={config.lm.size} --only=lm_sft")
        params, info = hit
    tok = lm.CharTokenizer()
    return params, tok, lm.model_config(lmc, tok)


def _prompt_len(tok, problems) -> int:
    return max(len(tok.encode("<bos>" + p.prompt())) for p in problems)


def choose_task(params, tok, cfg, config) -> dict:
    """Greedy CoT accuracy on n_select problems of each candidate (LM hash-'val' split); the first inside
    [band_lo, band_hi], else the closest to the band. A candidate whose test split cannot supply
    data.n_problems distinct problems, or whose text overflows the context, is skipped (recorded). Returns {"family", "digits", "accs", "in_band",
    "prompt_len"}: every candidate is generated with the same batch size and prompt length (left PAD), so
    selection and the main generation share one compiled sampler."""
    sets = []
    for fam, dg in _candidates(config.task.candidates):
        try:
            probs = tasks.generate(fam, config.task.n_select, seed=config.task.select_seed, split="val",
                                   digits=dg, unique=True)
            if len(probs[0].text()) + 1 > cfg.max_len:
                raise ValueError("too long for the model's context")
            tasks.generate(fam, config.data.n_problems, seed=config.data.pool_seed, split="test", digits=dg,
                           unique=True)                # the main pool must exist (mul1-3 has ~680 test problems)
            sets.append((fam, dg, probs, None))
        except ValueError as e:                        # too few distinct questions, too long, ...
            sets.append((fam, dg, None, str(e)[:120]))
    P = max(_prompt_len(tok, pr) for _, _, pr, _ in sets if pr is not None)
    accs = []
    for fam, dg, probs, err in sets:
        if probs is None:
            accs.append({"family": fam, "digits": dg, "acc": None, "skipped": err})
            continue
        g = lm.generate_answers(params, probs, cfg=cfg, tok=tok, batch_size=config.gen_batch, prompt_len=P)
        accs.append({"family": fam, "digits": dg, "acc": float(g["correct"].mean())})
    lo, hi = config.task.band_lo, config.task.band_hi
    ok = [a for a in accs if a["acc"] is not None]
    inside = [a for a in ok if lo <= a["acc"] <= hi]
    pick = inside[0] if inside else min(ok, key=lambda a: max(lo - a["acc"], a["acc"] - hi))
    return {"family": pick["family"], "digits": pick["digits"], "acc_select": pick["acc"], "accs": accs,
            "in_band": bool(inside), "prompt_len": P}


def _orig_parsed(texts):
    return [lm.parse_answer(counterfactual.split_answer(t)[1]) for t in texts]


class CFShape(NamedTuple):
    """One (P, N) for every counterfactual program: prefixes left-padded to P tokens, N decoding steps."""
    prompt_len: int
    new_tokens: int


def cf_shape(tok, cfg, texts, positions) -> CFShape:
    """P = the longest '<bos>' + prefix over all positions; N = enough steps for the shortest prefix to fill
    the model's context (each row is cut at its own context end, see counterfactual.counterfactuals)."""
    lens = [len(tok.encode("<bos>" + counterfactual.truncate_at(t, p))) for p in positions for t in texts]
    return CFShape(max(lens), cfg.max_len - min(lens))


def cached_features(params, tok, cfg, texts, fcache: dict, batch_size: int) -> np.ndarray:
    """Last-answer-token block outputs [L, len(texts), d] of (possibly repeated) texts, computing each
    distinct text once: greedy counterfactuals mostly reproduce the original text (or one another), and the
    teacher-forced embedding is a function of the text. fcache: {text: [L, d]}, filled in place."""
    new = sorted({t for t in texts if t not in fcache})
    if new:
        F = counterfactual.features(params, new, cfg=cfg, tok=tok, batch_size=batch_size, strict=False)
        for i, t in enumerate(new):
            fcache[t] = F.blocks_lbd[:, i]
    return np.stack([fcache[t] for t in texts], axis=1)


def make_cfset(params, tok, cfg, texts, orig, key, *, position, rho, layer, num_draws, answer_tokens,
               batch_size, shape: CFShape, fcache: dict) -> ars_eval.CFSet:
    """Counterfactuals of every text at `position` (truncate there, perturb its state, continue greedily).
    At the LM-head input (layer -1) by forcing the first token (`counterfactual.head_counterfactuals`, reusing the
    original text's remainder where the forced token is the original one); at a block output through the
    sampler's delta intervention (`counterfactual.counterfactuals`)."""
    prefixes = [counterfactual.truncate_at(t, position) for t in texts]
    prompts = counterfactual.encode_prefixes(prefixes, tok, shape.prompt_len)
    keep = answer_tokens if position == "boundary" else None
    if layer == -1:
        rest = [tok.encode(t[len(pre):]) for t, pre in zip(texts, prefixes)]
        greedy = np.full((len(texts), max(1, max(len(r) for r in rest))), tok.pad_id, np.int32)
        for i, r in enumerate(rest):
            greedy[i, :len(r)] = r
        toks = counterfactual.head_counterfactuals(params, key, prompts, cfg=cfg, rho=rho, num_draws=num_draws,
                                      max_new_tokens=shape.new_tokens, batch_size=batch_size,
                                      keep_tokens=keep, greedy_tokens=greedy)
    else:
        toks = counterfactual.counterfactuals(params, key, prompts, cfg=cfg, rho=rho, num_draws=num_draws,
                                 max_new_tokens=shape.new_tokens, layer=layer, batch_size=batch_size,
                                 keep_tokens=keep)
    conts = counterfactual.decode_answers(tok, toks)
    full = [prefixes[i] + c for i in range(len(texts)) for c in conts[i]]
    parsed = [lm.parse_answer(f) if counterfactual.MARKER in f else None for f in full]
    N, M = len(texts), num_draws
    ok = np.array([p is not None for p in parsed]).reshape(N, M)
    agree = np.array([p is not None and p == orig[i // M] for i, p in enumerate(parsed)]).reshape(N, M)
    u = cached_features(params, tok, cfg, full, fcache, batch_size)
    return ars_eval.CFSet(agree, ok, u.reshape(u.shape[0], N, M, -1))


def build_bundle(params, tok, cfg, config, task) -> tuple[ars_eval.Bundle, list[str], dict]:
    probs = tasks.generate(task["family"], config.data.n_problems, seed=config.data.pool_seed, split="test",
                           digits=task["digits"], unique=True)
    P = max(task["prompt_len"], _prompt_len(tok, probs))   # = the selection's P (one compile) unless longer
    g = lm.generate_answers(params, probs, cfg=cfg, tok=tok, batch_size=config.gen_batch, prompt_len=P)
    texts = [p.prompt() + g["texts"][i][0] for i, p in enumerate(probs)]
    keep = [i for i, t in enumerate(texts) if counterfactual.MARKER in t]
    texts = [texts[i] for i in keep]
    y = g["correct"][keep, 0].astype(np.int32)
    bs = config.batch_size
    F = counterfactual.features(params, texts, cfg=cfg, tok=tok, batch_size=bs)
    Fy = counterfactual.features(params, texts, cfg=cfg, tok=tok, batch_size=bs, verdict="<yes>")
    Fn = counterfactual.features(params, texts, cfg=cfg, tok=tok, batch_size=bs, verdict="<no>")
    K = config.det.num_samples
    kept = [probs[i] for i in keep]
    s = lm.generate_answers(params, kept, cfg=cfg, tok=tok, greedy=False, num_samples=K,
                            temperature=config.det.temperature, key=jax.random.PRNGKey(4242),
                            batch_size=max(1, config.gen_batch // K), prompt_len=P)
    stexts = [p.prompt() + s["texts"][i][k] for i, p in enumerate(kept) for k in range(K)]
    Fs = counterfactual.features(params, stexts, cfg=cfg, tok=tok, batch_size=bs, strict=False)
    L = Fs.blocks_lbd.shape[0]
    b = ars_eval.Bundle(y=y, u=F.blocks_lbd, u_yes=Fy.blocks_lbd, u_no=Fn.blocks_lbd,
                 samples=Fs.blocks_lbd.reshape(L, len(kept), K, -1), nll=F.nll_b,
                 sem_entropy=semantic_entropy([list(r) for r in s["parsed"]]))
    info = {"n_generated": len(probs), "n_with_marker": len(keep), "acc": float(y.mean()),
            "example": texts[0]}
    return b, texts, info


def _det_opts(config) -> ars_eval.DetOpts:
    return ars_eval.DetOpts(probe_l2=config.det.probe_l2, n_low_labels=config.det.n_low_labels,
                     ccs_restarts=config.det.ccs_restarts, halo_kmax=config.det.halo_kmax,
                     eigen_alpha=config.det.eigen_alpha)


def _hps(config) -> list[ARSHParams]:
    h = config.head
    return [ARSHParams(k=int(k), tau=float(t), lr=h.lr, weight_decay=h.weight_decay, epochs=max(h.epochs_grid),
                       batch_size=h.batch_size, loss=h.loss, reg=h.reg)
            for k in h.k_grid for t in h.tau_grid]


def run_seed_fn(params, tok, cfg, config, b, texts):
    orig = _orig_parsed(texts)
    positions = [p.strip() for p in config.cf.positions.split(",") if p.strip()]
    shape = cf_shape(tok, cfg, texts, ["boundary"] + positions)
    fcache = {t: b.u[:, i] for i, t in enumerate(texts)}     # the originals' embeddings (same program)
    cfk = dict(num_draws=config.cf.num_draws, answer_tokens=config.cf.answer_tokens,
               batch_size=config.batch_size, shape=shape, fcache=fcache)

    def run_cell(cell, seed):
        t0 = time.time()
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 77)
        cf_main = {float(r): make_cfset(params, tok, cfg, texts, orig, jax.random.fold_in(key, i),
                                        position="boundary", rho=float(r), layer=-1, **cfk)
                   for i, r in enumerate(config.cf.rho_grid)}
        t_cf = time.time() - t0

        def positions_fn(rho, rows):
            tx, og = [texts[i] for i in rows], [orig[i] for i in rows]
            out = {p: make_cfset(params, tok, cfg, tx, og, jax.random.fold_in(key, 100 + j), position=p,
                                 rho=rho, layer=-1, **cfk) for j, p in enumerate(positions)}
            if config.cf.mid_layer >= 0:
                out["mid_layer"] = make_cfset(params, tok, cfg, tx, og, jax.random.fold_in(key, 200),
                                              position="boundary", rho=rho, layer=config.cf.mid_layer, **cfk)
            return out

        res = ars_eval.analyse_seed(b, cf_main, positions_fn, seed, hps=_hps(config),
                             epochs_grid=list(config.head.epochs_grid), opts=_det_opts(config),
                             test_frac=config.data.test_frac, n_val=config.data.n_val,
                             sweep_n=config.data.n_sweep or None)
        res["time_s"] = {"boundary_cf": round(t_cf, 1), "total": round(time.time() - t0, 1)}
        res["cf_shape"] = list(shape)
        return res
    return run_cell


def _ms(v):
    m, s = mean_std(v)
    return round(m, 4), round(s, 4)


def _sweep_note(recs) -> str:
    sw = recs[0].get("sweep_rows")
    if not sw:
        return "on every problem"
    return (f"on a {sw['n']}-problem subset of each seed's split ({sw['n_train']} train / {sw['n_val']} val / "
            f"{sw['n_test']} test), where the boundary head is refitted the same way")


def build_summary(recs: list[dict], seeds, task, info, workdir) -> dict:
    det_names = list(ars_eval.EMBED_DETECTORS)
    val = lambda rep, d: [r["detectors"][rep][d]["test"] for r in recs]
    claims = []
    parts = [claim(f"shaped_vs_raw_{d}", f"shaped z = g(u) gives higher test AUROC than raw u for {d}",
                   "test_auroc", ours=("shaped", val("shaped", d)), baselines={"raw": val("raw", d)},
                   higher_is_better=True, paired=True, chance=0.5) for d in det_names]
    claims.append(combine_claims("shaped_beats_raw", "Shaped embeddings beat raw ones for CCS, the probe, "
                                 "HaloScope and EigenScore (Table 2)", parts,
                                 note="paired over seeds (same split and draws); chance 0.5"))
    parts = [claim(f"shaped_vs_controls_{d}", f"ARS beats PCA and a random projection at the same k for {d}",
                   "test_auroc", ours=("shaped", val("shaped", d)),
                   baselines={"pca": val("pca", d), "random": val("random", d)}, higher_is_better=True,
                   paired=True, chance=0.5) for d in det_names]
    claims.append(combine_claims("shaped_beats_controls", "ARS beats PCA and random projection at the same k "
                                 "(claim 5)", parts))
    pos_names = [p for p in recs[0]["positions"] if p not in ("boundary", "mid_layer")]
    pv = lambda p: [r["positions"][p]["test_mean"] for r in recs]
    if pos_names:
        claims.append(claim("boundary_beats_positions", "Intervening at the trace boundary beats 1/4, 1/2, 3/4 "
                            "of the trace and mid-answer (claim 3)", "mean_test_auroc_4_shaped_detectors",
                            ours=("boundary", pv("boundary")), baselines={p: pv(p) for p in pos_names},
                            higher_is_better=True, paired=True, chance=0.5,
                            note="each position's head uses the boundary's val-chosen rho, k, tau, epochs; "
                                 + _sweep_note(recs)))
    rhos = sorted(float(x) for x in recs[0]["per_rho"])
    chosen = [r["per_rho"][str(r["chosen"]["rho"])]["test_mean"] for r in recs]
    claims.append(claim("chosen_rho_beats_extremes", "A moderate (val-chosen) perturbation scale beats the "
                        "smallest and largest (claim 4)", "mean_test_auroc_4_shaped_detectors",
                        ours=("val_chosen_rho", chosen),
                        baselines={f"rho={rhos[0]:g}": [r["per_rho"][str(rhos[0])]["test_mean"] for r in recs],
                                   f"rho={rhos[-1]:g}": [r["per_rho"][str(rhos[-1])]["test_mean"] for r in recs]},
                        higher_is_better=True, paired=True, chance=0.5,
                        note="chosen rho per seed: " + ", ".join(str(r["chosen"]["rho"]) for r in recs)))
    bl = lambda n: [r["baselines"][n]["test"] for r in recs]
    claims.append(claim("agreement_predicts", "The stability alpha (counterfactual agreement) alone predicts "
                        "correctness (claim 2)", "test_auroc", ours=("agreement", bl("agreement")),
                        baselines={"chance": [0.5] * len(recs)}, higher_is_better=True))
    # sanity
    claims.append(claim("disagreement_grows_with_rho", "More perturbation -> more disagreeing counterfactuals",
                        "disagreement_rate", ours=(f"rho={rhos[-1]:g}", [r["per_rho"][str(rhos[-1])]["disagree"]
                                                                          for r in recs]),
                        baselines={f"rho={rhos[0]:g}": [r["per_rho"][str(rhos[0])]["disagree"] for r in recs]},
                        higher_is_better=True, paired=True, block="sanity"))
    claims.append(claim("raw_probe_above_chance", "A supervised probe on raw embeddings detects errors",
                        "test_auroc", ours=("raw_probe", val("raw", "probe")),
                        baselines={"chance": [0.5] * len(recs)}, higher_is_better=True, block="sanity"))
    if "mid_layer" in recs[0]["positions"]:
        claims.append(claim("head_input_vs_mid_layer", "Head-input intervention at the boundary vs a middle-layer "
                            "intervention at the boundary (ablation)", "mean_test_auroc_4_shaped_detectors",
                            ours=("head_input", pv("boundary")), baselines={"mid_layer": pv("mid_layer")},
                            higher_is_better=True, paired=True, chance=0.5, block="variant"))
    # tables
    main = []
    for rep in ("raw", "shaped", "pca", "random"):
        for d in ars_eval.ALL_DETECTORS:
            vals = [r["detectors"][rep][d]["test"] for r in recs if d in r["detectors"][rep]]
            if vals:
                m, s = _ms(vals)
                main.append({"representation": rep, "detector": d, "test_auroc_mean": m, "test_auroc_std": s,
                             "n_seeds": len(vals)})
    for n in ("agreement", "perplexity", "semantic_entropy"):
        m, s = _ms(bl(n))
        main.append({"representation": "-", "detector": n, "test_auroc_mean": m, "test_auroc_std": s,
                     "n_seeds": len(recs)})
    rho_t = []
    for rho in rhos:
        row = {"rho": rho}
        for key in ("disagree", "unparsed", "disagree_correct", "disagree_wrong", "val_mean", "test_mean",
                    "anchors_with_negative", "positives_not_identical"):
            row[key + "_mean"], row[key + "_std"] = _ms([r["per_rho"][str(rho)][key] for r in recs])
        rho_t.append(row)
    pos_t = []
    for p in recs[0]["positions"]:
        row = {"position": p}
        for key in ("test_mean", "disagree", "unparsed"):
            row[key + "_mean"], row[key + "_std"] = _ms([r["positions"][p][key] for r in recs])
        pos_t.append(row)
    choices = [{"seed": r["seed"], "layer": r["layer"], **r["chosen"], "n_train": r["n_train"],
                "n_val": r["n_val"], "n_test": r["n_test"]} for r in recs]
    task_t = [{k: v for k, v in a.items()} for a in task["accs"]]
    # figures
    figdir = os.path.join(workdir, "figures")
    os.makedirs(figdir, exist_ok=True)
    figs = []
    groups = list(ars_eval.ALL_DETECTORS)
    series = {}
    for rep in ("raw", "shaped", "pca", "random"):
        ms = [_ms([r["detectors"][rep][d]["test"] for r in recs if d in r["detectors"][rep]] or [0.5])
              for d in groups]
        series[rep] = ([m for m, _ in ms], [s for _, s in ms])
    plots.grouped_bars(os.path.join(figdir, "detectors.png"), groups, series, ylabel="test AUROC",
                       title="ARS: raw vs shaped vs controls")
    figs.append("figures/detectors.png")
    plots.lines(os.path.join(figdir, "rho.png"), np.array(rhos),
                {"disagreement": np.array([row["disagree_mean"] for row in rho_t]),
                 "unparsed": np.array([row["unparsed_mean"] for row in rho_t]),
                 "test mean AUROC (shaped)": np.array([row["test_mean_mean"] for row in rho_t])},
                xlabel="rho (sigma / RMS(h))", ylabel="rate / AUROC", title="ARS: perturbation scale")
    figs.append("figures/rho.png")
    sh = {d: _ms(val("shaped", d))[0] for d in det_names}
    rw = {d: _ms(val("raw", d))[0] for d in det_names}
    headline = (f"{task['family']}-{task['digits']} (acc {info['acc']:.2f}), test AUROC raw->shaped: "
                + ", ".join(f"{d} {rw[d]:.2f}->{sh[d]:.2f}" for d in det_names)
                + f"; agreement alone {_ms(bl('agreement'))[0]:.2f} ({len(recs)} seeds)")
    return {"seeds": list(seeds), "claims": claims,
            "tables": {"main": main, "rho": rho_t, "positions": pos_t, "choices": choices, "task": task_t},
            "figures": figs, "headline": headline,
            "task": {k: v for k, v in task.items() if k != "accs"}, "data": info}


def run(config, workdir: str) -> dict:
    t0 = time.time()
    params, tok, cfg = load_lm(config)
    task = choose_task(params, tok, cfg, config)
    print(f"ars: task {task['family']}-{task['digits']} (val greedy acc {task['acc_select']:.2f}, in band: "
          f"{task['in_band']}) after {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    b, texts, info = build_bundle(params, tok, cfg, config, task)
    info["t_setup_s"] = round(time.time() - t0, 1)
    print(f"ars: {len(texts)} answers (acc {info['acc']:.2f}), features and samples after {info['t_setup_s']:.0f}s",
          file=sys.stderr, flush=True)
    seeds = [int(s) for s in config.seeds]
    cell = study.Cell("main", {"config": config_to_dict(config), "task": task,
                               "n": int(len(texts))})
    res = study.run_study([cell], run_seed_fn(params, tok, cfg, config, b, texts), workdir=workdir,
                          seeds=seeds, progress=True)["main"]
    recs = [res[s] for s in seeds]
    with MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as mw:
        mw.write(0, kind="task", acc=info["acc"], n=len(texts))
        for r in recs:
            mw.write(r["seed"], kind="seed", layer=r["layer"], rho=r["chosen"]["rho"], k=r["chosen"]["k"],
                     tau=r["chosen"]["tau"], epochs=r["chosen"]["epochs"],
                     **{f"{rep}/{d}": v["test"] for rep, dd in r["detectors"].items() for d, v in dd.items()})
    return build_summary(recs, seeds, task, info, workdir)


if __name__ == "__main__":
    launch("ars", run)
