"""DQN trader on the pure-JAX trading environment (paper A §V RL protocol; Table III miniature).

The agent sees s_t = [last W normalised bar features, position p_t] and picks a target position
a in {-1, 0, 1}; the environment is `jaxlab.finance.env` (reward p_{t-1} r_t - c |p_t - p_{t-1}|).

Training episodes run inside windows of a *bank* of raw bar windows `[N, L+1, 5]` (the same windows the
forecaster sees). "With the planner's augmentation" means the bank is the planner-manipulated copy of the
training windows (`make_bank`), drawn with probability alpha per episode; "without" uses alpha = 0.
Every piece is pure: the trainer is a `jaxlab.core.loop.Trainer` (`dqn_trainer(DQNHParams(...))`: `init(key) ->
loop.TrainState`, `step(state, DQNBatch(bank, alpha, offset))`), so a run is a `lax.scan` over vectorised environment
steps (`loop.scan_steps`, `loop.run`) whose state can be checkpointed between chunks and vmapped over arms
(original / augmented banks) or seeds. `make_dqn` keeps the closures the dataflow experiment calls.

The losses `dqn_targets` and `dqn_loss` live in `jaxlab.finance.losses` (re-exported here and at the package
top level with `epsilon_schedule`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import loop
from jaxlab.finance import env as env_lib
from jaxlab.finance import metrics as fin_metrics
from jaxlab.finance.losses import dqn_loss, dqn_targets  # noqa: F401  (the losses live in losses.py)
from jaxlab.finance.models import window_features

NUM_ACTIONS = 3
NUM_OBS_FEATURES = 4          # log return, log O/C, log H/C, log L/C (all causal per bar; volume dropped)


class QNetwork(nn.Module):
    """Paper B's trader head: Dense(hidden) -> tanh -> LayerNorm -> Dense(3). obs [B, D] -> Q [B, 3]."""
    hidden: int = 64

    @nn.compact
    def __call__(self, obs_bd):
        h = nn.LayerNorm()(jnp.tanh(nn.Dense(self.hidden)(obs_bd)))
        return nn.Dense(NUM_ACTIONS)(h)


# ----------------------------------------------------------------------------------- exploration schedule
def epsilon_schedule(step, *, start=1.0, end=0.05, decay_steps=1000):
    """Linear decay from start to end over decay_steps, then constant."""
    frac = jnp.clip(step / jnp.maximum(decay_steps, 1), 0.0, 1.0)
    return start + frac * (end - start)


# --------------------------------------------------------------------------------------------- the bank
class Bank(NamedTuple):
    """Episode windows. feats: [N, L+1, F] normalised features aligned with bars (row 0 is zero padding,
    row t describes bar t); close: [N, L+1] relative close path (the environment's prices)."""
    feats: jax.Array
    close: jax.Array


def bank_from_windows(x_ntf, fmu, fsd):
    """Raw windows [N, L+1, 5] -> Bank. fmu, fsd: [>=4] train-fitted feature mean/std (first 4 used)."""
    f = (window_features(jnp.asarray(x_ntf))[..., :NUM_OBS_FEATURES] - fmu[:NUM_OBS_FEATURES]) / fsd[:NUM_OBS_FEATURES]
    f = jnp.concatenate([jnp.zeros_like(f[:, :1]), f], axis=1)
    return Bank(f.astype(jnp.float32), jnp.maximum(jnp.asarray(x_ntf)[..., 3], 1e-6).astype(jnp.float32))


def concat_banks(a: Bank, b: Bank) -> Bank:
    return Bank(jnp.concatenate([a.feats, b.feats]), jnp.concatenate([a.close, b.close]))


def observe(feats_tf, t, pos, window):
    """Causal observation: rows t-W+1..t of the aligned features, flattened, plus the position. [W*F+1]."""
    return env_lib.observation(env_lib.EnvState(t, pos, jnp.ones(())), feats_tf, window=window)


# ----------------------------------------------------------------------------------------- training
class DQNHParams(NamedTuple):
    """The DQN trader's hyperparameters (one default each). Rewards are stored x reward_scale (daily returns
    are ~1e-3; 100 = percent units); buffer_size must be a multiple of num_envs."""
    window: int = 10
    num_envs: int = 8
    buffer_size: int = 8192
    batch_size: int = 64
    lr: float = 1e-3
    gamma: float = 0.9
    hidden: int = 64
    eps_decay_iters: int = 1000
    eps_end: float = 0.05
    learning_starts: int = 256
    train_every: int = 1
    target_every: int = 200
    cost: float = 1e-3
    cost_mode: str = "paper_A"
    double: bool = True
    reward_scale: float = 100.0


class DQNBatch(NamedTuple):
    """What a DQN step reads besides its state: the episode bank, alpha (probability that an episode draws its
    window from bank rows >= offset, the augmented half) and offset."""
    bank: Bank
    alpha: jax.Array
    offset: jax.Array


# The DQN's `loop.TrainState`: params = the Q-network, opt_state its Adam state, step = environment iterations,
# key carried (split 5 ways per iteration), extra = {"target": target network, "buf_obs" [N, D], "buf_act" [N],
# "buf_rew" [N], "buf_next" [N, D], "buf_size" [], "ptr" [], "env_n" [E] bank row of each environment's window,
# "env_t" [E], "env_pos" [E]}.


def _sample_windows(key, n_env, alpha, offset, n_bank):
    """Bank rows for n_env new episodes: with probability alpha from the augmented half (rows >= offset)."""
    k1, k2 = jax.random.split(key)
    use_aug = jax.random.uniform(k1, (n_env,)) < alpha
    idx = jax.random.randint(k2, (n_env,), 0, offset)
    return jnp.where(use_aug, jnp.minimum(idx + offset, n_bank - 1), idx)


def _dqn_learn(net, tx, state: loop.TrainState, key, *, batch_size, gamma, double):
    """One (double) DQN update on a uniform minibatch of the replay buffer -> (state, loss)."""
    ex = state.extra
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(ex["buf_size"], 1))
    o, a, r, o2 = ex["buf_obs"][idx], ex["buf_act"][idx], ex["buf_rew"][idx], ex["buf_next"][idx]
    q_next_t = net.apply(ex["target"], o2)
    q_next_o = net.apply(state.params, o2) if double else None
    y = dqn_targets(r, jnp.full_like(r, gamma), q_next_t, q_next_o)   # truncation only: always bootstrap

    def loss_fn(p):
        return dqn_loss(net.apply(p, o), a, y)
    loss, g = jax.value_and_grad(loss_fn)(state.params)
    upd, opt = tx.update(g, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, upd), opt_state=opt), loss


def _dqn_init(key, *, hp: DQNHParams) -> loop.TrainState:
    """Fresh Q-network (target = a copy), empty replay ring, every environment at t = window of bank row 0."""
    D, N, E = hp.window * NUM_OBS_FEATURES + 1, hp.buffer_size, hp.num_envs
    k1, k2 = jax.random.split(key)
    params = QNetwork(hidden=hp.hidden).init(k1, jnp.zeros((1, D)))
    extra = {"target": params, "buf_obs": jnp.zeros((N, D)), "buf_act": jnp.zeros((N,), jnp.int32),
             "buf_rew": jnp.zeros((N,)), "buf_next": jnp.zeros((N, D)), "buf_size": jnp.zeros((), jnp.int32),
             "ptr": jnp.zeros((), jnp.int32), "env_n": jnp.zeros((E,), jnp.int32),
             "env_t": jnp.full((E,), hp.window, jnp.int32), "env_pos": jnp.zeros((E,))}
    return loop.TrainState(params=params, opt_state=optax.adam(hp.lr).init(params), step=jnp.zeros((), jnp.int32),
                           key=k2, extra=extra)


def _dqn_step(state: loop.TrainState, batch: DQNBatch, *, hp: DQNHParams):
    """`loop.Trainer.step`: one iteration of the num_envs environments (eps-greedy actions, env step, replay
    writes, episode resets from the bank), then the scheduled DQN update and target copy -> (state, {"loss"})."""
    net, tx, E, W, ex = QNetwork(hidden=hp.hidden), optax.adam(hp.lr), hp.num_envs, hp.window, state.extra
    bank = batch.bank
    key, k_eps, k_act, k_reset, k_learn = jax.random.split(state.key, 5)
    L = bank.close.shape[1] - 1
    feats, close = bank.feats[ex["env_n"]], bank.close[ex["env_n"]]              # [E, L+1, F], [E, L+1]
    obs = jax.vmap(observe, in_axes=(0, 0, 0, None))(feats, ex["env_t"], ex["env_pos"], W)
    eps = epsilon_schedule(state.step, end=hp.eps_end, decay_steps=hp.eps_decay_iters)
    greedy = jnp.argmax(net.apply(state.params, obs), axis=-1)
    rand = jax.random.randint(k_act, (E,), 0, NUM_ACTIONS)
    act = jnp.where(jax.random.uniform(k_eps, (E,)) < eps, rand, greedy).astype(jnp.int32)
    es = env_lib.EnvState(ex["env_t"], ex["env_pos"], jnp.ones((E,)))
    es2, rew = jax.vmap(lambda s, a, p: env_lib.step(s, a, p, cost=hp.cost, mode=hp.cost_mode))(es, act, close)
    nxt = jax.vmap(observe, in_axes=(0, 0, 0, None))(feats, es2.t, es2.pos, W)
    ptr = ex["ptr"]
    upd = lambda buf, v: jax.lax.dynamic_update_slice_in_dim(buf, v, ptr, 0)
    done = es2.t >= L
    new_n = _sample_windows(k_reset, E, batch.alpha, batch.offset, bank.close.shape[0])
    ex = {**ex, "buf_obs": upd(ex["buf_obs"], obs), "buf_act": upd(ex["buf_act"], act),
          "buf_rew": upd(ex["buf_rew"], hp.reward_scale * rew), "buf_next": upd(ex["buf_next"], nxt),
          "ptr": (ptr + E) % hp.buffer_size, "buf_size": jnp.minimum(ex["buf_size"] + E, hp.buffer_size),
          "env_n": jnp.where(done, new_n, ex["env_n"]), "env_t": jnp.where(done, W, es2.t),
          "env_pos": jnp.where(done, 0.0, es2.pos)}
    st = state.replace(extra=ex, step=state.step + 1, key=key)
    do_learn = (ex["buf_size"] >= hp.learning_starts) & (state.step % hp.train_every == 0)
    st, loss = jax.lax.cond(do_learn, lambda s: _dqn_learn(net, tx, s, k_learn, batch_size=hp.batch_size,
                                                           gamma=hp.gamma, double=hp.double),
                            lambda s: (s, jnp.zeros(())), st)
    target = jax.tree_util.tree_map(lambda t, p: jnp.where(st.step % hp.target_every == 0, p, t),
                                    st.extra["target"], st.params)
    return st.replace(extra={**st.extra, "target": target}), {"loss": loss}


def check_dqn_hparams(hp: DQNHParams) -> None:
    """Raises ValueError naming the first bad DQN hyperparameter."""
    if hp.buffer_size % hp.num_envs:
        raise ValueError(f"buffer_size: expected a multiple of num_envs={hp.num_envs}, got {hp.buffer_size}")
    if hp.cost_mode not in env_lib.COST_MODES:
        raise ValueError(f"cost_mode: expected one of {env_lib.COST_MODES}, got {hp.cost_mode!r}")


def dqn_trainer(hp: DQNHParams) -> loop.Trainer:
    """`loop.Trainer` of the DQN trader: `init(key) -> loop.TrainState` and `step(state, DQNBatch(bank, alpha,
    offset)) -> (state, {"loss"})`; run it with `loop.run(..., data=DQNBatch(...))` or `loop.scan_steps`."""
    check_dqn_hparams(hp)
    return loop.Trainer(init=loop.bind(_dqn_init, hp=hp), step=loop.bind(_dqn_step, hp=hp))


def _arms_init(key, *, init, n_arms: int):
    s0 = init(key)
    return jax.tree_util.tree_map(lambda v: jnp.stack([v] * n_arms), s0)


def _arms_step(state, batch, *, step):
    return jax.vmap(step, in_axes=(0, DQNBatch(0, 0, None)))(state, batch)


def arms_trainer(hp: DQNHParams, n_arms: int) -> loop.Trainer:
    """`n_arms` DQN traders trained side by side from one identical start (the arms of an augmentation
    ablation): `init(key)` -> `dqn_trainer(hp).init(key)` stacked [A, ...]; `step(state, DQNBatch(bank [A, ...],
    alpha [A], offset []))` -> (state, {"loss" [A]}): arm a learns from its own bank and alpha. One compile."""
    if n_arms < 1:
        raise ValueError(f"n_arms: expected >= 1, got {n_arms}")
    trainer = dqn_trainer(hp)
    return loop.Trainer(init=loop.bind(_arms_init, init=trainer.init, n_arms=n_arms),
                        step=loop.bind(_arms_step, step=trainer.step))


@functools.partial(jax.jit, static_argnames=("hp",))
def arms_evaluate(params, x_dstf, y_ds, fmu, fsd, *, hp: DQNHParams):
    """`evaluate_greedy` of every arm's Q-network: params [A, ...] -> (strategy metrics [A], actions [A, D, S])."""
    act = loop.bind(_greedy, hidden=hp.hidden)
    return jax.vmap(lambda p: evaluate_greedy(act, p, x_dstf, y_ds, fmu, fsd, window=hp.window, cost=hp.cost,
                                              cost_mode=hp.cost_mode))(params)


@functools.partial(jax.jit, static_argnames=("step", "iters"))
def _scan_mean_loss(state, batch, *, step, iters: int):
    state, m = loop.scan_steps(state, batch, step=step, length=iters)
    return state, jnp.mean(m["loss"])


def _greedy(params, obs_bd, *, hidden: int):
    return jnp.argmax(QNetwork(hidden=hidden).apply(params, obs_bd), axis=-1)


def evaluate_greedy(act, params, x_dstf, y_ds, fmu, fsd, *, window: int, cost: float, cost_mode: str):
    """Greedy policy act(params, obs [S, D]) -> [S] on consecutive days. x_dstf: [D, S, L+1, 5] each day's
    window per asset; y_ds: [D, S] next-day returns. The position chosen on day d earns y[d]; the change
    is charged by `env.trade_cost` on day d. Returns (strategy metrics of the equal-weight daily returns,
    actions [D, S])."""
    Dd, S = y_ds.shape
    bank = bank_from_windows(x_dstf.reshape((Dd * S,) + x_dstf.shape[2:]), fmu, fsd)
    L = bank.close.shape[1] - 1
    feats = bank.feats.reshape(Dd, S, L + 1, -1)

    def day(pos_s, inp):
        f_s, y_s = inp
        obs = jax.vmap(observe, in_axes=(0, None, 0, None))(f_s, L, pos_s, window)
        a = env_lib.ACTIONS[act(params, obs)]
        r = a * y_s - env_lib.trade_cost(pos_s, a, cost=cost, mode=cost_mode)
        return a, (r, a)

    _, (r_ds, a_ds) = jax.lax.scan(day, jnp.zeros((S,)), (feats, jnp.asarray(y_ds)))
    return strategy_metrics(jnp.mean(r_ds, axis=1)), a_ds


def make_dqn(**hparams):
    """(init, train_chunk, act, evaluate) of `dqn_trainer(DQNHParams(**hparams))` (all pure; the dataflow
    experiment's entry point).

    init(key, bank) -> loop.TrainState (the bank is not read: every environment starts at bank row 0)
    train_chunk(state, bank, alpha, num_aug_offset, iters) -> (state, mean loss): `iters` steps as one
        `loop.scan_steps`; alpha: probability that an episode draws its window from bank rows >= num_aug_offset.
    act(params, obs_bd) -> greedy actions [B]
    evaluate(params, x_dstf, y_ds, fmu, fsd) -> (strategy metrics, actions [D, S]) on consecutive days.
    """
    hp = DQNHParams(**hparams)
    trainer = dqn_trainer(hp)

    def init(key, bank: Bank = None):
        return trainer.init(key)

    def train_chunk(state, bank: Bank, alpha, offset, iters: int):
        """iters environment iterations (num_envs transitions each) as one lax.scan."""
        return _scan_mean_loss(state, DQNBatch(bank, alpha, offset), step=trainer.step, iters=iters)

    act = loop.bind(_greedy, hidden=hp.hidden)

    def evaluate(params, x_dstf, y_ds, fmu, fsd):
        """Greedy policy on consecutive days (`evaluate_greedy`) -> (strategy metrics, actions [D, S])."""
        return evaluate_greedy(act, params, x_dstf, y_ds, fmu, fsd, window=hp.window, cost=hp.cost,
                               cost_mode=hp.cost_mode)

    return init, train_chunk, act, evaluate


def strategy_metrics(r_d):
    """Daily returns [D] -> Sharpe (sqrt 252), total return, max drawdown, mean daily return."""
    eq = fin_metrics.equity_curve(r_d)
    return {"sharpe": fin_metrics.sharpe_ratio(r_d), "total_return": fin_metrics.total_return(eq), "mdd": fin_metrics.max_drawdown(eq),
            "mean_daily": jnp.mean(r_d)}


def make_bank(augment, plan, theta, phi, x, y, asset, day, key, *, policy_code=3, chunk=2048):
    """The planner-manipulated copy of the training windows (every row manipulated; alpha is applied when
    episodes draw windows). Uses the forecaster's `plan` (policy p, lam from the trained planner) and the
    replayable `augment`. Returns x~ [N, L+1, 5] (NumPy)."""
    n = len(x)
    pad = (-n) % chunk
    x, y, asset, day = (np.concatenate([a, a[:pad]]) if pad else a for a in (x, y, asset, day))
    out = []
    for i in range(0, len(x), chunk):
        kp, ka = jax.random.split(jax.random.fold_in(key, i))
        sl = slice(i, i + chunk)
        _, q, lam, _ = plan(theta, phi, x[sl], kp, policy_code, 1.0)
        xa, _, _ = augment(x[sl], y[sl], asset[sl], day[sl], q, lam, jnp.ones(chunk, bool), ka)
        out.append(np.asarray(xa))
    return np.concatenate(out)[:n]
