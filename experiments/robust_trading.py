"""Paper B (arXiv 2601.17008): Bayesian robust trading with a macro-conditioned GAN, a macro adversary,
a quantile belief network and an NFSP trader, on the synthetic regime-switching macro world.

run(config, workdir) -> summary dict. Steps:
  1. The synthetic macro world (VAR(1) macro, K = 4; spread-driven volatility; a forced stress window in
     the test split), train-only statistics.
  2. One conditional GAN per seed (vmapped over seeds): the conditioning check (generated return
     volatility at spread +1 sd vs -1 sd, 512 windows, same histories and noise).
  3. Trader arms x seeds as two vmap axes: all arms of a seed share the PRNG key (common random numbers)
     and the seed's GAN. Evaluated greedily (Qbar for NFSP arms) on the test split and its stress window.
  4. Robustness: the fixed DQN trader and ours on generated test observations under macro + delta, delta
     the worst of `robust_candidates` random corners/points of the eps-ball chosen on the validation split
     (eps sweep); the 'adversary lowers a fixed trader's return' claim uses eps = trader.adv_eps.
  5. NFSP exploitability on rock-paper-scissors (tabular, per seed).
The S&P 500 / 2008 stress study of the full spec is not implemented (see notes/robust_trading.md).
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import plots
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core import summary as summary_lib
from jaxlab.finance import gan as gan_lib
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


def resumable_chunks(ckpt_dir, config, state, n_chunks: int, run_chunk, on_chunk=None, on_start=None):
    """Runs chunks i = 0..n_chunks-1 of run_chunk(state, i) -> (state, metrics of arrays), checkpointing
    (state, history) after each one in ckpt_dir (None: no checkpoints), stamped with the config hash. A rerun
    resumes after the last saved chunk; a checkpoint of another config is refused with one clear error.
    on_start(first chunk index of this call) runs first (e.g. to drop log records past the restored chunk);
    on_chunk(i, metrics) runs only for chunks computed in this call. -> (state, [metrics per chunk] as lists)."""
    if ckpt_dir is None:
        if on_start is not None:
            on_start(0)
        hist = []
        for i in range(n_chunks):
            state, m = run_chunk(state, i)
            hist.append({k: np.asarray(v).tolist() for k, v in m.items()})
            if on_chunk is not None:
                on_chunk(i, m)
        return state, hist
    from jaxlab.core.checkpoint import Checkpointer
    from jaxlab.core.config import config_hash
    h = config_hash(config)
    ck = Checkpointer(ckpt_dir, save_every=1, keep=1, metadata={"config_hash": h})
    start, hist = 0, []
    try:
        if ck.latest_step() is not None:
            meta = ck.restore_metadata()
            if meta.get("config_hash") != h:
                raise ValueError(f"workdir: {ckpt_dir} holds a checkpoint of another config ({meta.get('config_hash')} "
                                 f"!= {h}); use a new --workdir or delete that folder")
            start, state = ck.restore(state)
            hist = list(meta["hist"])
        if on_start is not None:
            on_start(start)
        for i in range(start, n_chunks):
            state, m = run_chunk(state, i)
            hist.append({k: np.asarray(v).tolist() for k, v in m.items()})
            if on_chunk is not None:
                on_chunk(i, m)
            ck.maybe_save(i + 1, state, force=True, meta={"hist": hist})
    finally:
        ck.close()
    return state, hist


def train_gans(config, wa, keys, ckpt_dir=None):
    """Trains one GAN per key (vmapped), resumable by chunk with ckpt_dir. Returns (g_params stacked [S],
    generate, history of per-chunk means [S] per metric)."""
    W2 = 2 * config.window
    x, c, _ = gan_lib.gan_windows(np.asarray(wa.data.feats), np.asarray(wa.data.macro), window=W2, start=1,
                                  end=wa.n_train)
    x, c = jnp.asarray(x), jnp.asarray(c)
    init, step, generate = gan_lib.make_gan(gan_hparams(config), dim=x.shape[-1], macro_dim=c.shape[-1], window=W2)
    B = config.gan.batch

    def chunk(st, key, n):
        def body(s, k):
            k1, k2 = jax.random.split(k)
            idx = jax.random.randint(k1, (B,), 0, x.shape[0])
            return step(s, x[idx], c[idx], k2)
        return jax.lax.scan(body, st, jax.random.split(key, n))

    n = config.gan.chunk
    chunk_v = jax.jit(jax.vmap(functools.partial(chunk, n=n)))
    st = jax.vmap(init)(keys)

    def run_chunk(st, i):
        st, m = chunk_v(st, jax.vmap(lambda k: jax.random.fold_in(k, i))(keys))
        return st, {k: np.asarray(v).mean(-1) for k, v in m.items()}
    st, hist = resumable_chunks(ckpt_dir, config, st, max(config.gan.steps // n, 1), run_chunk)
    return st.g_params, generate, [{k: np.asarray(v) for k, v in h.items()} for h in hist]


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


def run(config, workdir):
    t_start = time.time()
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    jax.config.update("jax_threefry_partitionable", True)
    seeds = list(config.seeds)
    W = config.window
    world = macro_lib.synthetic_macro_world(config.world_seed, num_days=config.num_days, num_assets=config.num_assets,
                                            stress_window=(config.stress_start, config.stress_end))
    wa = rt.prepare_world(world, config.n_train, config.n_val_end)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    log = MetricsWriter(os.path.join(workdir, "metrics.jsonl"))

    # ---- 2. GANs and the conditioning check
    t0 = time.time()
    ck = lambda name: os.path.join(workdir, "ckpt", name) if config.checkpoint else None
    g_params, generate, gan_hist = train_gans(config, wa, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
                                              ckpt_dir=ck("gan"))
    log.truncate_after(-1, kind="gan")          # the GAN's history is written whole (restored chunks included)
    for i, h in enumerate(gan_hist):
        log.write((i + 1) * config.gan.chunk, kind="gan", **{f"gan_{k}_s{s}": float(v[j]) for k, v in h.items()
                                                             for j, s in enumerate(seeds)})
    gen_jit = jax.jit(generate)
    cond = [conditioning(config, wa, gen_jit, jax.tree_util.tree_map(lambda a: a[j], g_params),
                         jax.random.PRNGKey(100 + s)) for j, s in enumerate(seeds)]
    spread = world.macro[:config.n_train, 0]
    true_ratio = float(np.exp(0.6 * 2 * spread.std()))        # sigma ratio at +1 sd vs -1 sd (kappa = 0.6)
    t_gan = time.time() - t0
    cpu_gan = time.process_time()

    # ---- 3. trader arms x seeds
    t0 = time.time()
    hp = trader_hparams(config)
    init, train_chunk, act_eval = rt.make_trader(hp, num_assets=config.num_assets, macro_dim=wa.data.macro.shape[1],
                                                 train_range=(0, config.n_train), generate=generate)
    flags = rt.arm_flags(list(config.arms))
    A = len(config.arms)
    st = jax.vmap(lambda k: jax.vmap(lambda _: init(k))(jnp.arange(A)))(jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys))
    chunk = jax.jit(jax.vmap(jax.vmap(functools.partial(train_chunk, iters=config.trader.chunk), in_axes=(0, 0, None, None)),
                             in_axes=(0, None, None, 0)))
    n_chunks = max(config.trader.iters // config.trader.chunk, 1)
    st, _ = resumable_chunks(
        ck("trader"), config, st, n_chunks, lambda st, i: chunk(st, flags, wa.data, g_params),
        on_start=lambda i0: log.truncate_after(i0 * config.trader.chunk, kind="trader"),
        on_chunk=lambda i, m: log.write((i + 1) * config.trader.chunk, kind="trader", **{
            f"trader_{k}_{a}_s{s}": float(v[j, ai]) for k, v in m.items()
            for j, s in enumerate(seeds) for ai, a in enumerate(config.arms)}))
    t_trader = time.time() - t0
    cpu_trader = time.process_time()

    # ---- evaluation on the test split and its stress window (real observations)
    t0 = time.time()
    bt = jax.jit(jax.vmap(jax.vmap(lambda s, f, o, r: rt.backtest(act_eval, s, f, o, r, cost=hp.cost,
                                                                    cost_mode=hp.cost_mode), in_axes=(0, 0, None, None)),
                          in_axes=(0, None, None, None)))
    obs_te, ret_te = rt.eval_obs(wa.data, config.n_val_end, config.num_days, W)
    r_te = np.asarray(bt(st, flags, obs_te, ret_te))                              # [S, A, D]
    s0, s1 = config.stress_start - config.n_val_end, config.stress_end - config.n_val_end
    res = {"test": {}, "stress": {}}
    for j, s in enumerate(seeds):
        for ai, a in enumerate(config.arms):
            res["test"][(s, a)] = {k: float(v) for k, v in rt.trading_metrics(jnp.asarray(r_te[j, ai])).items()}
            res["stress"][(s, a)] = {k: float(v) for k, v in rt.trading_metrics(jnp.asarray(r_te[j, ai, s0:s1])).items()}

    # ---- 4. robustness: worst delta chosen on validation, applied on test (generated observations)
    K = wa.data.macro.shape[1]
    C = config.robust_candidates
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

    robust = {}                                   # (seed, arm, eps) -> test total return under the chosen delta
    max_delta = 0.0
    for j, s in enumerate(seeds):
        gp = jax.tree_util.tree_map(lambda a: a[j], g_params)
        kg = jax.random.PRNGKey(1000 + s)
        rng = np.random.default_rng(1000 + s)
        cand = np.sign(rng.standard_normal((C, K)))                                # corners of the ball
        cand[: C // 2] *= rng.uniform(0, 1, (C // 2, K))                           # and interior points
        deltas = np.concatenate([np.zeros((1, K))] + [e * cand for e in eps_list if e > 0]).astype(np.float32)
        for ai, a in enumerate(config.arms):
            sa = jax.tree_util.tree_map(lambda x: x[j, ai], st)
            fa = jax.tree_util.tree_map(lambda x: x[ai], flags)
            val = np.asarray(robust_returns(sa, fa, gp, jnp.asarray(deltas), kg, config.n_train, config.n_val_end))
            test = np.asarray(robust_returns(sa, fa, gp, jnp.asarray(deltas), kg, config.n_val_end, config.num_days))
            robust[(s, a, 0.0)] = float(test[0])
            i = 1
            for e in eps_list:
                if e == 0:
                    continue
                k = i + int(np.argmin(val[i:i + C]))
                max_delta = max(max_delta, float(np.abs(deltas[k]).max()) / e)
                robust[(s, a, e)] = float(test[k])
                i += C
    t_eval = time.time() - t0
    cpu_eval = time.process_time()

    # ---- 5. NFSP exploitability on a matrix game
    t0 = time.time()
    game = GAMES[config.game.name]
    hist = jax.jit(jax.vmap(lambda k: nfsp_lib.nfsp_matrix_game(game, k, iters=config.game.iters,
                                                                eta=config.game.eta)[1]))(
        jax.vmap(lambda k: jax.random.fold_in(k, 3))(keys))
    expl = np.asarray(hist["exploitability"])                                    # [S, n + 1]
    br_expl = np.asarray(hist["br_exploitability"])
    t_game = time.time() - t0
    cpu_game = time.process_time()

    # ---- claims
    per = lambda split, a, k: [res[split][(s, a)][k] for s in seeds]
    claims = []
    claims.append(_claim(
        "stress_macro_volatility", "Raising the stress macro (credit spread) raises the volatility of generated "
        "windows (synthetic world, known ground truth).", "generated return std, spread +1 sd minus -1 sd (z units)",
        ours=("gan_conditioned", [h - l for h, l in cond]), baselines={"no_effect": [0.0] * len(seeds)},
        higher_is_better=True, note=f"512 windows per setting, same histories and noise; true sigma ratio at +1 sd vs "
        f"-1 sd = {true_ratio:.2f}; generated ratios {[round(h / l, 3) for h, l in cond]}. Seeds vary the GAN init "
        "and its minibatches (one world)."))
    eps_a = config.trader.adv_eps
    dqn_name = "dqn" if "dqn" in config.arms else config.arms[-1]
    claims.append(_claim(
        "adversary_lowers_return", "A macro adversary (delta in the l-inf ball, chosen on validation) lowers a "
        "fixed trader's test return on generated observations.", "test total return (generated obs)",
        ours=(f"delta* (eps={eps_a})", [robust[(s, dqn_name, float(eps_a))] for s in seeds]),
        baselines={"delta=0": [robust[(s, dqn_name, 0.0)] for s in seeds]}, higher_is_better=False, paired=True,
        note=f"fixed trader = the {dqn_name} arm after training; worst of {config.robust_candidates} candidate deltas "
        "on the validation split, applied on test (random search, not the learned adversary)."))
    if "ours" in config.arms and "dqn" in config.arms:
        claims.append(_claim(
            "stress_sharpe", "Ours beats DQN on stress-window Sharpe.", "stress-window Sharpe (sqrt 252)",
            ours=("ours", per("stress", "ours", "sharpe_252")), baselines={"dqn": per("stress", "dqn", "sharpe_252")},
            higher_is_better=True, paired=True, note="arms share each seed's PRNG key and GAN (common random numbers)."))
        claims.append(_claim(
            "stress_mdd", "Ours has a smaller max drawdown than DQN in the stress window.", "stress-window max drawdown",
            ours=("ours", per("stress", "ours", "mdd")), baselines={"dqn": per("stress", "dqn", "mdd")},
            higher_is_better=False, paired=True))
        claims.append(_claim(
            "test_sharpe", "Ours beats DQN on the whole test split.", "test Sharpe (sqrt 252)",
            ours=("ours", per("test", "ours", "sharpe_252")), baselines={"dqn": per("test", "dqn", "sharpe_252")},
            higher_is_better=True, paired=True))
    claims.append(_claim(
        "nfsp_exploitability", f"NFSP's average-policy exploitability falls ({config.game.name}).",
        "exploitability (NashConv / 2)", ours=("after", list(expl[:, -1])), baselines={"before": list(expl[:, 0])},
        higher_is_better=False, paired=True,
        note=f"{config.game.iters} self-play iterations, eta {config.game.eta}; best-response exploitability stays "
        f"{br_expl.mean():.2f} on average (it cycles)."))
    # ---- tables, figures
    rows = []
    for split in ("test", "stress"):
        for a in config.arms:
            row = {"split": split, "method": a}
            for k in ("sharpe_252", "sharpe_sqrtN", "total_return", "mdd", "calmar", "sortino"):
                v = per(split, a, k)
                row[f"{k}_mean"], row[f"{k}_std"] = float(np.mean(v)), float(np.std(v, ddof=1) if len(v) > 1 else 0.0)
            rows.append(row)
    rob_rows = [{"method": a, "eps": e, "total_return_mean": float(np.mean([robust[(s, a, e)] for s in seeds])),
                 "values": [robust[(s, a, e)] for s in seeds]} for a in config.arms for e in config.robust_eps]
    gan_rows = [{"seed": s, "vol_hi": h, "vol_lo": l, "ratio": h / l} for s, (h, l) in zip(seeds, cond)]
    figs = []
    eq = {a: np.cumprod(1 + r_te[:, ai], axis=1) for ai, a in enumerate(config.arms)}
    figs.append(plots.curves(os.path.join(workdir, "figures", "equity_test.png"), np.arange(r_te.shape[-1]), eq,
                             xlabel="test day (stress window shaded in the colab)", ylabel="equity",
                             title="greedy policies on the test split"))
    figs.append(plots.curves(os.path.join(workdir, "figures", "robustness.png"), np.asarray(config.robust_eps),
                             {a: np.asarray([[robust[(s, a, e)] for e in config.robust_eps] for s in seeds])
                              for a in config.arms}, xlabel="eps", ylabel="test total return under delta*",
                             title="robustness curve"))
    figs.append(plots.curves(os.path.join(workdir, "figures", "nfsp_exploitability.png"),
                             np.arange(expl.shape[1]) * 500, {"average policy": expl}, xlabel="iteration",
                             ylabel="exploitability", title=f"NFSP on {config.game.name}"))
    figs = [os.path.relpath(f, workdir) if f else f for f in figs if f]
    log.close()
    by = {c["id"]: c for c in claims}
    headline = (f"synthetic macro world, {len(seeds)} seeds: stress Sharpe ours "
                f"{np.mean(per('stress', 'ours', 'sharpe_252')):.2f} vs DQN {np.mean(per('stress', 'dqn', 'sharpe_252')):.2f} "
                f"({by.get('stress_sharpe', {}).get('verdict', 'n/a')}); GAN vol ratio "
                f"{np.mean([h / l for h, l in cond]):.2f} (true {true_ratio:.2f}); RPS exploitability "
                f"{expl[:, 0].mean():.2f} -> {expl[:, -1].mean():.3f}"
                if "ours" in config.arms and "dqn" in config.arms else "see claims")
    cpu = time.process_time()
    return {"seeds": seeds, "claims": claims,
            "tables": {"main": rows, "robustness": rob_rows, "gan_conditioning": gan_rows,
                       "budget": [{"max_abs_delta_over_eps": max_delta}],
                       "timing": [{"gan_s": t_gan, "trader_s": t_trader, "eval_s": t_eval, "game_s": t_game,
                                   "total_s": time.time() - t_start, "process_cpu_s": cpu, "cpu_after_gan": cpu_gan, "cpu_after_trader": cpu_trader, "cpu_after_eval": cpu_eval, "cpu_after_game": cpu_game}]},
            "figures": figs, "headline": headline}


if __name__ == "__main__":
    from jaxlab.core.app import launch
    launch("robust_trading", run)
