"""Paper B (arXiv 2601.17008): Bayesian robust trading with a macro-conditioned GAN, a macro adversary,
a quantile belief network and an NFSP trader, on the synthetic regime-switching macro world and on the
S&P 500 with real, release-lagged macro series and the 2008-09 crisis as the stress window.

run(config, workdir) -> summary dict. For each world in `config.worlds`:
  1. The world: "synthetic" (VAR(1) macro, K = 4; spread-driven volatility; a forced stress window in the
     test split) or "sp500" (arch's S&P 500 OHLCV; BAA-AAA spread, AAA, core CPI y/y, unemployment with
     release lags; train 1999-2006, validation 2007, test 2008-09, stress Sep 2008 - Jun 2009);
     train-only statistics.
  2. One conditional GAN per seed (vmapped over seeds): the conditioning check (generated return
     volatility at spread +1 sd vs -1 sd, 512 windows, same histories and noise).
  3. Trader arms x seeds as two vmap axes: all arms of a seed share the PRNG key (common random numbers)
     and the seed's GAN. Evaluated greedily (Qbar for NFSP arms) on the test split and its stress window.
  4. Robustness: the fixed DQN trader and ours on generated test observations under macro + delta, delta
     the worst of `robust_candidates` random corners/points of the eps-ball chosen on the validation split
     (eps sweep); the 'adversary lowers a fixed trader's return' claim uses eps = trader.adv_eps.
Then once: NFSP exploitability on a matrix game (tabular, per seed) and on Kuhn poker.
Claims of the synthetic world keep their plain ids; those of another world are prefixed "<world>_".
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import plots
from jaxlab.core import loop
from jaxlab.core.config import config_hash
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core import summary as summary_lib
from jaxlab.finance import gan as gan_lib
from jaxlab.finance import kuhn as kuhn_lib
from jaxlab.finance import macro as macro_lib
from jaxlab.finance import nfsp as nfsp_lib
from jaxlab.finance import robust_trader as rt

GAMES = {"rps": nfsp_lib.ROCK_PAPER_SCISSORS, "matching_pennies": nfsp_lib.MATCHING_PENNIES}


def _claim(id, text, metric, *, paired=False, block="paper", **kw):
    """summary.claim with the documented `paired`/`block` arguments; falls back (and records it) on a core
    that predates them."""
    try:
        return summary_lib.claim(id, text, metric, paired=paired, block=block, **kw)
    except TypeError:
        c = summary_lib.claim(id, text, metric, **kw)
        c["block"], c["paired"] = block, paired
        if paired:
            c["note"] = (c["note"] + " [core.summary lacks paired=: Welch test used]").strip()
        return c


def gan_hparams(config) -> gan_lib.GanHParams:
    g = config.gan
    return gan_lib.GanHParams(hidden=g.hidden, lite=g.lite, lr=g.lr, d_threshold=g.d_threshold,
                              stage_steps=g.stage_steps)


def trader_hparams(config) -> rt.TraderHParams:
    t = config.trader
    return rt.TraderHParams(**{k: t[k] for k in rt.TraderHParams._fields if k != "window"}, window=config.window)


def train_gans(config, wa, keys, ckpt_dir=None):
    """Trains one GAN per key (`loop.vmap_seeds` of `gan.gan_trainer`, one `loop.scan_steps` per chunk),
    resumable by chunk with ckpt_dir. Returns (g_params stacked [S], generate, history of per-chunk means [S]
    per metric)."""
    W2 = 2 * config.window
    x, c, _ = gan_lib.gan_windows(np.asarray(wa.data.feats), np.asarray(wa.data.macro), window=W2, start=1,
                                  end=wa.n_train)
    data = gan_lib.GanData(jnp.asarray(x), jnp.asarray(c))
    n, kw = config.gan.chunk, dict(dim=x.shape[-1], macro_dim=c.shape[-1], window=W2)
    trainer = loop.vmap_seeds(gan_lib.gan_trainer(gan_hparams(config), batch=config.gan.batch, key_chunk=n, **kw))
    _, _, generate = gan_lib.make_gan(gan_hparams(config), **kw)
    st = trainer.init(keys)

    def run_chunk(st, i):
        st, m = loop.scan_steps(st, data, step=trainer.step, length=n)                 # m: [n, S] per metric
        return st, {k: np.ascontiguousarray(np.asarray(v).T).mean(-1) for k, v in m.items()}
    st, hist = loop.resumable_chunks(ckpt_dir, config_hash(config), st, max(config.gan.steps // n, 1), run_chunk)
    return st.params["g"], generate, [{k: np.asarray(v) for k, v in h.items()} for h in hist]


def conditioning(config, wa, generate, g_params, key):
    """Generated return volatility (std of the generated half's return features, z units) with the spread
    set to its train mean +1 sd and -1 sd over the whole window; same histories and noise. -> (hi, lo)."""
    W2 = 2 * config.window
    x, c, _ = gan_lib.gan_windows(np.asarray(wa.data.feats), np.asarray(wa.data.macro), window=W2, start=1,
                                  end=wa.n_train)
    idx = np.random.default_rng(0).integers(0, x.shape[0], config.gan.cond_samples)
    sp = np.asarray(wa.data.macro[:wa.n_train, 0])
    out = {}
    for name, v in (("hi", sp.mean() + sp.std()), ("lo", sp.mean() - sp.std())):
        cc = c[idx].copy()
        cc[:, :, 0] = v
        gen = generate(g_params, jnp.asarray(x[idx]), jnp.asarray(cc), key)
        out[name] = float(jnp.std(gen[:, config.window:, 0::rt.NUM_FEATS]))
    return out["hi"], out["lo"]


WORLDS = ("synthetic", "sp500")


def load_world(config, name):
    """-> (macro.MacroWorld, n_train, n_val_end) for a world name in WORLDS."""
    if name == "synthetic":
        w = macro_lib.synthetic_macro_world(config.world_seed, num_days=config.num_days,
                                            num_assets=config.num_assets,
                                            stress_window=(config.stress_start, config.stress_end))
        return w, config.n_train, config.n_val_end
    if name == "sp500":
        r = config.sp500
        w = macro_lib.real_macro_world(r.start, r.end, assets=tuple(r.assets), names=tuple(r.macro),
                                       stress=(r.stress_start, r.stress_end))
        d = w.panel.dates
        return w, macro_lib.first_row_on_or_after(d, r.val_start), macro_lib.first_row_on_or_after(d, r.test_start)
    raise ValueError(f"worlds: unknown world {name!r}; expected names from {WORLDS}")


def train_traders(config, name, wa, generate, g_params, keys, log, ck):
    """All arms x seeds of one world (`robust_trader.trader_grid`: two vmap axes, one compile; one
    `scan_chunk` per chunk, resumable) -> (trader state [S, A], act_eval, hp)."""
    hp = trader_hparams(config)
    trainer = rt.trader_trainer(hp, num_assets=wa.data.feats.shape[1], macro_dim=wa.data.macro.shape[1],
                                train_range=(0, wa.n_train), generate=generate)
    flags = rt.arm_flags(list(config.arms))
    A, seeds = len(config.arms), list(config.seeds)
    grid = rt.trader_grid(trainer, A)
    st = grid.init(jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys))
    batch = rt.TraderBatch(flags, wa.data, g_params)
    n_chunks = max(config.trader.iters // config.trader.chunk, 1)
    kind = _kind("trader", name)
    st, _ = loop.resumable_chunks(
        ck("trader"), config_hash(config), st, n_chunks,
        lambda st, i: rt.scan_chunk(st, batch, step=grid.step, iters=config.trader.chunk),
        on_start=lambda i0: log.truncate_after(i0 * config.trader.chunk, kind=kind),
        on_chunk=lambda i, m: log.write((i + 1) * config.trader.chunk, kind=kind, **{
            f"trader_{k}_{a}_s{s}": float(v[j, ai]) for k, v in m.items()
            for j, s in enumerate(seeds) for ai, a in enumerate(config.arms)}))
    return st, loop.bind(rt.greedy_actions, hp=hp), hp


def _kind(what, world):
    return what if world == "synthetic" else f"{what}_{world}"


def evaluate_traders(config, wa, st, act_eval, hp, stress_rows):
    """Greedy backtests on the real test split -> ({"test"|"stress": {(seed, arm): metrics}}, r_te [S, A, D],
    buy-and-hold daily returns [D])."""
    W, seeds, T = config.window, list(config.seeds), wa.data.feats.shape[0]
    flags = rt.arm_flags(list(config.arms))
    bt = jax.jit(jax.vmap(jax.vmap(lambda s, f, o, r: rt.backtest(act_eval, s, f, o, r, cost=hp.cost,
                                                                    cost_mode=hp.cost_mode), in_axes=(0, 0, None, None)),
                          in_axes=(0, None, None, None)))
    obs_te, ret_te = rt.eval_obs(wa.data, wa.n_val_end, T, W)
    r_te = np.asarray(bt(st, flags, obs_te, ret_te))                              # [S, A, D]
    s0, s1 = stress_rows[0] - wa.n_val_end, stress_rows[1] - wa.n_val_end
    res = {"test": {}, "stress": {}}
    for j, s in enumerate(seeds):
        for ai, a in enumerate(config.arms):
            res["test"][(s, a)] = {k: float(v) for k, v in rt.trading_metrics(jnp.asarray(r_te[j, ai])).items()}
            res["stress"][(s, a)] = {k: float(v) for k, v in rt.trading_metrics(jnp.asarray(r_te[j, ai, s0:s1])).items()}
    return res, r_te, np.asarray(ret_te).mean(1)


def robustness(config, wa, st, act_eval, hp, generate, g_params):
    """Worst delta of `robust_candidates` random corners/points of each eps-ball, chosen on validation and
    applied on test (generated observations) -> ({(seed, arm, eps): test total return}, max |delta|/eps)."""
    W, T = config.window, wa.data.feats.shape[0]
    flags = rt.arm_flags(list(config.arms))
    K, C = wa.data.macro.shape[1], config.robust_candidates
    eps_list = [float(e) for e in config.robust_eps]

    @functools.partial(jax.jit, static_argnums=(5, 6))
    def robust_returns(sa, fa, gp, deltas_nk, key, lo, hi):
        """Total returns [N] of one trader on generated observations of days [lo, hi) under each delta."""
        _, ret = rt.eval_obs(wa.data, lo, hi, W)

        def one(d):
            o = rt.generated_eval_obs(generate, gp, wa.data, lo, hi, W, d, key)
            return rt.trading_metrics(rt.backtest(act_eval, sa, fa, o, ret, cost=hp.cost,
                                                  cost_mode=hp.cost_mode))["total_return"]
        return jax.lax.map(one, deltas_nk)

    robust, max_delta = {}, 0.0
    for j, s in enumerate(config.seeds):
        gp = jax.tree_util.tree_map(lambda a: a[j], g_params)
        kg = jax.random.PRNGKey(1000 + s)
        rng = np.random.default_rng(1000 + s)
        cand = np.sign(rng.standard_normal((C, K)))                                # corners of the ball
        cand[: C // 2] *= rng.uniform(0, 1, (C // 2, K))                           # and interior points
        deltas = np.concatenate([np.zeros((1, K))] + [e * cand for e in eps_list if e > 0]).astype(np.float32)
        for ai, a in enumerate(config.arms):
            sa = jax.tree_util.tree_map(lambda x: x[j, ai], st)
            fa = jax.tree_util.tree_map(lambda x: x[ai], flags)
            val = np.asarray(robust_returns(sa, fa, gp, jnp.asarray(deltas), kg, wa.n_train, wa.n_val_end))
            test = np.asarray(robust_returns(sa, fa, gp, jnp.asarray(deltas), kg, wa.n_val_end, T))
            robust[(s, a, 0.0)] = float(test[0])
            i = 1
            for e in eps_list:
                if e == 0:
                    continue
                k = i + int(np.argmin(val[i:i + C]))
                max_delta = max(max_delta, float(np.abs(deltas[k]).max()) / e)
                robust[(s, a, e)] = float(test[k])
                i += C
    return robust, max_delta


def run_world(config, name, workdir, log):
    """GANs, conditioning check, traders, backtests and robustness of one world -> dict of its results."""
    seeds = list(config.seeds)
    world, n_train, n_val_end = load_world(config, name)
    wa = rt.prepare_world(world, n_train, n_val_end)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    ck = lambda what: os.path.join(workdir, "ckpt", name, what) if config.checkpoint else None
    t0, c0 = time.time(), time.process_time()
    g_params, generate, gan_hist = train_gans(config, wa, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
                                              ckpt_dir=ck("gan"))
    kind = _kind("gan", name)
    log.truncate_after(-1, kind=kind)          # the GAN's history is written whole (restored chunks included)
    for i, h in enumerate(gan_hist):
        log.write((i + 1) * config.gan.chunk, kind=kind, **{f"gan_{k}_s{s}": float(v[j]) for k, v in h.items()
                                                            for j, s in enumerate(seeds)})
    gen_jit = jax.jit(generate)
    cond = [conditioning(config, wa, gen_jit, jax.tree_util.tree_map(lambda a: a[j], g_params),
                         jax.random.PRNGKey(100 + s)) for j, s in enumerate(seeds)]
    t_gan = time.time() - t0
    st, act_eval, hp = train_traders(config, name, wa, generate, g_params, keys, log, ck)
    t_trader = time.time() - t0 - t_gan
    res, r_te, bh = evaluate_traders(config, wa, st, act_eval, hp, world.stress)
    robust, max_delta = robustness(config, wa, st, act_eval, hp, generate, g_params)
    spread = world.macro[:n_train, 0]
    true_ratio = float(np.exp(0.6 * 2 * spread.std())) if name == "synthetic" else None   # kappa = 0.6
    d = world.panel.dates
    return {"name": name, "res": res, "r_te": r_te, "buy_hold": bh, "robust": robust, "max_delta": max_delta,
            "cond": cond, "true_ratio": true_ratio, "stress_rows": world.stress, "n_train": n_train,
            "n_val_end": n_val_end, "num_days": int(d.size),
            "dates": {"train": [str(d[0]), str(d[n_train - 1])], "val": [str(d[n_train]), str(d[n_val_end - 1])],
                      "test": [str(d[n_val_end]), str(d[-1])],
                      "stress": [str(d[world.stress[0]]), str(d[world.stress[1] - 1])]},
            "timing": {"world": name, "gan_s": t_gan, "trader_s": t_trader,
                       "eval_s": time.time() - t0 - t_gan - t_trader, "cpu_s": time.process_time() - c0}}


def world_claims(config, wr):
    """The claims of one world's results (ids prefixed with the world unless synthetic)."""
    seeds, arms, res, robust = list(config.seeds), list(config.arms), wr["res"], wr["robust"]
    pre = "" if wr["name"] == "synthetic" else wr["name"] + "_"
    where = {"synthetic": "synthetic world", "sp500": "S&P 500, 2008-09"}.get(wr["name"], wr["name"])
    per = lambda split, a, k: [res[split][(s, a)][k] for s in seeds]
    crn = "arms share each seed's PRNG key and GAN (common random numbers)."
    claims = []
    if wr["true_ratio"] is not None:
        cond = wr["cond"]
        claims.append(_claim(
            pre + "stress_macro_volatility", "Raising the stress macro (credit spread) raises the volatility of "
            f"generated windows ({where}, known ground truth).", "generated return std, spread +1 sd minus -1 sd (z units)",
            ours=("gan_conditioned", [h - l for h, l in cond]), baselines={"no_effect": [0.0] * len(seeds)},
            higher_is_better=True, note=f"512 windows per setting, same histories and noise; true sigma ratio at +1 sd "
            f"vs -1 sd = {wr['true_ratio']:.2f}; generated ratios {[round(h / l, 3) for h, l in cond]}. Seeds vary "
            "the GAN init and its minibatches (one world)."))
    eps_a = config.trader.adv_eps
    dqn_name = "dqn" if "dqn" in arms else arms[-1]
    claims.append(_claim(
        pre + "adversary_lowers_return", f"A macro adversary (delta in the l-inf ball, chosen on validation) lowers "
        f"a fixed trader's test return on generated observations ({where}).", "test total return (generated obs)",
        ours=(f"delta* (eps={eps_a})", [robust[(s, dqn_name, float(eps_a))] for s in seeds]),
        baselines={"delta=0": [robust[(s, dqn_name, 0.0)] for s in seeds]}, higher_is_better=False, paired=True,
        note=f"fixed trader = the {dqn_name} arm after training; worst of {config.robust_candidates} candidate deltas "
        "on the validation split, applied on test (random search, not the learned adversary)."))
    if "ours" not in arms or "dqn" not in arms:
        return claims
    stress = lambda a: per("stress", a, "sharpe_252")
    claims.append(_claim(
        pre + "stress_sharpe", f"Ours beats DQN on stress-window Sharpe ({where}).", "stress-window Sharpe (sqrt 252)",
        ours=("ours", stress("ours")), baselines={"dqn": stress("dqn")}, higher_is_better=True, paired=True, note=crn))
    claims.append(_claim(
        pre + "stress_mdd", f"Ours has a smaller max drawdown than DQN in the stress window ({where}).",
        "stress-window max drawdown", ours=("ours", per("stress", "ours", "mdd")),
        baselines={"dqn": per("stress", "dqn", "mdd")}, higher_is_better=False, paired=True, note=crn))
    claims.append(_claim(
        pre + "test_sharpe", f"Ours beats DQN on the whole test split ({where}).", "test Sharpe (sqrt 252)",
        ours=("ours", per("test", "ours", "sharpe_252")), baselines={"dqn": per("test", "dqn", "sharpe_252")},
        higher_is_better=True, paired=True, note=crn))
    robust_bl = {a: stress(a) for a in ("dqn_noise", "dqn_advobs") if a in arms}
    if robust_bl:
        claims.append(_claim(
            pre + "stress_sharpe_vs_robust_baselines", "Ours beats the robust-training baselines (DQN + observation "
            f"noise, DQN + a learned observation adversary) on stress-window Sharpe ({where}).",
            "stress-window Sharpe (sqrt 252)", ours=("ours", stress("ours")), baselines=robust_bl,
            higher_is_better=True, paired=True, note=crn))
    ablations = {a: stress(a) for a in ("no_qbn", "no_nfsp") if a in arms}
    if ablations:
        claims.append(_claim(
            pre + "ablations_stress_sharpe", f"Removing the QBN or NFSP lowers stress-window Sharpe ({where}).",
            "stress-window Sharpe (sqrt 252)", ours=("ours", stress("ours")), baselines=ablations,
            higher_is_better=True, paired=True, note=crn + " -NFSP is the RARL-style arm (trader and macro "
            "adversary trained against each other, no average policy)."))
    return claims


def world_tables(config, wr):
    """Rows of the main, robustness and conditioning tables of one world."""
    seeds, res, robust = list(config.seeds), wr["res"], wr["robust"]
    per = lambda split, a, k: [res[split][(s, a)][k] for s in seeds]
    rows = []
    s0, s1 = wr["stress_rows"][0] - wr["n_val_end"], wr["stress_rows"][1] - wr["n_val_end"]
    for split in ("test", "stress"):
        bh = wr["buy_hold"] if split == "test" else wr["buy_hold"][s0:s1]
        m = {k: float(v) for k, v in rt.trading_metrics(jnp.asarray(bh)).items()}
        rows.append({"world": wr["name"], "split": split, "method": "buy_and_hold (reference)",
                     **{f"{k}_mean": m[k] for k in ("sharpe_252", "sharpe_sqrtN", "total_return", "mdd", "calmar",
                                                    "sortino")}})
        for a in config.arms:
            row = {"world": wr["name"], "split": split, "method": a}
            for k in ("sharpe_252", "sharpe_sqrtN", "total_return", "mdd", "calmar", "sortino"):
                v = per(split, a, k)
                row[f"{k}_mean"], row[f"{k}_std"] = float(np.mean(v)), float(np.std(v, ddof=1) if len(v) > 1 else 0.0)
            rows.append(row)
    rob = [{"world": wr["name"], "method": a, "eps": e,
            "total_return_mean": float(np.mean([robust[(s, a, e)] for s in seeds])),
            "values": [robust[(s, a, e)] for s in seeds]} for a in config.arms for e in config.robust_eps]
    gan = [{"world": wr["name"], "seed": s, "vol_hi": h, "vol_lo": l, "ratio": h / l,
            "true_ratio": wr["true_ratio"]} for s, (h, l) in zip(seeds, wr["cond"])]
    return rows, rob, gan


def world_figures(config, wr, workdir):
    name, seeds = wr["name"], list(config.seeds)
    r_te = wr["r_te"]
    eq = {a: np.cumprod(1 + r_te[:, ai], axis=1) for ai, a in enumerate(config.arms)}
    eq["buy_and_hold"] = np.cumprod(1 + wr["buy_hold"])[None]
    tag = "" if name == "synthetic" else f"_{name}"
    s0, s1 = (r - wr["n_val_end"] for r in wr["stress_rows"])
    return [plots.curves(os.path.join(workdir, "figures", f"equity_test{tag}.png"), np.arange(r_te.shape[-1]), eq,
                         xlabel=f"test day (stress window: days {s0}-{s1})", ylabel="equity",
                         title=f"greedy policies on the test split ({name})"),
            plots.curves(os.path.join(workdir, "figures", f"robustness{tag}.png"), np.asarray(config.robust_eps),
                         {a: np.asarray([[wr["robust"][(s, a, e)] for e in config.robust_eps] for s in seeds])
                          for a in config.arms}, xlabel="eps", ylabel="test total return under delta*",
                         title=f"robustness curve ({name})")]


def run_games(config, keys, workdir):
    """NFSP exploitability on the matrix game and on Kuhn poker (tabular, per seed) -> (claims, figures,
    headline part)."""
    game = GAMES[config.game.name]
    hist = jax.jit(jax.vmap(lambda k: nfsp_lib.nfsp_matrix_game(game, k, iters=config.game.iters,
                                                                eta=config.game.eta)[1]))(
        jax.vmap(lambda k: jax.random.fold_in(k, 3))(keys))
    expl = np.asarray(hist["exploitability"])                                    # [S, n + 1]
    br_expl = np.asarray(hist["br_exploitability"])
    kh = jax.jit(jax.vmap(lambda k: kuhn_lib.nfsp_kuhn(k, iters=config.kuhn.iters, eta=config.kuhn.eta)[1]))(
        jax.vmap(lambda k: jax.random.fold_in(k, 4))(keys))
    kexpl = np.asarray(kh["exploitability"])                                     # [S, n + 1]
    claims = [_claim(
        "nfsp_exploitability", f"NFSP's average-policy exploitability falls ({config.game.name}).",
        "exploitability (NashConv / 2)", ours=("after", list(expl[:, -1])), baselines={"before": list(expl[:, 0])},
        higher_is_better=False, paired=True,
        note=f"{config.game.iters} self-play iterations, eta {config.game.eta}; best-response exploitability stays "
        f"{br_expl.mean():.2f} on average (it cycles)."), _claim(
        "nfsp_kuhn_exploitability", "NFSP's average-policy exploitability falls (Kuhn poker).",
        "exploitability (NashConv / 2)", ours=("after", list(kexpl[:, -1])), baselines={"before": list(kexpl[:, 0])},
        higher_is_better=False, paired=True,
        note=f"{config.kuhn.iters} self-play episodes, eta {config.kuhn.eta}; tabular Q best response and "
        "average policy (cross-entropy on reservoir samples), started at the uniform policy (exploitability "
        f"11/24); player 0's final value {np.asarray(kh['value'])[:, -1].mean():.3f} (game value -1/18); "
        f"greedy best-response exploitability {np.asarray(kh['br_exploitability'])[:, -1].mean():.2f}.")]
    figs = [plots.curves(os.path.join(workdir, "figures", "nfsp_exploitability.png"),
                         np.arange(expl.shape[1]) * 500, {"average policy": expl}, xlabel="iteration",
                         ylabel="exploitability", title=f"NFSP on {config.game.name}"),
            plots.curves(os.path.join(workdir, "figures", "nfsp_kuhn_exploitability.png"),
                         np.arange(kexpl.shape[1]) * (config.kuhn.iters // (kexpl.shape[1] - 1)),
                         {"average policy": kexpl}, xlabel="episode", ylabel="exploitability",
                         title="NFSP on Kuhn poker")]
    head = (f"{config.game.name.upper()} exploitability {expl[:, 0].mean():.2f} -> {expl[:, -1].mean():.3f}; "
            f"Kuhn {kexpl[:, 0].mean():.2f} -> {kexpl[:, -1].mean():.3f}")
    return claims, figs, head


def _headline(config, wrs, game_head):
    parts = []
    for wr in wrs:
        if "ours" not in config.arms or "dqn" not in config.arms:
            continue
        m = lambda a: np.mean([wr["res"]["stress"][(s, a)]["sharpe_252"] for s in config.seeds])
        gan = np.mean([h / l for h, l in wr["cond"]])
        truth = f" (true {wr['true_ratio']:.2f})" if wr["true_ratio"] is not None else ""
        parts.append(f"{wr['name']}: stress Sharpe ours {m('ours'):.2f} vs DQN {m('dqn'):.2f}; GAN vol ratio {gan:.2f}{truth}")
    return f"{len(config.seeds)} seeds; " + "; ".join(parts + [game_head])


def run(config, workdir):
    t_start = time.time()
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    jax.config.update("jax_threefry_partitionable", True)
    bad = [w for w in config.worlds if w not in WORLDS]
    if bad or not config.worlds:
        raise ValueError(f"worlds: expected a non-empty subset of {WORLDS}, got {list(config.worlds)}")
    rt.check_hparams(trader_hparams(config))
    rt.arm_flags(list(config.arms))
    log = MetricsWriter(os.path.join(workdir, "metrics.jsonl"))
    wrs = [run_world(config, name, workdir, log) for name in config.worlds]
    keys = jnp.stack([jax.random.PRNGKey(s) for s in config.seeds])
    t0 = time.time()
    game_claims, game_figs, game_head = run_games(config, keys, workdir)
    t_game = time.time() - t0
    log.close()
    claims, main, rob, gan, figs = [], [], [], [], []
    for wr in wrs:
        claims += world_claims(config, wr)
        rows, r, g = world_tables(config, wr)
        main, rob, gan = main + rows, rob + r, gan + g
        figs += world_figures(config, wr, workdir)
    claims += game_claims
    figs = [os.path.relpath(f, workdir) for f in figs + game_figs if f]
    timing = [wr["timing"] for wr in wrs] + [{"world": "games", "game_s": t_game, "total_s": time.time() - t_start,
                                               "process_cpu_s": time.process_time()}]
    return {"seeds": list(config.seeds), "claims": claims,
            "tables": {"main": main, "robustness": rob, "gan_conditioning": gan,
                       "splits": [{"world": wr["name"], **{k: " .. ".join(v) for k, v in wr["dates"].items()}}
                                  for wr in wrs],
                       "budget": [{"world": wr["name"], "max_abs_delta_over_eps": wr["max_delta"]} for wr in wrs],
                       "timing": timing},
            "figures": figs, "headline": _headline(config, wrs, game_head)}


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("robust_trading", run)
