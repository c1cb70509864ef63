"""The robust trader of paper B (arXiv 2601.17008): NFSP (best response + average policy) with a quantile
belief network, trained on real-price rewards while the macro adversary perturbs the conditioning of the
GAN that regenerates its observations. Composes the landed pure pieces (`env.step`, `env.trade_cost`,
`dqn_targets`, `dqn_loss`, `epsilon_schedule`) without touching the dataflow paper's DQN trainer.

One training iteration (all `num_envs` environments at once; one `lax.scan` per chunk; arms are a `vmap`
axis with the same key per seed = common random numbers):
  obs   = real window of the env's asset (rows t-W+1..t, z-scored bar features) and its position
  aug   ~ Bernoulli(aug_rate) (not while exploring): obs <- G(real history rows t-2W+1..t-W,
          macro + delta) generated half; delta = eps tanh(u) held for `adv_block` steps per env
  b     = argmin_k (QBN(obs[:-1])_k - ma5(obs))^2 (belief bucket; multiplied out in the -QBN arm)
  act   : with prob eta eps-greedy on Q (best response), else greedy on Qbar (average policy);
          DQN arm: always eps-greedy on Q; evaluation uses Qbar for NFSP arms and Q otherwise
  env   : `env.step` on the *real* close path (cost mode `code_B` by default); reward stored x reward_scale
  learn : every `train_every` iterations: double-DQN on Q (belief in the input), pinball on the QBN,
          Qbar by MSE to Q on reservoir states (distillation, the code) or cross-entropy on reservoir
          actions (`avg_loss="ce"`, canonical NFSP); hard target copy every `target_every`
  adv   : every `adv_every` iterations REINFORCE on the NEGATIVE trader return of the augmented steps.
  obs-adv: the "DQN + learned observation adversary" baseline: on the augmented steps the real window is
          shifted by delta_obs = obs_adv_eps tanh(u), u ~ N(mu(x), sigma(x)^2) from a Gaussian policy on the
          flattened real window x (per step, no GAN), trained by the same zero-sum REINFORCE.
Arm flags (`ArmFlags`, traced floats) switch NFSP, QBN, augmentation, the macro adversary, the observation-noise
baseline and the learned observation adversary per arm, so all arms share one compilation.

The trainer is a `jaxlab.core.loop.Trainer` (`trader_trainer(hp, ...)`): `init(key) -> loop.TrainState` (the five
networks in `params`/`opt_state`; target net, replay ring, reservoir, env state and adversary log in `extra`) and
`step(state, TraderBatch(flags, data, g_params)) -> (state, metrics)`, run by `loop.run` (one arm) or, for the
experiment's seeds x arms grid, `trader_grid` (nested vmaps, one compile) chunked by `scan_chunk`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxlab.core import loop
from jaxlab.core import sharding
from jaxlab.finance import adversary as adv_lib
from jaxlab.finance import belief as belief_lib
from jaxlab.finance import env as env_lib
from jaxlab.finance import nfsp as nfsp_lib
from jaxlab.finance.dqn import dqn_loss, dqn_targets, epsilon_schedule

NUM_FEATS = 4
AVG_LOSSES = ("distill", "ce")


class TraderHParams(NamedTuple):
    window: int = 16
    hidden: int = 64
    qbn_hidden: int = 16
    num_envs: int = 8
    episode_len: int = 64
    buffer_size: int = 4096
    reservoir_size: int = 4096
    batch_size: int = 64
    lr: float = 1e-3
    gamma: float = 0.9
    eps_decay_iters: int = 1000
    eps_end: float = 0.05
    learning_starts: int = 256
    train_every: int = 2
    target_every: int = 200
    eta: float = 0.1
    avg_loss: str = "distill"
    aug_rate: float = 0.1
    obs_noise: float = 0.5          # std of the "DQN + noise" arm's observation noise (z units)
    obs_adv_eps: float = 0.5        # l-inf radius of the learned observation adversary (z units)
    adv_eps: float = 0.3
    adv_block: int = 20
    adv_every: int = 100
    adv_lr: float = 1e-3
    zero_sum: bool = True
    cost: float = 1e-3
    cost_mode: str = "code_B"
    reward_scale: float = 100.0


class ArmFlags(NamedTuple):
    """Per-arm switches (0./1. floats, traced): NFSP average policy, QBN belief input, GAN augmentation,
    learned adversary (0 -> delta = 0 on augmented steps), observation noise (the augmented steps see the
    real window plus N(0, obs_noise^2) in z units instead of a generated one: the "DQN + noise" baseline),
    learned observation adversary (the augmented steps see the real window plus a learned delta_obs in the
    l-inf ball of radius obs_adv_eps: the "DQN + learned observation adversary" baseline).
    The -NFSP arm (GAN + macro adversary + QBN, trained simultaneously with a plain DQN) is the RARL-style
    ablation: a protagonist and an adversary trained against each other without the average policy."""
    nfsp: jax.Array
    qbn: jax.Array
    aug: jax.Array
    adv: jax.Array
    noise: jax.Array
    obs_adv: jax.Array


ARMS = {"ours": (1.0, 1.0, 1.0, 1.0, 0.0, 0.0), "dqn": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        "no_qbn": (1.0, 0.0, 1.0, 1.0, 0.0, 0.0), "no_nfsp": (0.0, 1.0, 1.0, 1.0, 0.0, 0.0),
        "dqn_noise": (0.0, 0.0, 0.0, 0.0, 1.0, 0.0), "dqn_advobs": (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)}


def arm_flags(names) -> ArmFlags:
    """Stacked flags [A] for arm names in ARMS."""
    bad = [n for n in names if n not in ARMS]
    if bad:
        raise ValueError(f"arms: unknown arms {bad}; expected names from {sorted(ARMS)}")
    v = jnp.asarray([ARMS[n] for n in names], jnp.float32)
    return ArmFlags(*(v[:, i] for i in range(len(ArmFlags._fields))))


class TraderData(NamedTuple):
    """feats [T, S, 4] z-scored bar features; macro [T, K] min-max scaled; close [T, S]."""
    feats: jax.Array
    macro: jax.Array
    close: jax.Array


class TraderQNet(nn.Module):
    """Dense(hidden) -> tanh, + use_belief * Embed(belief), -> LayerNorm -> Dense(3). [B, D], [B] -> [B, 3]."""
    hidden: int = 64

    @nn.compact
    def __call__(self, obs_bd, belief_b, use_belief):
        h = jnp.tanh(nn.Dense(self.hidden)(obs_bd))
        h = h + use_belief * nn.Embed(len(belief_lib.TAUS), self.hidden)(belief_b)
        return nn.Dense(env_lib.ACTIONS.shape[0])(nn.LayerNorm()(h))


def obs_window(feats_tsf, s, t, window):
    """Causal window of asset s: rows t-W+1..t. feats_tsf [T, S, F] -> [W, F]."""
    f = jax.lax.dynamic_index_in_dim(feats_tsf, s, axis=1, keepdims=False)
    return jax.lax.dynamic_slice_in_dim(f, t - window + 1, window, axis=0)


def ma5(obs_wf):
    """The QBN target: mean of the last 5 return features of the window. [.., W, F] -> [..]."""
    return jnp.mean(obs_wf[..., -5:, 0], axis=-1)


def flat_obs(obs_wf, pos):
    return jnp.concatenate([obs_wf.reshape(obs_wf.shape[:-2] + (-1,)), pos[..., None]], -1)


def trading_metrics(r_d):
    """Daily strategy returns [D] -> dict: sharpe_252 (sqrt 252 mean/std), sharpe_sqrtN (the code's
    mean sqrt(N)/std), total_return, mdd, calmar (252 mean / MDD), sortino (252 mean / downside std, the
    code's scaling), arr ((prod(1+r) - 1) / N * 252)."""
    from jaxlab.finance import metrics as fin_metrics
    n = r_d.shape[0]
    eq = fin_metrics.equity_curve(r_d)
    mdd = fin_metrics.max_drawdown(eq)
    mean = jnp.mean(r_d)
    down = jnp.sqrt(jnp.mean(jnp.minimum(r_d, 0.0) ** 2))
    return {"sharpe_252": fin_metrics.sharpe_ratio(r_d), "sharpe_sqrtN": fin_metrics.sharpe_ratio(r_d, periods=n),
            "total_return": fin_metrics.total_return(eq), "mdd": mdd, "calmar": 252 * mean / (mdd + 1e-12),
            "sortino": 252 * mean / (down + 1e-12), "arr": (eq[-1] - 1.0) / n * 252}


class TraderBatch(NamedTuple):
    """What a trader step reads besides its state (the `batch` of `loop.Trainer.step`, constant over a run):
    the arm's flags (`ArmFlags` of scalars), the world (`TraderData`) and the trained GAN's generator params."""
    flags: ArmFlags
    data: TraderData
    g_params: Any


# The trader's `loop.TrainState`:
#   params    {"q", "qbar", "qbn", "adv", "oadv"}: best response, average policy, quantile belief net, macro
#             adversary, learned observation adversary (a Gaussian policy on the flattened window)
#   opt_state the Adam states of the same five networks
#   step, key the iteration count and the carried PRNG key (split 10 ways by every iteration)
#   extra     {"q_target": target copy of q, "buf": replay ring (obs [N, D], b [N], a [N], r [N], obs2 [N, D],
#             b2 [N]), "buf_size", "ptr", "res": nfsp.Reservoir (obs [R, D], b [R], a [R]), "env_s" [E] asset,
#             "env_t" [E] day, "env_pos" [E], "env_k" [E] steps into the episode, "adv_u" [E, K] held
#             pre-squash adversary sample, "adv_log": m [P, E, K], u [P, E, K], r [P, E], mask [P, E],
#             o [P, E, W*F], ou [P, E, W*F]}
NETS = ("q", "qbar", "qbn", "adv", "oadv")


def _trader_learn(nets, tx, hp: TraderHParams, st: loop.TrainState, flags: ArmFlags, key):
    """One update of the best response Q (DQN on the replay buffer), the belief net (pinball) and the
    average policy Q-bar (distillation or cross-entropy on the reservoir) -> (state, [3] losses)."""
    qnet, qbn_net = nets
    W = hp.window
    p, o, ex = st.params, st.opt_state, st.extra
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (hp.batch_size,), 0, jnp.maximum(ex["buf_size"], 1))
    # the drawn minibatches are split over a mesh's data axis when one is set (`jax.set_mesh`); else a no-op
    bt = sharding.constrain_batch(jax.tree_util.tree_map(lambda a: a[idx], ex["buf"]))
    y = dqn_targets(bt["r"], jnp.full_like(bt["r"], hp.gamma), qnet.apply(ex["q_target"], bt["obs2"], bt["b2"], flags.qbn),
                    qnet.apply(p["q"], bt["obs2"], bt["b2"], flags.qbn))
    lq, gq = jax.value_and_grad(lambda p: dqn_loss(qnet.apply(p, bt["obs"], bt["b"], flags.qbn), bt["a"], y))(p["q"])
    uq, q_opt = tx.update(gq, o["q"], p["q"])
    ow = bt["obs"][:, :-1].reshape(-1, W, NUM_FEATS)
    lb, gb = jax.value_and_grad(lambda p: belief_lib.pinball_loss(qbn_net.apply(p, ow[:, :-1]), ma5(ow)))(p["qbn"])
    ub, qbn_opt = tx.update(gb, o["qbn"], p["qbn"])
    rb = sharding.constrain_batch(nfsp_lib.reservoir_sample(ex["res"], k2, hp.batch_size))
    q_teacher = jax.lax.stop_gradient(qnet.apply(p["q"], rb["obs"], rb["b"], flags.qbn))

    def avg_loss(p):
        out = qnet.apply(p, rb["obs"], rb["b"], flags.qbn)
        if hp.avg_loss == "distill":
            return jnp.mean((out - q_teacher) ** 2)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, rb["a"]))
    la, ga = jax.value_and_grad(avg_loss)(p["qbar"])
    has_res = (nfsp_lib.reservoir_size(ex["res"]) > 0).astype(jnp.float32)
    ga = jax.tree_util.tree_map(lambda g: g * has_res, ga)
    ua, qbar_opt = tx.update(ga, o["qbar"], p["qbar"])
    params = {**p, "q": optax.apply_updates(p["q"], uq), "qbn": optax.apply_updates(p["qbn"], ub),
              "qbar": optax.apply_updates(p["qbar"], ua)}
    st = st.replace(params=params, opt_state={**o, "q": q_opt, "qbn": qbn_opt, "qbar": qbar_opt})
    return st, jnp.stack([lq, lb, la])


def _reinforce_step(net, tx_adv, params, opt, x_pek, u_pek, ret_pe, mask_pe, gate, zero_sum):
    """One zero-sum REINFORCE step of a Gaussian adversary from its log (inputs x, pre-squash samples u,
    trader reward-to-go, mask) -> (params, opt state, loss); the gradient is multiplied by `gate` (its arm flag)."""
    P, E, K = x_pek.shape

    def loss(p):
        mean, std = net.apply(p, x_pek.reshape(-1, K))
        logp = adv_lib.gaussian_log_prob(u_pek.reshape(-1, K), mean, std).reshape(P, E)
        return adv_lib.adversary_reinforce_loss(logp.reshape(-1), ret_pe.reshape(-1), mask_n=mask_pe.reshape(-1),
                                                zero_sum=zero_sum)
    l, g = jax.value_and_grad(loss)(params)
    g = jax.tree_util.tree_map(lambda x: x * gate, g)
    u, opt = tx_adv.update(g, opt, params)
    return optax.apply_updates(params, u), opt, l


def _adversary_update(adv_net, tx_adv, hp: TraderHParams, st: loop.TrainState, flags: ArmFlags):
    """REINFORCE steps of the macro adversary and of the observation adversary on the last adv_every
    iterations' log -> (state, loss of the active one)."""
    lg, p, o = st.extra["adv_log"], st.params, st.opt_state
    ret = adv_lib.discounted_returns(lg["r"].T, gamma=hp.gamma).T          # [P, E]
    adv, adv_opt, l = _reinforce_step(adv_net, tx_adv, p["adv"], o["adv"], lg["m"], lg["u"], ret, lg["mask"],
                                      flags.adv * flags.aug, hp.zero_sum)
    oadv, oadv_opt, lo = _reinforce_step(adv_net, tx_adv, p["oadv"], o["oadv"], lg["o"], lg["ou"], ret, lg["mask"],
                                         flags.obs_adv, hp.zero_sum)
    st = st.replace(params={**p, "adv": adv, "oadv": oadv}, opt_state={**o, "adv": adv_opt, "oadv": oadv_opt})
    return st, l + flags.obs_adv * lo


def _generated_obs(generate, g_params, data: TraderData, env_s, env_t, delta_ek, keys, W: int):
    """The GAN's generated next W bars of each env's asset under macro + delta: the 2W window ending at
    env_t (W real steps as history), macro shifted by delta_ek [E, K]. -> [E, W, NUM_FEATS]."""
    xs = data.feats.reshape(data.feats.shape[0], -1)

    def gen_one(s, t, d, k):
        x = jax.lax.dynamic_slice_in_dim(xs, t - 2 * W + 1, 2 * W, 0)
        c = jax.lax.dynamic_slice_in_dim(data.macro, t - 2 * W + 1, 2 * W, 0) + d
        out = generate(g_params, x[None], c[None], k)[0, W:]                          # [W, S*F]
        return jax.lax.dynamic_slice_in_dim(out, s * NUM_FEATS, NUM_FEATS, 1)
    return jax.vmap(gen_one)(env_s, env_t, delta_ek, keys)


def _store_transitions(ex: dict, hp: TraderHParams, tr: dict, *, keep, key):
    """Writes the E transitions `tr` (obs, b, a, r, obs2, b2; leading axis E) into the replay ring at ex["ptr"]
    and the best-response ones (`keep` [E]) into the reservoir -> (buffer, reservoir)."""
    upd = lambda buf, v: jax.lax.dynamic_update_slice_in_dim(buf, v, ex["ptr"], 0)
    buf = {k: upd(ex["buf"][k], tr[k]) for k in ex["buf"]}

    def add(res, inp):
        item, k, v = inp
        return nfsp_lib.reservoir_add(res, item, k, valid=v), None
    n = tr["a"].shape[0]
    res, _ = jax.lax.scan(add, ex["res"], ({"obs": tr["obs"], "b": tr["b"], "a": tr["a"]}, jax.random.split(key, n),
                                           keep))
    return buf, res


class _TraderCtx(NamedTuple):
    """What one trader iteration needs besides its state: networks, optimisers, the GAN sampler, sizes."""
    qnet: Any
    qbn_net: Any
    adv_net: Any
    tx: Any
    tx_adv: Any
    hp: TraderHParams
    generate: Callable
    num_assets: int
    t_range: tuple


def _trader_ctx(hp: TraderHParams, generate, num_assets: int, t_range: tuple) -> _TraderCtx:
    """The networks and optimisers of `hp` (stateless descriptions, rebuilt wherever they are needed)."""
    return _TraderCtx(TraderQNet(hp.hidden), belief_lib.QuantileBeliefNet(hp.qbn_hidden), adv_lib.AdversaryPolicy(),
                      optax.adam(hp.lr), optax.adam(hp.adv_lr), hp, generate, num_assets, t_range)


def _trader_init(key, *, hp: TraderHParams, macro_dim: int, num_assets: int, t_range: tuple) -> loop.TrainState:
    """Fresh networks and optimiser states, empty replay ring and reservoir, E envs at random (asset, day)."""
    c = _trader_ctx(hp, None, num_assets, t_range)
    W, E, K, S, P = hp.window, hp.num_envs, macro_dim, num_assets, hp.adv_every
    D = W * NUM_FEATS + 1
    t_min, t_max = t_range
    k = jax.random.split(key, 6)
    q = c.qnet.init(k[0], jnp.zeros((1, D)), jnp.zeros((1,), jnp.int32), 1.0)
    qbar = c.qnet.init(k[1], jnp.zeros((1, D)), jnp.zeros((1,), jnp.int32), 1.0)
    qbn = c.qbn_net.init(k[2], jnp.zeros((1, W - 1, NUM_FEATS)))
    adv = c.adv_net.init(k[3], jnp.zeros((1, K)))
    oadv = c.adv_net.init(jax.random.fold_in(k[3], 1), jnp.zeros((1, W * NUM_FEATS)))
    N = hp.buffer_size
    buf = {"obs": jnp.zeros((N, D)), "b": jnp.zeros((N,), jnp.int32), "a": jnp.zeros((N,), jnp.int32),
           "r": jnp.zeros((N,)), "obs2": jnp.zeros((N, D)), "b2": jnp.zeros((N,), jnp.int32)}
    res = nfsp_lib.reservoir_init(hp.reservoir_size, {"obs": jnp.zeros((D,)), "b": jnp.zeros((), jnp.int32),
                                                      "a": jnp.zeros((), jnp.int32)})
    ks, kt = jax.random.split(k[4])
    log = {"m": jnp.zeros((P, E, K)), "u": jnp.zeros((P, E, K)), "r": jnp.zeros((P, E)),
           "mask": jnp.zeros((P, E)), "o": jnp.zeros((P, E, W * NUM_FEATS)), "ou": jnp.zeros((P, E, W * NUM_FEATS))}
    params = {"q": q, "qbar": qbar, "qbn": qbn, "adv": adv, "oadv": oadv}
    opt_state = {n: (c.tx_adv if n in ("adv", "oadv") else c.tx).init(params[n]) for n in NETS}
    extra = {"q_target": q, "buf": buf, "buf_size": jnp.zeros((), jnp.int32), "ptr": jnp.zeros((), jnp.int32),
             "res": res, "env_s": jax.random.randint(ks, (E,), 0, S), "env_t": jax.random.randint(kt, (E,), t_min, t_max),
             "env_pos": jnp.zeros((E,)), "env_k": jnp.zeros((E,), jnp.int32), "adv_u": jnp.zeros((E, K)),
             "adv_log": log}
    return loop.TrainState(params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32), key=k[5], extra=extra)


def _beliefs(qbn_net, qbn_p, obs_bwf):
    q = qbn_net.apply(qbn_p, obs_bwf[:, :-1])
    return belief_lib.belief_bucket(q, ma5(obs_bwf))


def _policy_q(qnet, params, flags, obs_bwf, pos_b, b):
    x = flat_obs(obs_bwf, pos_b)
    return qnet.apply(params["q"], x, b, flags.qbn), qnet.apply(params["qbar"], x, b, flags.qbn)


def _observe(ctx: _TraderCtx, st: loop.TrainState, flags: ArmFlags, data: TraderData, g_params, keys):
    """The E envs' observations of this iteration: the real windows, on the augmented steps replaced by the
    generated (macro adversary), noisy or attacked (observation adversary) ones -> (obs [E, W, F], dict of
    what the step records: macro m_t, held u, delta, o_flat, o_u, br, explore, aug)."""
    hp, ex = ctx.hp, st.extra
    W, E = hp.window, hp.num_envs
    k_eps, k_br, k_aug, k_gen, k_adv = keys
    obs = jax.vmap(obs_window, in_axes=(None, 0, 0, None))(data.feats, ex["env_s"], ex["env_t"], W)   # [E, W, F]
    # adversary: new pre-squash sample at the start of every block
    m_t = data.macro[ex["env_t"]]                                                       # [E, K]
    mean, std = ctx.adv_net.apply(st.params["adv"], m_t)
    u_new = mean + std * jax.random.normal(k_adv, mean.shape)
    u = jnp.where((ex["env_k"] % hp.adv_block == 0)[:, None], u_new, ex["adv_u"])
    delta = flags.adv * adv_lib.project_delta(u, eps=hp.adv_eps)
    gen = _generated_obs(ctx.generate, g_params, data, ex["env_s"], ex["env_t"], delta, jax.random.split(k_gen, E), W)
    eps = epsilon_schedule(st.step, end=hp.eps_end, decay_steps=hp.eps_decay_iters)
    br = (jax.random.uniform(k_br, (E,)) < hp.eta) | (flags.nfsp < 0.5)
    explore = br & (jax.random.uniform(k_eps, (E,)) < eps)
    aug_on = jnp.maximum(jnp.maximum(flags.aug, flags.noise), flags.obs_adv)
    aug = (~explore) & (jax.random.uniform(k_aug, (E,)) < hp.aug_rate * aug_on)
    noisy = obs + hp.obs_noise * jax.random.normal(jax.random.fold_in(k_aug, 1), obs.shape)
    o_flat = obs.reshape(E, -1)
    o_mean, o_std = ctx.adv_net.apply(st.params["oadv"], o_flat)
    o_u = o_mean + o_std * jax.random.normal(jax.random.fold_in(k_adv, 1), o_mean.shape)
    attacked = obs + adv_lib.project_delta(o_u, eps=hp.obs_adv_eps).reshape(obs.shape)
    alt = jnp.where(flags.obs_adv > 0.5, attacked, jnp.where(flags.noise > 0.5, noisy, gen))
    obs = jnp.where(aug[:, None, None], alt, obs)
    return obs, {"m_t": m_t, "u": u, "delta": delta, "o_flat": o_flat, "o_u": o_u, "br": br, "explore": explore,
                 "aug": aug}


def _trader_iter(ctx: _TraderCtx, st: loop.TrainState, flags: ArmFlags, data: TraderData, g_params):
    """One iteration of the E envs: adversary block sample, optional generated observation, NFSP action,
    env step, replay/reservoir writes, episode resets, then the scheduled updates -> (state, metrics)."""
    hp, ex = ctx.hp, st.extra
    W, E, S, P = hp.window, hp.num_envs, ctx.num_assets, hp.adv_every
    key, k_eps, k_act, k_br, k_aug, k_gen, k_adv, k_res, k_learn, k_reset = jax.random.split(st.key, 10)
    obs, o = _observe(ctx, st, flags, data, g_params, (k_eps, k_br, k_aug, k_gen, k_adv))
    b = _beliefs(ctx.qbn_net, st.params["qbn"], obs)
    q, qbar = _policy_q(ctx.qnet, st.params, flags, obs, ex["env_pos"], b)
    greedy = jnp.where(o["br"], jnp.argmax(q, -1), jnp.argmax(qbar, -1))
    act = jnp.where(o["explore"], jax.random.randint(k_act, (E,), 0, 3), greedy).astype(jnp.int32)
    es = env_lib.EnvState(ex["env_t"], ex["env_pos"], jnp.ones((E,)))
    close_e = data.close[:, ex["env_s"]].T                                              # [E, T]
    es2, rew = jax.vmap(lambda s, a, p: env_lib.step(s, a, p, cost=hp.cost, mode=hp.cost_mode))(es, act, close_e)
    obs2 = jax.vmap(obs_window, in_axes=(None, 0, 0, None))(data.feats, ex["env_s"], es2.t, W)
    b2 = _beliefs(ctx.qbn_net, st.params["qbn"], obs2)
    x, x2 = flat_obs(obs, ex["env_pos"]), flat_obs(obs2, es2.pos)
    ptr = ex["ptr"]
    buf, res = _store_transitions(ex, hp, {"obs": x, "b": b, "a": act, "r": hp.reward_scale * rew, "obs2": x2,
                                           "b2": b2}, keep=o["br"] & ~o["explore"], key=k_res)
    j = st.step % P
    lg = ex["adv_log"]
    log = {"m": lg["m"].at[j].set(o["m_t"]), "u": lg["u"].at[j].set(o["u"]),
           "r": lg["r"].at[j].set(hp.reward_scale * rew), "mask": lg["mask"].at[j].set(o["aug"]),
           "o": lg["o"].at[j].set(o["o_flat"]), "ou": lg["ou"].at[j].set(o["o_u"])}
    k_next = ex["env_k"] + 1
    done = k_next >= hp.episode_len
    ks, kt = jax.random.split(k_reset)
    new_s = jax.random.randint(ks, (E,), 0, S)
    new_t = jax.random.randint(kt, (E,), *ctx.t_range)
    ex = {**ex, "buf": buf, "ptr": (ptr + E) % hp.buffer_size, "buf_size": jnp.minimum(ex["buf_size"] + E, hp.buffer_size),
          "res": res, "env_s": jnp.where(done, new_s, ex["env_s"]), "env_t": jnp.where(done, new_t, es2.t),
          "env_pos": jnp.where(done, 0.0, es2.pos), "env_k": jnp.where(done, 0, k_next), "adv_u": o["u"],
          "adv_log": log}
    st = st.replace(extra=ex, step=st.step + 1, key=key)
    do_learn = (ex["buf_size"] >= hp.learning_starts) & (st.step % hp.train_every == 0)
    st, losses = jax.lax.cond(do_learn, lambda s: _trader_learn((ctx.qnet, ctx.qbn_net), ctx.tx, hp, s, flags, k_learn),
                              lambda s: (s, jnp.zeros(3)), st)
    q_target = jax.tree_util.tree_map(lambda t, p: jnp.where(st.step % hp.target_every == 0, p, t),
                                      st.extra["q_target"], st.params["q"])
    st = st.replace(extra={**st.extra, "q_target": q_target})
    st, la = jax.lax.cond(st.step % P == 0, lambda s: _adversary_update(ctx.adv_net, ctx.tx_adv, hp, s, flags),
                          lambda s: (s, jnp.zeros(())), st)
    metrics = {"q_loss": losses[0], "qbn_loss": losses[1], "avg_loss": losses[2], "adv_loss": la,
               "reward": jnp.mean(rew), "aug_frac": jnp.mean(o["aug"]), "delta_abs": jnp.mean(jnp.abs(o["delta"]))}
    return st, metrics


def _trader_step(st: loop.TrainState, batch: TraderBatch, *, hp: TraderHParams, generate, num_assets: int,
                 t_range: tuple):
    """`loop.Trainer.step`: one iteration of one arm (`batch.flags`) -> (state, metrics of scalars)."""
    ctx = _trader_ctx(hp, generate, num_assets, t_range)
    return _trader_iter(ctx, st, batch.flags, batch.data, batch.g_params)


def check_hparams(hp: TraderHParams) -> None:
    """Raises ValueError naming the first bad trader hyperparameter (called by `make_trader`; experiments call
    it before any training)."""
    if hp.avg_loss not in AVG_LOSSES:
        raise ValueError(f"avg_loss: expected one of {AVG_LOSSES}, got {hp.avg_loss!r}")
    if hp.cost_mode not in env_lib.COST_MODES:
        raise ValueError(f"cost_mode: expected one of {env_lib.COST_MODES}, got {hp.cost_mode!r}")
    if hp.adv_eps < 0:
        raise ValueError(f"adv_eps: expected a radius >= 0, got {hp.adv_eps}")
    if hp.obs_adv_eps < 0:
        raise ValueError(f"obs_adv_eps: expected a radius >= 0, got {hp.obs_adv_eps}")


def episode_starts(hp: TraderHParams, train_range: tuple) -> tuple:
    """(t_min, t_max) of the episode start days inside train_range = (lo, hi): [max(lo, 2W-1), hi - episode_len - 1)."""
    lo, hi = train_range
    t_min, t_max = max(int(lo), 2 * hp.window - 1), int(hi) - hp.episode_len - 1
    if t_max <= t_min:
        raise ValueError(f"train_range: expected room for episodes of {hp.episode_len} steps after a 2W={2 * hp.window} "
                         f"warm-up inside {train_range}")
    return t_min, t_max


def trader_trainer(hp: TraderHParams, *, num_assets: int, macro_dim: int, train_range: tuple, generate) -> loop.Trainer:
    """`loop.Trainer` of one trader arm: `init(key) -> loop.TrainState` (the layout above) and
    `step(state, TraderBatch(flags, data, g_params)) -> (state, metrics)`, one iteration of the E envs.
    Run it with `loop.run(trainer, key, steps=..., chunk=..., data=TraderBatch(...))`; a grid of seeds x arms
    is `trader_grid(trainer, arms)`.

    generate(g_params, x [B, 2W, S*4], c [B, 2W, K], key) -> [B, 2W, S*4] is the trained GAN's sampler.
    train_range = (lo, hi): episodes start at t0 in [max(lo, 2W-1), hi - episode_len - 1].
    """
    check_hparams(hp)
    t_range = episode_starts(hp, train_range)
    return loop.Trainer(init=loop.bind(_trader_init, hp=hp, macro_dim=int(macro_dim), num_assets=int(num_assets),
                                       t_range=t_range),
                        step=loop.bind(_trader_step, hp=hp, generate=generate, num_assets=int(num_assets),
                                       t_range=t_range))


def greedy_actions(st: loop.TrainState, flags: ArmFlags, obs_bwf, pos_b, *, hp: TraderHParams):
    """The evaluation policy: greedy on Q-bar for NFSP arms, on Q otherwise. obs_bwf [B, W, 4], pos_b [B] ->
    actions [B] in {0, 1, 2}."""
    qnet, qbn_net = TraderQNet(hp.hidden), belief_lib.QuantileBeliefNet(hp.qbn_hidden)
    b = _beliefs(qbn_net, st.params["qbn"], obs_bwf)
    q, qbar = _policy_q(qnet, st.params, flags, obs_bwf, pos_b, b)
    return jnp.where(flags.nfsp > 0.5, jnp.argmax(qbar, -1), jnp.argmax(q, -1))


def _grid_init(keys_s, *, init, arms: int):
    """[S] keys -> states [S, A]: every arm of a seed starts from that seed's key (common random numbers)."""
    return jax.vmap(lambda k: jax.vmap(lambda _: init(k))(jnp.arange(arms)))(keys_s)


def _grid_step(st, batch: TraderBatch, *, step):
    """States [S, A], batch = TraderBatch(flags [A], data, g_params [S]) -> (states, metrics [S, A])."""
    def one_seed(st_a, g):
        return jax.vmap(lambda s, f: step(s, TraderBatch(f, batch.data, g)))(st_a, batch.flags)
    return jax.vmap(one_seed)(st, batch.g_params)


def trader_grid(trainer: loop.Trainer, arms: int) -> loop.Trainer:
    """The seeds x arms grid as one trainer (one compile): `init(keys [S, 2]) -> states [S, A]` (the arms of a
    seed share its key), `step(states, TraderBatch(flags [A], data, g_params [S])) -> (states, metrics [S, A])`."""
    return loop.Trainer(init=loop.bind(_grid_init, init=trainer.init, arms=int(arms)),
                        step=loop.bind(_grid_step, step=trainer.step))


@functools.partial(jax.jit, static_argnames=("step", "iters"))
def scan_chunk(state, batch, *, step, iters: int):
    """`iters` steps of `step(state, batch)` as one `loop.scan_steps` -> (state, each metric's mean over them)."""
    state, m = loop.scan_steps(state, batch, step=step, length=iters)
    return state, jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), m)


def make_trader(hp: TraderHParams, *, num_assets: int, macro_dim: int, train_range: tuple, generate):
    """(init, train_chunk, act_eval) of `trader_trainer` (the notebook's and the tests' entry point).

    init(key) -> loop.TrainState
    train_chunk(state, flags: ArmFlags, data: TraderData, g_params, iters) -> (state, metrics means)
    act_eval(state, flags, obs_bwf [B, W, 4], pos_b [B]) -> actions [B] in {0, 1, 2}
    """
    trainer = trader_trainer(hp, num_assets=num_assets, macro_dim=macro_dim, train_range=train_range,
                             generate=generate)

    def train_chunk(st, flags, data, g_params, iters: int):
        return scan_chunk(st, TraderBatch(flags, data, g_params), step=trainer.step, iters=iters)
    return trainer.init, train_chunk, loop.bind(greedy_actions, hp=hp)


def backtest(act_eval, st, flags, obs_dswf, ret_ds, *, cost=1e-3, cost_mode="code_B"):
    """Greedy daily backtest: on day d each asset's position is chosen from obs_dswf[d] ([S, W, F]) and
    earns ret_ds[d] (the next-day close return); the change is charged with `env.trade_cost`.
    Returns the equal-weight daily returns [D]."""
    S = ret_ds.shape[1]

    def day(pos_s, inp):
        o, r = inp
        a = env_lib.ACTIONS[act_eval(st, flags, o, pos_s)]
        out = a * r - env_lib.trade_cost(pos_s, a, cost=cost, mode=cost_mode)
        return a, out
    _, r = jax.lax.scan(day, jnp.zeros((S,)), (obs_dswf, ret_ds))
    return jnp.mean(r, axis=1)


class WorldArrays(NamedTuple):
    """A MacroWorld prepared for the GAN and the trader (statistics fitted on rows < n_train only).
    data: TraderData; fmu, fsd [F] feature z-score; mlo, mhi [K] macro min-max; n_train, n_val_end ints."""
    data: TraderData
    fmu: jax.Array
    fsd: jax.Array
    mlo: jax.Array
    mhi: jax.Array
    n_train: int
    n_val_end: int


def prepare_world(world, n_train: int, n_val_end: int) -> WorldArrays:
    """Features, macro scaling and close paths of a `macro.MacroWorld` (train-only statistics)."""
    import numpy as np

    from jaxlab.finance import macro as macro_lib
    T = world.panel.num_days
    if not 0 < n_train < n_val_end < T:
        raise ValueError(f"n_train/n_val_end: expected 0 < n_train < n_val_end < {T}, got {n_train}, {n_val_end}")
    f = macro_lib.bar_features(world.panel.ohlcv)
    fmu, fsd = f[1:n_train].mean((0, 1)), f[1:n_train].std((0, 1)) + 1e-8
    lo, hi = macro_lib.minmax_fit(world.macro, n_train)
    m = macro_lib.minmax_apply(world.macro, lo, hi)
    data = TraderData(jnp.asarray((f - fmu) / fsd, jnp.float32), jnp.asarray(m, jnp.float32),
                      jnp.asarray(world.panel.ohlcv[..., 3], jnp.float32))
    return WorldArrays(data, *(jnp.asarray(a, jnp.float32) for a in (fmu, fsd, lo, hi)), int(n_train), int(n_val_end))


def eval_obs(data: TraderData, lo: int, hi: int, window: int):
    """Real observation windows and next-day returns for days d in [lo, hi - 1):
    obs [D, S, W, F], ret [D, S] = close[d+1] / close[d] - 1."""
    if lo < window - 1 or hi > data.feats.shape[0] or hi - lo < 2:
        raise ValueError(f"lo/hi: expected window - 1 <= lo < hi - 1 and hi <= {data.feats.shape[0]}, got {lo}, {hi}")
    days = jnp.arange(lo, hi - 1)
    S = data.feats.shape[1]
    obs = jax.vmap(lambda t: jax.vmap(lambda s: obs_window(data.feats, s, t, window))(jnp.arange(S)))(days)
    ret = data.close[lo + 1:hi] / data.close[lo:hi - 1] - 1.0
    return obs, ret


def generated_eval_obs(generate, g_params, data: TraderData, lo: int, hi: int, window: int, delta_k, key):
    """Generated observation windows for days [lo, hi - 1) under macro + delta (delta [K], same every day):
    history rows t-2W+1..t-W are real, rows t-W+1..t generated. Returns [D, S, W, F]."""
    if lo < 2 * window - 1:
        raise ValueError(f"lo: expected >= 2 * window - 1 = {2 * window - 1}, got {lo}")
    T, S, F = data.feats.shape
    days = jnp.arange(lo, hi - 1)
    xs = data.feats.reshape(T, -1)
    x = jax.vmap(lambda t: jax.lax.dynamic_slice_in_dim(xs, t - 2 * window + 1, 2 * window, 0))(days)
    c = jax.vmap(lambda t: jax.lax.dynamic_slice_in_dim(data.macro, t - 2 * window + 1, 2 * window, 0))(days) + delta_k
    out = generate(g_params, x, c, key)[:, window:]                          # [D, W, S*F]
    return jnp.moveaxis(out.reshape(out.shape[0], window, S, F), 2, 1)
