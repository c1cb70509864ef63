"""DQN trader on the pure-JAX trading environment (paper A §V RL protocol; Table III miniature).

The agent sees s_t = [last W normalised bar features, position p_t] and picks a target position
a in {-1, 0, 1}; the environment is `jaxlab.finance.env` (reward p_{t-1} r_t - c |p_t - p_{t-1}|).

Training episodes run inside windows of a *bank* of raw bar windows `[N, L+1, 5]` (the same windows the
forecaster sees). "With the planner's augmentation" means the bank is the planner-manipulated copy of the
training windows (`make_bank`), drawn with probability alpha per episode; "without" uses alpha = 0.
Every piece is pure: the whole training loop is a `lax.scan` over vectorised environment steps
(`train_chunk`), so a run is a pytree `DQNState` that can be checkpointed between chunks and vmapped
over arms (original / augmented banks) or seeds.

The losses `dqn_targets` and `dqn_loss` live in `jaxlab.finance.losses` (re-exported here and at the package
top level with `epsilon_schedule`).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

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
class DQNState(NamedTuple):
    params: dict
    target: dict
    opt: tuple
    buf_obs: jax.Array     # [N, D]
    buf_act: jax.Array     # [N]
    buf_rew: jax.Array     # [N]
    buf_next: jax.Array    # [N, D]
    buf_size: jax.Array    # []
    ptr: jax.Array         # []
    env_n: jax.Array       # [E] bank index of each environment's window
    env_t: jax.Array       # [E]
    env_pos: jax.Array     # [E]
    step: jax.Array        # [] environment iterations so far
    key: jax.Array


def _sample_windows(key, n_env, alpha, offset, n_bank):
    """Bank rows for n_env new episodes: with probability alpha from the augmented half (rows >= offset)."""
    k1, k2 = jax.random.split(key)
    use_aug = jax.random.uniform(k1, (n_env,)) < alpha
    idx = jax.random.randint(k2, (n_env,), 0, offset)
    return jnp.where(use_aug, jnp.minimum(idx + offset, n_bank - 1), idx)


def _dqn_learn(net, tx, state, key, *, batch_size, gamma, double):
    """One (double) DQN update on a uniform minibatch of the replay buffer -> (state, loss)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.buf_size, 1))
    o, a, r, o2 = state.buf_obs[idx], state.buf_act[idx], state.buf_rew[idx], state.buf_next[idx]
    q_next_t = net.apply(state.target, o2)
    q_next_o = net.apply(state.params, o2) if double else None
    y = dqn_targets(r, jnp.full_like(r, gamma), q_next_t, q_next_o)   # truncation only: always bootstrap

    def loss_fn(p):
        return dqn_loss(net.apply(p, o), a, y)
    loss, g = jax.value_and_grad(loss_fn)(state.params)
    upd, opt = tx.update(g, state.opt, state.params)
    return state._replace(params=optax.apply_updates(state.params, upd), opt=opt), loss


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


def make_dqn(*, window=10, num_envs=8, buffer_size=8192, batch_size=64, lr=1e-3, gamma=0.9, hidden=64,
             eps_decay_iters=1000, eps_end=0.05, learning_starts=256, train_every=1, target_every=200,
             cost=1e-3, cost_mode="paper_A", double=True, reward_scale=100.0):
    """Returns (init, train_chunk, act, evaluate) closures over the hyperparameters (all pure).

    Rewards are stored multiplied by `reward_scale` (daily returns are ~1e-3; 100 = percent units).
    init(key, bank) -> DQNState
    train_chunk(state, bank, alpha, num_aug_offset, iters) -> (state, mean loss); alpha: probability that
        an episode draws its window from bank rows >= num_aug_offset (the augmented half).
    evaluate(params, x_dstf, y_ds, fmu, fsd) -> dict of strategy metrics on consecutive days.
    """
    if buffer_size % num_envs:
        raise ValueError(f"buffer_size: expected a multiple of num_envs={num_envs}, got {buffer_size}")
    if cost_mode not in env_lib.COST_MODES:
        raise ValueError(f"cost_mode: expected one of {env_lib.COST_MODES}, got {cost_mode!r}")
    net = QNetwork(hidden=hidden)
    tx = optax.adam(lr)
    D = window * NUM_OBS_FEATURES + 1

    def init(key, bank: Bank):
        k1, k2 = jax.random.split(key)
        params = net.init(k1, jnp.zeros((1, D)))
        return DQNState(params, params, tx.init(params), jnp.zeros((buffer_size, D)),
                        jnp.zeros((buffer_size,), jnp.int32), jnp.zeros((buffer_size,)), jnp.zeros((buffer_size, D)),
                        jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((num_envs,), jnp.int32),
                        jnp.full((num_envs,), window, jnp.int32), jnp.zeros((num_envs,)), jnp.zeros((), jnp.int32), k2)

    def learn(state, key):
        return _dqn_learn(net, tx, state, key, batch_size=batch_size, gamma=gamma, double=double)

    def one_iter(state, bank: Bank, alpha, offset):
        key, k_eps, k_act, k_reset, k_learn = jax.random.split(state.key, 5)
        L = bank.close.shape[1] - 1
        feats, close = bank.feats[state.env_n], bank.close[state.env_n]          # [E, L+1, F], [E, L+1]
        obs = jax.vmap(observe, in_axes=(0, 0, 0, None))(feats, state.env_t, state.env_pos, window)
        eps = epsilon_schedule(state.step, end=eps_end, decay_steps=eps_decay_iters)
        greedy = jnp.argmax(net.apply(state.params, obs), axis=-1)
        rand = jax.random.randint(k_act, (num_envs,), 0, NUM_ACTIONS)
        act = jnp.where(jax.random.uniform(k_eps, (num_envs,)) < eps, rand, greedy).astype(jnp.int32)
        es = env_lib.EnvState(state.env_t, state.env_pos, jnp.ones((num_envs,)))
        es2, rew = jax.vmap(lambda s, a, p: env_lib.step(s, a, p, cost=cost, mode=cost_mode))(es, act, close)
        nxt = jax.vmap(observe, in_axes=(0, 0, 0, None))(feats, es2.t, es2.pos, window)
        ptr = state.ptr
        st = state._replace(
            buf_obs=jax.lax.dynamic_update_slice_in_dim(state.buf_obs, obs, ptr, 0),
            buf_act=jax.lax.dynamic_update_slice_in_dim(state.buf_act, act, ptr, 0),
            buf_rew=jax.lax.dynamic_update_slice_in_dim(state.buf_rew, reward_scale * rew, ptr, 0),
            buf_next=jax.lax.dynamic_update_slice_in_dim(state.buf_next, nxt, ptr, 0),
            ptr=(ptr + num_envs) % buffer_size, buf_size=jnp.minimum(state.buf_size + num_envs, buffer_size))
        done = es2.t >= L
        new_n = _sample_windows(k_reset, num_envs, alpha, offset, bank.close.shape[0])
        st = st._replace(env_n=jnp.where(done, new_n, state.env_n), env_t=jnp.where(done, window, es2.t),
                         env_pos=jnp.where(done, 0.0, es2.pos), step=state.step + 1, key=key)
        do_learn = (st.buf_size >= learning_starts) & (state.step % train_every == 0)
        st, loss = jax.lax.cond(do_learn, lambda s: learn(s, k_learn), lambda s: (s, jnp.zeros(())), st)
        st = st._replace(target=jax.tree_util.tree_map(
            lambda t, p: jnp.where(st.step % target_every == 0, p, t), st.target, st.params))
        return st, loss

    def train_chunk(state, bank: Bank, alpha, offset, iters: int):
        """iters environment iterations (num_envs transitions each) as one lax.scan."""
        def body(s, _):
            return one_iter(s, bank, alpha, offset)
        state, losses = jax.lax.scan(body, state, None, length=iters)
        return state, jnp.mean(losses)

    def act(params, obs_bd):
        return jnp.argmax(net.apply(params, obs_bd), axis=-1)

    def evaluate(params, x_dstf, y_ds, fmu, fsd):
        """Greedy policy on consecutive days (`evaluate_greedy`) -> (strategy metrics, actions [D, S])."""
        return evaluate_greedy(act, params, x_dstf, y_ds, fmu, fsd, window=window, cost=cost, cost_mode=cost_mode)

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
