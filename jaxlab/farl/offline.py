"""Offline data (scripted task / failure / recovery demonstrations) and offline pretraining.

Data: vmapped, scanned rollouts of scripted controllers in the FailureBench envs, flattened to transitions
(obs, action, reward, cost, done, trunc, next_obs, recovery flag) as NumPy-ready arrays.
Pretraining: task policy by BC then a Uni-O4-style offline clipped objective (advantage = Monte-Carlo return
minus a fitted value); recovery policy by BC on recovery segments; world-model ensemble (next obs, reward,
failure logit, class-weighted BCE); Recovery RL twin risk critics fitted offline with the safety Bellman target.
Every fit is one `loop.Trainer` (`fit_trainer`: minibatch Adam, `FitHParams`; the twin critics add their target
critics as the state's extra) scanned by `loop.scan_steps`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import loop
from jaxlab.farl.envs import demo_action, retreat_action, scripted_push_action
from jaxlab.farl import losses
from jaxlab.farl.ppo import POLICY, TWIN, VALUE, WM_MEMBER, gaussian_logp
from jaxlab.farl.safety import safety_bellman_target


def _failure_action(task, obs, k):
    """An over-eager demonstrator: pushes 4x harder, straight at the goal (through the vase's line)."""
    del task, k
    return scripted_push_action(obs, push_gain=8.0)


KINDS = ("task", "failure", "recovery")


def collect_mixed(env, key, kind_n, *, steps: int, noise: float, task_noise: float | None = None):
    """Rolls out scripted controllers, one per env, in ONE vmapped scan (one compiled env step for all kinds).

    kind_n: [N] int in {0 task (demonstrator), 1 failure (over-eager pusher), 2 recovery (over-eager for a random
    number of steps in [3, 20), then the retreat controller; `rec` marks the retreat steps; after its first episode
    ends the env stops being a recovery demo)}. Gaussian action noise `noise` (`task_noise` for kind 0, default
    noise/2; none on retreat steps). Returns time-major transitions: dict of [T, N, ...] arrays.
    """
    task = env.task
    kind_n = jnp.asarray(kind_n, jnp.int32)
    n = kind_n.shape[0]
    task_noise = 0.5 * noise if task_noise is None else task_noise
    sigma = jnp.where(kind_n == 0, task_noise, noise)[:, None]
    k_reset, k_switch, k_roll = jax.random.split(key, 3)
    state = jax.vmap(env.reset)(jax.random.split(k_reset, n))
    switch_t = jax.random.randint(k_switch, (n,), 3, 20)

    def step(carry, k):
        s, t = carry
        a_demo = jax.vmap(lambda o: demo_action(task, o))(s.obs)
        a_fail = jax.vmap(lambda o: _failure_action(task, o, None))(s.obs)
        rec = ((kind_n == 2) & (t >= switch_t)).astype(jnp.float32)
        a = jnp.where(kind_n[:, None] == 0, a_demo, a_fail)
        a = jnp.where(rec[:, None] > 0, jax.vmap(retreat_action)(s.obs), a)
        a = jnp.clip(a + sigma * jax.random.normal(k, a.shape) * (1.0 - rec[:, None]), -1.0, 1.0)
        nxt = jax.vmap(env.step)(s, a)
        tr = dict(obs=s.obs, action=a, reward=nxt.reward, cost=nxt.info["cost"], done=nxt.done,
                  trunc=nxt.info["truncation"], next_obs=nxt.info["terminal_obs"], rec=rec)
        t_next = jnp.where((kind_n == 2) & (nxt.done > 0), -(10**6), t + 1)
        return (nxt, t_next), tr

    _, traj = jax.lax.scan(step, (state, jnp.zeros(n, jnp.int32)), jax.random.split(k_roll, steps))
    return traj


def collect(env, key, *, kind: str, num_envs: int, steps: int, noise: float):
    """`collect_mixed` with every env running the controller `kind` ("task", "failure" or "recovery"); noise is
    used as given for every kind. Returns time-major transitions dict of [T, N, ...] arrays."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'task', 'failure' or 'recovery', got {kind!r}")
    return collect_mixed(env, key, jnp.full((num_envs,), KINDS.index(kind)), steps=steps, noise=noise,
                         task_noise=noise)


def flatten(traj):
    return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), traj)


class FitHParams(NamedTuple):
    """Minibatch Adam of an offline fit: `steps` updates at learning rate `lr`, each on `batch` rows drawn
    uniformly with replacement."""
    steps: int = 2000
    batch: int = 256
    lr: float = 1e-3


def _fit_init(key, *, params: loop.Static, hp: FitHParams) -> loop.TrainState:
    """Fresh Adam state for `params`; key: the [steps, 2] per-step keys split from `key` (step i draws its
    minibatch with key[i], so a fit split into chunks or resumed draws the same minibatches)."""
    p = params.value
    return loop.TrainState(params=p, opt_state=optax.adam(hp.lr).init(p), step=jnp.zeros((), jnp.int32),
                           key=jax.random.split(key, hp.steps))


def _minibatch(state: loop.TrainState, rows, batch: int):
    """`batch` rows of `rows` (dict of [N, ...]) drawn uniformly with this step's key."""
    n = jax.tree.leaves(rows)[0].shape[0]
    idx = jax.random.randint(state.key[state.step], (batch,), 0, n)
    return jax.tree.map(lambda x: x[idx], rows)


def _adam_update(state: loop.TrainState, grads, lr: float) -> loop.TrainState:
    updates, opt_state = optax.adam(lr).update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state, step=state.step + 1)


def _fit_step(state: loop.TrainState, rows, *, loss_fn, hp: FitHParams):
    """One Adam step of `loss_fn(params, minibatch)` -> (state, {"loss"})."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, _minibatch(state, rows, hp.batch))
    return _adam_update(state, grads, hp.lr), {"loss": loss}


def fit_trainer(loss_fn, params, hp: FitHParams = FitHParams()) -> loop.Trainer:
    """The shared offline fit as a `loop.Trainer`: `init(key)` starts Adam at `params` (held by identity),
    `step(state, rows)` is one minibatch Adam step of `loss_fn(params, minibatch)` (rows: dict of [N, ...],
    the step's data)."""
    return loop.Trainer(init=loop.bind(_fit_init, params=loop.Static(params), hp=hp),
                        step=loop.bind(_fit_step, loss_fn=loss_fn, hp=hp))


def _run_fit(trainer: loop.Trainer, key, data, steps: int):
    """All `steps` of an offline trainer as one `lax.scan` (`loop.scan_steps`) -> (params, losses [steps])."""
    state, metrics = loop.scan_steps(trainer.init(key), data, step=trainer.step, length=steps)
    return state.params, metrics["loss"]


def _adam_fit(loss_fn, params, data, *, key, steps: int, batch: int, lr: float):
    """Minibatch Adam on `loss_fn(params, minibatch)` (`fit_trainer`), scanned; data: dict of [N, ...] arrays."""
    hp = FitHParams(steps=steps, batch=batch, lr=lr)
    return _run_fit(fit_trainer(loss_fn, params, hp), key, jax.tree.map(jnp.asarray, data), steps)


def bc_policy(key, data, *, steps: int = 2000, batch: int = 256, lr: float = 1e-3, obs_dim: int = 12):
    """Behaviour cloning of the Gaussian policy's mean (MSE); data: obs [N, D], action [N, A]."""
    k_init, k_fit = jax.random.split(key)
    params = POLICY.init(k_init, jnp.zeros((obs_dim,)))
    loss = lambda p, mb: losses.bc_loss(POLICY.apply(p, mb["obs"])[0], mb["action"])
    return _adam_fit(loss, params, {"obs": data["obs"], "action": data["action"]}, key=k_fit, steps=steps,
                     batch=batch, lr=lr)


def fit_value(key, obs, ret, *, steps: int = 2000, batch: int = 256, lr: float = 1e-3):
    k_init, k_fit = jax.random.split(key)
    params = VALUE.init(k_init, jnp.zeros(obs.shape[1:]))
    loss = lambda p, mb: losses.value_loss(VALUE.apply(p, mb["obs"]), mb["ret"])
    return _adam_fit(loss, params, {"obs": obs, "ret": ret}, key=k_fit, steps=steps, batch=batch, lr=lr)


def monte_carlo_returns(traj, *, gamma: float):
    """Discounted returns within episodes (truncations bootstrap nothing), time-major [T, N]."""
    zeros = jnp.zeros_like(traj["reward"])
    _, ret = losses.gae(traj["reward"], zeros, zeros, traj["done"], gamma=gamma, lam=1.0)
    return ret


def offline_ppo(key, pi_params, data, *, epochs: int = 200, batch: int = 512, lr: float = 1e-4,
                clip_eps: float = 0.2):
    """Uni-O4-style offline improvement: clipped ratio against the (frozen) BC policy on the demo data,
    advantage = normalised (MC return - fitted V). data: obs, action, adv [N]."""
    old_mean, old_log_std = POLICY.apply(pi_params, data["obs"])
    logp_old = gaussian_logp(old_mean, old_log_std, data["action"])
    adv = losses.normalize_advantages(data["adv"])
    d = {"obs": data["obs"], "action": data["action"], "adv": adv, "logp": logp_old}

    def loss(p, mb):
        mean, log_std = POLICY.apply(p, mb["obs"])
        return losses.ppo_policy_loss(gaussian_logp(mean, log_std, mb["action"]), mb["logp"], mb["adv"],
                                      jnp.ones_like(mb["adv"]), clip_eps=clip_eps)

    return _adam_fit(loss, pi_params, d, key=key, steps=epochs, batch=batch, lr=lr)


def train_world_model(key, data, *, ensemble: int = 5, steps: int = 3000, batch: int = 256, lr: float = 1e-3,
                      pos_weight: float | None = None):
    """Ensemble of `WorldModelMember`s (params stacked [E, ...]); loss = MSE(delta obs) + MSE(reward) +
    class-weighted BCE(failure). Each member sees its own bootstrap minibatches and initialisation."""
    n_pos = float(np.sum(data["cost"]))
    if pos_weight is None:
        pos_weight = max(1.0, (len(data["cost"]) - n_pos) / max(n_pos, 1.0))
    d = {k: jnp.asarray(data[k]) for k in ("obs", "action", "reward", "cost", "next_obs")}

    def loss(p, mb):
        delta, r, logit = WM_MEMBER.apply(p, mb["obs"], mb["action"])
        return losses.world_model_loss(delta, r, logit, mb["obs"], mb["next_obs"], mb["reward"], mb["cost"],
                                       pos_weight=pos_weight)

    def one(k):
        k_init, k_fit = jax.random.split(k)
        p = WM_MEMBER.init(k_init, jnp.zeros((12,)), jnp.zeros((2,)))
        return _adam_fit(loss, p, d, key=k_fit, steps=steps, batch=batch, lr=lr)

    return jax.vmap(one)(jax.random.split(key, ensemble))


def wm_predict(wm_params, obs, action):
    """Ensemble predictions for a batch: obs [N, D], action [N, A] -> (next obs [E, N, D], fail prob [E, N])."""
    delta, _, logit = jax.vmap(lambda p: WM_MEMBER.apply(p, obs, action))(wm_params)
    return obs[None] + delta, jax.nn.sigmoid(logit)


def train_twin_risk(key, data, pi_params, *, gamma_safe: float = 0.8, steps: int = 3000, batch: int = 256,
                    lr: float = 1e-3, tau: float = 0.005):
    """Recovery RL's model-free risk critics, fitted offline: y = c + (1-c)(1-term) gamma_safe max(Q1',Q2')(s', a'),
    a' = task policy mean at s'; termination = failure only (truncation bootstraps). Soft target update."""
    k_init, k_fit = jax.random.split(key)
    params = TWIN.init(k_init, jnp.zeros((12,)), jnp.zeros((2,)))
    d = {k: jnp.asarray(data[k]) for k in ("obs", "action", "cost", "next_obs")}
    hp = FitHParams(steps=steps, batch=batch, lr=lr)
    trainer = loop.Trainer(init=loop.bind(_twin_init, params=loop.Static(params), hp=hp),
                           step=loop.bind(_twin_step, hp=hp, gamma_safe=gamma_safe, tau=tau))
    return _run_fit(trainer, k_fit, {"rows": d, "pi": pi_params}, steps)


def _twin_init(key, *, params: loop.Static, hp: FitHParams) -> loop.TrainState:
    """`_fit_init` plus the target critics (extra, starting at `params`)."""
    return _fit_init(key, params=params, hp=hp).replace(extra=params.value)


def _twin_step(state: loop.TrainState, data, *, hp: FitHParams, gamma_safe: float, tau: float):
    """One Adam step of the twin risk critics on the safety Bellman target of the target critics (state.extra),
    then the soft target update. data: {"rows", "pi": task policy}."""
    mb = _minibatch(state, data["rows"], hp.batch)
    a_next = POLICY.apply(data["pi"], mb["next_obs"])[0]
    q_next = jnp.max(TWIN.apply(state.extra, mb["next_obs"], a_next), -1)
    y = safety_bellman_target(mb["cost"], q_next, mb["cost"], gamma_safe=gamma_safe)
    loss_fn = lambda p: losses.risk_critic_loss(TWIN.apply(p, mb["obs"], mb["action"]), y)
    loss, g = jax.value_and_grad(loss_fn)(state.params)
    state = _adam_update(state, g, hp.lr)
    tgt = jax.tree.map(lambda a, b: (1 - tau) * a + tau * b, state.extra, state.params)
    return state.replace(extra=tgt), {"loss": loss}


def make_datasets(env, key, *, num_envs: int = 32, steps: int = 100, noise: float = 0.3):
    """Task, failure and recovery demonstrations, `num_envs` envs each, from one mixed vmapped rollout.

    Returns {"task"|"failure"|"recovery": time-major dict of [T, num_envs, ...] arrays}.
    """
    kinds = jnp.repeat(jnp.arange(3), num_envs)
    traj = collect_mixed(env, key, kinds, steps=steps, noise=noise)
    return {name: jax.tree.map(lambda x, i=i: x[:, i * num_envs:(i + 1) * num_envs], traj)
            for i, name in enumerate(KINDS)}


def pretrain(key, raw, *, gamma: float = 0.99, gamma_safe: float = 0.8, bc_steps: int = 2000,
             wm_steps: int = 3000, q_steps: int = 3000, offline_ppo_steps: int = 200, ensemble: int = 5):
    """Offline stage: returns dict pi, v, rec, wm, q (the `pre` argument of `make_train`) and fit losses."""
    ks = jax.random.split(key, 6)
    flat = {k: flatten(v) for k, v in raw.items()}
    task = flat["task"]
    pi, l_bc = jax.jit(bc_policy, static_argnames="steps")(ks[0], task, steps=bc_steps)
    ret_task = flatten({"r": monte_carlo_returns(raw["task"], gamma=gamma)})["r"]
    v, _ = fit_value(ks[1], task["obs"], ret_task, steps=bc_steps)
    adv = ret_task - np.asarray(VALUE.apply(v, task["obs"]))
    pi, _ = offline_ppo(ks[2], pi, {"obs": task["obs"], "action": task["action"], "adv": jnp.asarray(adv)},
                        epochs=offline_ppo_steps)
    rec_sel = flat["recovery"]["rec"] > 0
    rec, l_rec = bc_policy(ks[3], {"obs": flat["recovery"]["obs"][rec_sel], "action": flat["recovery"]["action"][rec_sel]},
                           steps=bc_steps)
    all_data = {k: np.concatenate([flat[s][k] for s in flat]) for k in task}
    (wm, l_wm) = train_world_model(ks[4], all_data, ensemble=ensemble, steps=wm_steps)
    q, l_q = train_twin_risk(ks[5], all_data, pi, gamma_safe=gamma_safe, steps=q_steps)
    return {"pi": pi, "v": v, "rec": rec, "wm": wm, "q": q}, {"bc": l_bc[-1], "rec": l_rec[-1],
                                                              "wm": l_wm[:, -1].mean(), "q": l_q[-1]}
