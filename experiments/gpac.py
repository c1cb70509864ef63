"""G-PAC / C-PAC miniature (Huang, Zeng et al., arXiv 2601.22790, on PAC reasoning arXiv 2510.09133).

Does a per-group PAC threshold keep every group's performance loss below eps with probability
>= 1 - alpha, where one marginal threshold does not, and does grouping still save thinking tokens?

Per dataset (synthetic population / tiny-LM answers), seed and eps: `n_splits` calibration sets drawn
i.i.d. from a finite population (so each group's risk R_g(u) is exact), methods
{naive, naive per group, marginal PAC, marginal PAC from IPS labels (label saving, pi = ips_pi),
G-PAC, G-PAC + Bonferroni, C-PAC (k-means on D_1, calibrate on D_2), C-PAC-joint (heuristic),
C-PAC with random clusters (ablation)}, all vmapped over the splits in one jit. Reported per method and group:
violation frequency P(R_g(u_hat) > eps), mean realised risk, routed fraction, CoT-token savings, and
C-PAC's adjusted Rand index against the true groups.
"""

from __future__ import annotations

import functools
import inspect
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import adjusted_rand_score

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import plots
from jaxlab.core import study
from jaxlab.core import summary as summary_lib
from jaxlab.pac import calibrate as cal
from jaxlab.pac import data as data_lib

METHODS = ("naive", "naive_group", "marginal", "ips", "gpac", "gpac_bonf", "cpac", "cpac_joint", "cpac_random")
LABELS = {"naive": "naive", "naive_group": "naive per group", "marginal": "marginal PAC",
          "ips": "marginal PAC, IPS labels", "gpac": "G-PAC", "gpac_bonf": "G-PAC (Bonferroni)",
          "cpac": "C-PAC", "cpac_joint": "C-PAC-joint (heuristic)", "cpac_random": "C-PAC, random clusters"}
CLUSTERED = ("cpac", "cpac_joint", "cpac_random")


# ----------------------------------------------------------------------------- claims (block-aware)
def _claim(*args, block: str = "paper", **kw) -> dict:
    if "block" in inspect.signature(summary_lib.claim).parameters:
        return summary_lib.claim(*args, block=block, **kw)
    return {**summary_lib.claim(*args, **kw), "block": block}


def _untestable(id, claim, metric, reason, block="paper") -> dict:
    if hasattr(summary_lib, "untestable"):
        return summary_lib.untestable(id, claim, metric, reason, block=block)
    return {"id": id, "claim": claim, "metric": metric, "verdict": "untestable here", "note": reason,
            "block": block}


# ----------------------------------------------------------------------------- populations
def synthetic_population(config) -> dict:
    splits = data_lib.load_synthetic(source=config.synthetic.data_source, config=config.synthetic.builder_config)
    pop = {k: np.concatenate([splits["calibration"][k], splits["test"][k]]) for k in
           ("scores", "losses", "groups", "emb")}
    pop["groups"] = pop["groups"].astype(np.int32)
    pop["cot_tokens"] = np.ones_like(pop["scores"])          # no token counts: savings = routed share
    pop["names"] = list(data_lib.PopulationSpec().names)
    return pop


def lm_population(config, model_seed: int, workdir: str) -> dict:
    """Both-mode answers of the cached SFT model; stored in workdir/lm_data/ keyed by the model key."""
    from jaxlab import lm
    from jaxlab.core.config import load_config
    from jaxlab.pac import lm_data

    sft = load_config("experiments/configs/lm_sft.py", config.lm.sft_size)
    key = lm.model_key(lm.sft_spec(sft), model_seed)
    fams = {k: int(v) for k, v in config.lm.families.items()}
    tag = f"{key}_{'-'.join(f'{k}{v}' for k, v in fams.items())}_{config.lm.max_per_family}"
    path = os.path.join(workdir, "lm_data", tag + ".npz")
    if os.path.exists(path):
        with np.load(path) as f:
            d = {k: f[k] for k in f.files}
    else:
        hit = lm.load(lm.sft_spec(sft), model_seed)
        if hit is None:
            if not config.lm.train_if_missing:
                raise ValueError(f"lm.model_seeds: the {config.lm.sft_size} SFT model seed {model_seed} is not in "
                                 f"the model cache; run `make full PAPER=lm_sft` or set lm.train_if_missing")
            hit = lm.load_or_train(lm.sft_spec(sft), model_seed)
        params = hit[0]
        problems = lm_data.family_population(fams, max_per_family=config.lm.max_per_family)
        d = lm_data.answer_both_modes(params, problems, cfg=lm.model_config(sft), batch_size=config.lm.batch_size)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **d)
        os.replace(tmp, path)
    d = dict(d)
    d["losses"] = d["loss_degrade"] if config.lm.degrade_only else d["loss_disagree"]
    d["names"] = [str(x) for x in d["families"]]
    return d


def project(emb: np.ndarray, dim: int) -> np.ndarray:
    """Standardised top-`dim` principal components of the population's embeddings (features only, no
    labels: fitting them on the whole population does not touch the calibration losses)."""
    x = emb - emb.mean(0)
    if x.shape[1] <= dim:
        return (x / (x.std(0) + 1e-6)).astype(np.float32)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    z = x @ vt[:dim].T
    return (z / (z.std(0) + 1e-6)).astype(np.float32)


# ----------------------------------------------------------------------------- one (population, eps)
@functools.partial(jax.jit, static_argnames=("n_cal", "num_groups", "params", "cluster_frac", "iters",
                                             "n_init", "ips_pi"))
def _splits(keys, pop, *, n_cal, num_groups, params, cluster_frac, iters, n_init, ips_pi):
    """vmapped over calibration draws; returns per-split routed masks' summaries."""
    N = pop["scores"].shape[0]
    G = M = num_groups

    def one(key):
        kd, kc = jax.random.split(key)
        kr, ki = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
        idx = jax.random.randint(kd, (n_cal,), 0, N)
        s, l, g, e = (pop[k][idx] for k in ("scores", "losses", "groups", "emb"))
        c = cal.sorted_candidates(s)
        w = jnp.ones(n_cal)
        ips_bound = "cp" if params.bound == "cp" else "hoeffding"
        thr = {"naive": cal.naive_threshold(s, l, w, c, eps=params.eps),
               "naive_group": cal.naive_group_thresholds(s, l, g, w, c, num_groups=G, eps=params.eps),
               "ips": cal.ips_threshold(ki, s, l, ips_pi, c, eps=params.eps, alpha=params.alpha,
                                        bound=ips_bound)[0],
               "marginal": cal.pac_threshold(s, l, w, c, params=params),
               "gpac": cal.group_thresholds(s, l, g, w, c, num_groups=G, params=params),
               "gpac_bonf": cal.group_thresholds(s, l, g, w, c, num_groups=G,
                                                 params=params._replace(bonferroni=True))}
        routed, labels = {}, {}
        for name in ("naive", "marginal", "ips"):
            routed[name] = pop["scores"] < thr[name]
        for name in ("naive_group", "gpac", "gpac_bonf"):
            routed[name] = pop["scores"] < thr[name][pop["groups"]]
        for name, joint in (("cpac", False), ("cpac_joint", True)):
            r = cal.cpac_thresholds(kc, e, s, l, w, c, num_clusters=M, params=params,
                                    cluster_frac=cluster_frac, joint=joint, iters=iters, n_init=n_init)
            lab = cal.assign(pop["emb"], r.centroids)
            routed[name] = pop["scores"] < r.thresholds[lab]
            labels[name] = lab
        k1, k2 = jax.random.split(kr)
        lab = cal.random_partition(k1, N, num_clusters=M)
        r = cal.cpac_random_thresholds(k2, lab[idx], s, l, w, c, num_clusters=M, params=params,
                                       cluster_frac=cluster_frac)
        routed["cpac_random"] = pop["scores"] < r.thresholds[lab]
        labels["cpac_random"] = lab
        out = {}
        for name in METHODS:
            rt = routed[name].astype(jnp.float32)
            seg = lambda v, ids, k: jax.ops.segment_sum(v, ids, num_segments=k)
            cnt_g = seg(jnp.ones(N), pop["groups"], G)
            out[name] = {"risk_g": seg(pop["losses"] * rt, pop["groups"], G) / cnt_g,
                         "routed_g": seg(rt, pop["groups"], G) / cnt_g,
                         "saved_g": seg(pop["cot_tokens"] * rt, pop["groups"], G)
                         / seg(pop["cot_tokens"], pop["groups"], G),
                         "risk": jnp.mean(pop["losses"] * rt),
                         "routed": jnp.mean(rt),
                         "saved": jnp.sum(pop["cot_tokens"] * rt) / jnp.sum(pop["cot_tokens"]),
                         "net_saved": (jnp.sum(pop["cot_tokens"] * rt) - jnp.sum(pop["direct_tokens"]))
                         / jnp.sum(pop["cot_tokens"])}
            if name in labels:
                lab = labels[name]
                cnt_m = seg(jnp.ones(N), lab, M)
                out[name]["risk_m"] = jnp.where(cnt_m > 0, seg(pop["losses"] * rt, lab, M)
                                                / jnp.maximum(cnt_m, 1), 0.0)
                out[name]["labels"] = lab.astype(jnp.int8)
        return out

    return jax.vmap(one)(keys)


def evaluate(pop: dict, config, eps: float, seed: int, tag: str) -> dict:
    """All methods over config.n_splits draws for one population/eps/seed; host-side summaries."""
    G = int(pop["groups"].max()) + 1
    arrays = {"scores": pop["scores"], "losses": pop["losses"], "groups": pop["groups"],
              "emb": project(pop["emb"], config.pca_dim), "cot_tokens": pop["cot_tokens"],
              "direct_tokens": pop.get("direct_tokens", np.zeros_like(pop["scores"]))}
    arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
    params = cal.PACParams(eps=float(eps), alpha=float(config.alpha), bound=str(config.bound))
    n_cal = int(config.synthetic.n_cal if tag == "synthetic" else config.lm.n_cal)
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), int(round(eps * 1000))), config.n_splits)
    out = jax.device_get(_splits(keys, arrays, n_cal=n_cal, num_groups=G, params=params,
                                 cluster_frac=float(config.cluster_frac), iters=int(config.kmeans_iters),
                                 n_init=int(config.kmeans_inits), ips_pi=float(config.ips_pi)))
    need = cal.min_n_for_routing(eps, config.alpha)
    for g, share in enumerate(np.bincount(pop["groups"], minlength=G) / len(pop["groups"])):
        if n_cal * share < need:
            print(f"gpac: {tag} group {pop['names'][g]} expects {n_cal * share:.0f} calibration draws < "
                  f"{need} = log(alpha)/log(1-eps): it will mostly always think")
    res = {}
    for name in METHODS:
        o = out[name]
        r = {"viol_g": (o["risk_g"] > eps).mean(0).tolist(), "risk_g": o["risk_g"].mean(0).tolist(),
             "routed_g": o["routed_g"].mean(0).tolist(), "saved_g": o["saved_g"].mean(0).tolist(),
             "viol_pooled": float((o["risk"] > eps).mean()),
             "risk": float(o["risk"].mean()), "routed": float(o["routed"].mean()),
             "saved": float(o["saved"].mean()), "net_saved": float(o["net_saved"].mean())}
        r["viol_worst_group"] = float(max(r["viol_g"]))
        r["labelled"] = float(config.ips_pi) if name == "ips" else 1.0   # share of draws needing a CoT label
        if "risk_m" in o:
            r["viol_m"] = (o["risk_m"] > eps).mean(0).tolist()
            r["viol_worst_cluster"] = float(max(r["viol_m"]))
            r["ari"] = float(np.mean([adjusted_rand_score(pop["groups"], lab) for lab in o["labels"][:50]]))
        res[name] = r
    bonf_any = np.any(out["gpac_bonf"]["risk_g"] > eps, axis=1)
    res["gpac_bonf"]["viol_any_group"] = float(bonf_any.mean())
    res["min_n_for_routing"] = cal.min_n_for_routing(eps, config.alpha)
    return res


# ----------------------------------------------------------------------------- the run
CLAIM_ONLY = ("seeds", "eps", "main_eps", "savings_margin", "synthetic", "lm")


def make_cells(config, dsets) -> list:
    """One cell per (dataset, eps). A cell's config holds the shared calibration settings and ONLY its own
    data set's section, so the synthetic records survive a change of the LM settings (and the other way
    round) and e.g. `--config.lm.enabled=False` first, the LM later, reuses the synthetic cells."""
    common = {k: v for k, v in config.to_dict().items() if k not in CLAIM_ONLY}
    cells = []
    for ds in dsets:
        section = {k: v for k, v in config[ds].to_dict().items() if k != "enabled"}
        cells += study.grid({**common, ds: section}, dataset=[ds], eps=[float(e) for e in config.eps])
    return cells


def run(config, workdir: str) -> dict:
    """Cells = dataset x eps, one record per (cell, seed) under workdir/cells/ (config-hash stamped, so a
    killed run resumes and a changed config recomputes)."""
    t0 = time.time()
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    seeds = list(config.seeds)
    dsets = [d for d in ("synthetic", "lm") if config[d].enabled]
    if not dsets:
        raise ValueError("synthetic.enabled, lm.enabled: expected at least one data set enabled")
    pops, names = {}, {}

    def population(ds, seed):
        k = ("synthetic",) if ds == "synthetic" else ("lm", list(config.lm.model_seeds)[
            seed % len(config.lm.model_seeds)])
        if k not in pops:
            pops[k] = synthetic_population(config) if ds == "synthetic" else lm_population(config, k[1], workdir)
            names[ds] = pops[k]["names"]
        return pops[k]

    cells = make_cells(config, dsets)
    records = study.run_study(cells, lambda cell, seed: evaluate(population(cell.config["dataset"], seed),
                                                                 config, cell.config["eps"], seed,
                                                                 cell.config["dataset"]),
                              workdir=workdir, seeds=seeds)
    results = {}
    with metrics_lib.MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as writer:
        for step, cell in enumerate(cells):
            ds, eps = cell.config["dataset"], float(cell.config["eps"])
            results[(ds, eps)] = [records[cell.id][s] for s in seeds]
            for s, r in zip(seeds, results[(ds, eps)]):
                writer.write(step, dataset=ds, eps=eps, seed=s,
                             **{f"{m}_viol_worst_group": r[m]["viol_worst_group"] for m in METHODS},
                             **{f"{m}_saved": r[m]["saved"] for m in METHODS})
    for ds in dsets:
        if ds not in names:                      # every record was reused: read the group names only
            names[ds] = (list(data_lib.PopulationSpec().names) if ds == "synthetic"
                         else [f for f in config.lm.families.keys()])
    tables = _tables(results, names)
    claims = _claims(config, results, names)
    figures = _figures(config, results, names, workdir)
    headline = _headline(config, results)
    print(f"gpac: {time.time() - t0:.1f}s  {headline}")
    return {"seeds": seeds, "claims": claims, "tables": tables, "figures": figures, "headline": headline}


def _ms(values) -> tuple[float, float]:
    """Mean and std (ddof 1) over seeds; std 0.0 for one seed."""
    return summary_lib.mean_std(values) if len(values) > 1 else (float(values[0]), 0.0)


def _tables(results, names):
    rows, groups = [], []
    for (ds, eps), per_seed in results.items():
        for m in METHODS:
            vals = lambda k: [r[m][k] for r in per_seed]
            row = {"dataset": ds, "eps": eps, "method": LABELS[m]}
            for k in ("viol_worst_group", "viol_pooled", "risk", "routed", "saved", "net_saved", "labelled"):
                if k not in per_seed[0][m]:
                    continue
                row[f"{k}_mean"], row[f"{k}_std"] = _ms(vals(k))
            for k in ("ari", "viol_worst_cluster"):
                if k in per_seed[0][m]:
                    row[f"{k}_mean"], row[f"{k}_std"] = _ms(vals(k))
            rows.append(row)
            for g, gname in enumerate(names[ds]):
                grow = {"dataset": ds, "eps": eps, "method": LABELS[m], "group": gname}
                for k, out_k in (("viol_g", "violation"), ("risk_g", "risk"), ("routed_g", "routed"),
                                 ("saved_g", "saved")):
                    if k in per_seed[0][m]:
                        grow[f"{out_k}_mean"], grow[f"{out_k}_std"] = _ms([r[m][k][g] for r in per_seed])
                groups.append(grow)
    return {"main": rows, "groups": groups}


def _claims(config, results, names):
    eps, alpha = float(config.main_eps), float(config.alpha)
    slack = 3.0 * np.sqrt(alpha * (1 - alpha) / config.n_splits)
    S = len(config.seeds)
    out = []
    for ds in ("synthetic", "lm"):
        if (ds, eps) not in results:
            continue
        rs = results[(ds, eps)]
        v = lambda m, k: [r[m][k] for r in rs]
        marg_g = np.array([r["marginal"]["viol_g"] for r in rs])           # [S, G]
        hard = int(np.argmax(marg_g.mean(0)))
        p = f"{ds}_"
        where = f"({ds}, eps={eps}, alpha={alpha}, {config.n_splits} calibrations per seed)"
        heterogeneous = marg_g.mean(0)[hard] > 2 * alpha
        if heterogeneous:
            out.append(_claim(p + "marginal_fails_group",
                              f"Marginal PAC gives no group guarantee: its hardest group "
                              f"({names[ds][hard]}) is violated far above alpha {where}",
                              "violation frequency", ours=("marginal PAC, hardest group", list(marg_g[:, hard])),
                              baselines={"2 alpha": [2 * alpha] * S}, higher_is_better=True, kind="better"))
            out.append(_claim(p + "gpac_vs_marginal",
                              f"G-PAC keeps the worst group's violation frequency below marginal PAC's {where}",
                              "worst-group violation frequency", ours=("G-PAC", v("gpac", "viol_worst_group")),
                              baselines={"marginal PAC": v("marginal", "viol_worst_group")},
                              higher_is_better=False, kind="better", paired=True,
                              note="paired: both methods calibrate on the same draws of each seed"))
            out.append(_claim(p + "random_clusters_fail",
                              f"Ablation: C-PAC with random clusters (valid per random cluster) does not protect "
                              f"the hardest true group; the k-means clusters do better {where}",
                              "worst true-group violation frequency",
                              ours=("C-PAC", v("cpac", "viol_worst_group")),
                              baselines={"C-PAC, random clusters": v("cpac_random", "viol_worst_group")},
                              higher_is_better=False, kind="better", paired=True, block="variant",
                              note="spec B4 [R] ablation; the gain requires clusters aligned with the "
                                   "heterogeneity (C-PAC ARI vs random ~0)"))
        else:
            out.append(_untestable(p + "marginal_fails_group",
                                   f"Marginal PAC violates the hardest group far above alpha {where}",
                                   "violation frequency",
                                   f"the marginal method's worst group is violated at "
                                   f"{marg_g.mean(0)[hard]:.3f} <= 2 alpha: these data lack the heterogeneity "
                                   f"that makes the marginal method fail; the synthetic population carries it"))
        for m, what in (("gpac", "every group"), ("cpac", "every learned cluster")):
            key = "viol_worst_group" if m == "gpac" else "viol_worst_cluster"
            out.append(_claim(p + f"{m}_valid", f"{LABELS[m]} keeps {what} at violation frequency <= alpha "
                              f"(+ Monte-Carlo slack) {where}", "worst violation frequency",
                              ours=(LABELS[m], v(m, key)), baselines={"alpha": [alpha] * S},
                              higher_is_better=False, kind="no_worse", margin=float(slack),
                              note=f"margin = 3 Monte-Carlo SE of a frequency at alpha over {config.n_splits} "
                                   f"calibrations ({slack:.3f})"))
        out.append(_claim(p + "savings", f"Grouping saves at least as many thinking tokens as marginal PAC {where}",
                          "share of CoT tokens avoided", ours=("G-PAC", v("gpac", "saved")),
                          baselines={"marginal PAC": v("marginal", "saved")}, higher_is_better=True,
                          kind="no_worse", margin=float(config.savings_margin), paired=True,
                          note=f"paired (same draws per seed); margin {config.savings_margin} of the CoT-token "
                               f"share: 'at least as many' up to a difference a cost comparison would not "
                               f"act on (one CoT in {round(1 / config.savings_margin)})"))
        out.append(_claim(p + "cpac_true_groups", f"C-PAC also keeps every TRUE group at violation frequency "
                          f"<= alpha (+ Monte-Carlo slack) {where}", "worst true-group violation frequency",
                          ours=("C-PAC", v("cpac", "viol_worst_group")), baselines={"alpha": [alpha] * S},
                          higher_is_better=False, kind="no_worse", margin=float(slack), block="variant",
                          note=f"not guaranteed (C-PAC's guarantee is per learned cluster); holds when the "
                               f"clusters recover the groups. Mean ARI "
                               f"{np.mean(v('cpac', 'ari')):.2f}; margin = 3 Monte-Carlo SE ({slack:.3f})"))
        # sanity: naive violates, marginal valid on pooled risk, Bonferroni simultaneous
        out.append(_claim(p + "naive_violates", f"The naive threshold (no UCB) violates often {where}",
                          "pooled violation frequency", ours=("naive", v("naive", "viol_pooled")),
                          baselines={"0.3": [0.3] * S}, higher_is_better=True, kind="better", block="sanity"))
        out.append(_claim(p + "naive_group_violates", f"The naive per-group threshold (no UCB) violates some "
                          f"group often {where}", "worst-group violation frequency",
                          ours=("naive per group", v("naive_group", "viol_worst_group")),
                          baselines={"0.3": [0.3] * S}, higher_is_better=True, kind="better", block="sanity"))
        out.append(_claim(p + "ips_valid", f"Marginal PAC from IPS labels (pi = {config.ips_pi}: that share of "
                          f"calibration draws labelled) controls the pooled risk {where}",
                          "pooled violation frequency", ours=(LABELS["ips"], v("ips", "viol_pooled")),
                          baselines={"alpha": [alpha] * S}, higher_is_better=False, kind="no_worse",
                          margin=float(slack), block="sanity", note=f"margin = 3 Monte-Carlo SE ({slack:.3f})"))
        out.append(_claim(p + "random_clusters_valid", f"G-PAC on random clusters holds every random cluster "
                          f"{where}", "worst-cluster violation frequency",
                          ours=(LABELS["cpac_random"], v("cpac_random", "viol_worst_cluster")),
                          baselines={"alpha": [alpha] * S}, higher_is_better=False, kind="no_worse",
                          margin=float(slack), block="sanity", note=f"margin = 3 Monte-Carlo SE ({slack:.3f})"))
        out.append(_claim(p + "marginal_valid", f"Marginal PAC controls the pooled risk {where}",
                          "pooled violation frequency", ours=("marginal PAC", v("marginal", "viol_pooled")),
                          baselines={"alpha": [alpha] * S}, higher_is_better=False, kind="no_worse",
                          margin=float(slack), block="sanity", note=f"margin = 3 Monte-Carlo SE ({slack:.3f})"))
        out.append(_claim(p + "bonferroni_simultaneous", f"G-PAC with alpha/G holds all groups at once {where}",
                          "any-group violation frequency", ours=("G-PAC (Bonferroni)", v("gpac_bonf", "viol_any_group")),
                          baselines={"alpha": [alpha] * S}, higher_is_better=False, kind="no_worse",
                          margin=float(slack), block="sanity", note=f"margin = 3 Monte-Carlo SE ({slack:.3f})"))
    return out


def _figures(config, results, names, workdir):
    figs = []
    eps = float(config.main_eps)
    shown = ("naive", "marginal", "gpac", "cpac")
    for ds in ("synthetic", "lm"):
        if (ds, eps) not in results:
            continue
        rs = results[(ds, eps)]
        for key, ylabel in (("viol_g", "violation frequency P(R_g > eps)"), ("routed_g", "routed to direct answer")):
            series = {}
            for m in shown:
                a = np.array([r[m][key] for r in rs])
                series[LABELS[m]] = (a.mean(0), a.std(0))
            path = os.path.join(workdir, "figures", f"{ds}_{key}.png")
            plots.grouped_bars(path, list(names[ds]), series, ylabel=ylabel,
                               title=f"{ds}: eps={eps}, alpha={config.alpha}")
            figs.append(os.path.relpath(path, workdir))
    return figs


def _headline(config, results):
    eps = float(config.main_eps)
    parts = []
    for ds in ("synthetic", "lm"):
        if (ds, eps) in results:
            rs = results[(ds, eps)]
            f = lambda m, k: np.mean([r[m][k] for r in rs])
            parts.append(f"{ds}: worst-group violation marginal {f('marginal', 'viol_worst_group'):.2f} vs "
                         f"G-PAC {f('gpac', 'viol_worst_group'):.2f} / C-PAC cluster "
                         f"{f('cpac', 'viol_worst_cluster'):.2f} (alpha {config.alpha}); routed "
                         f"{f('marginal', 'routed'):.2f} vs {f('gpac', 'routed'):.2f}")
    return f"eps={eps}: " + "; ".join(parts)


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("gpac", run)
