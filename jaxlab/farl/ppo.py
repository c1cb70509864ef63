"""Our PPO over vmapped Brax envs inside `lax.scan`, with an optional safety filter (the FARL arms).

Brax's bundled PPO trainer calls JAX APIs that recent JAX removed, so this is written from scratch in the
purejaxrl style, on the training contract of `jaxlab.core.loop`: `online_trainer(env, hp, pre)` is a
`loop.Trainer` whose state is a `loop.TrainState` (params and opt_state {"pi", "v"}, the carried key, extra
{"env_state", "lam", "failures"}) and whose step `ppo_step` is one whole PPO iteration (rollout scan + GAE +
epochs of minibatch updates + the Lagrange multiplier), with the arm and the pretrained parameters as the step's
data `(arm, pre)` (a jit argument, so every arm shares one compiled program); `PPOHParams` are its typed
hyperparameters. `run_online` runs it with `loop.run` (chunks of iterations, evaluation cadence, checkpoints
that resume); `make_train(...) -> train(key, arm, pre) -> (state, metrics)` is the same step scanned over all
iterations in one program (the experiment vmaps it over seeds).

An *arm* is a pytree of scalars so that every arm shares one compiled program:
  critic: 0 none (vanilla / PPO-Lagrangian), 1 world-model C_H (FARL), 2 model-free twin Q_risk (Recovery RL)
  recovery: 0 recovery policy, 1 brake (zero action; the FARL-without-recovery ablation)
  eps_safe: switch threshold (+inf never switches)
  lagrange_lr: step size of the Lagrange multiplier on the cost (0 disables PPO-Lagrangian)
  mask_recovery: 1 masks recovery steps out of the policy loss (they still enter GAE and the value loss)
  learn: 0 freezes every parameter (policy, value, multiplier): the program then only rolls out the initial
         policy, which is how eps_safe is validated on held-out rollouts of the pretrained task policy
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.core import loop
from jaxlab.farl.losses import gae, normalize_advantages, ppo_policy_loss, value_loss  # noqa: F401  (gae re-exported)
from jaxlab.farl.networks import GaussianPolicy, TwinRisk, Value, WorldModelMember, gaussian_logp
from jaxlab.farl.safety import safety_switch, world_model_risk

POLICY = GaussianPolicy()
VALUE = Value()
WM_MEMBER = WorldModelMember()
TWIN = TwinRisk()


class Arm(NamedTuple):
    critic: jax.Array
    recovery: jax.Array
    eps_safe: jax.Array
    lagrange_lr: jax.Array
    mask_recovery: jax.Array
    learn: jax.Array


def make_arm(name: str, *, eps_wm: float = 0.3, eps_q: float = 0.3, lagrange_lr: float = 0.5,
             mask_recovery: bool = True, learn: bool = True) -> Arm:
    """The five arms of the experiment by name (vanilla, ppo_lagrangian, recovery_rl, farl, farl_no_rec)."""
    table = {
        "vanilla": (0, 0, jnp.inf, 0.0),
        "ppo_lagrangian": (0, 0, jnp.inf, lagrange_lr),
        "recovery_rl": (2, 0, eps_q, 0.0),
        "farl": (1, 0, eps_wm, 0.0),
        "farl_no_rec": (1, 1, eps_wm, 0.0),
    }
    if name not in table:
        raise ValueError(f"name: expected one of {sorted(table)}, got {name!r}")
    c, r, e, lr = table[name]
    f = lambda v: jnp.asarray(v, jnp.float32)
    return Arm(jnp.asarray(c, jnp.int32), jnp.asarray(r, jnp.int32), f(e), f(lr), f(float(mask_recovery)),
               f(float(learn)))


# ------------------------------------------------------------------------------------------- the helpers
def wm_step(wm_params, obs_e, act_e):
    """World-model ensemble step: member e maps (obs_e[e], act_e[e]) -> (next obs [E, D], failure prob [E])."""
    delta, _, logit = jax.vmap(WM_MEMBER.apply)(wm_params, obs_e, act_e)
    return obs_e + delta, jax.nn.sigmoid(logit)


def wm_risk(wm_params, pi_params, obs, action, *, horizon: int, gamma_risk: float, mode: str = "max"):
    """FARL C_H for one (obs [D], action [A]) with the ensemble (params stacked [E, ...])."""
    n_e = jax.tree.leaves(wm_params)[0].shape[0]
    rep = lambda x: jnp.broadcast_to(x, (n_e,) + x.shape)
    policy = lambda o: POLICY.apply(pi_params, o)[0]
    return world_model_risk(lambda s, a: wm_step(wm_params, s, a), policy, rep(obs), rep(action),
                            horizon=horizon, gamma_risk=gamma_risk, mode=mode)


class PPOHParams(NamedTuple):
    """Hyperparameters of one online PPO iteration (the arm and the pretrained parameters are its data).

    num_envs x rollout_len env steps per iteration, then `epochs` passes of `minibatches` shuffled minibatches
    (Adam at `lr` after global-norm clipping to 0.5, policy and value alike); GAE(gamma, gae_lambda) on the
    reward shaped by the Lagrange multiplier (r - lam c, multiplier step towards `cost_budget` failures per
    step); FARL's C_H over `horizon` world-model steps discounted by `gamma_risk`, aggregated by `risk_mode`
    over the ensemble. trace: also return the per-step traces (see `make_train`)."""
    num_envs: int = 16
    rollout_len: int = 64
    epochs: int = 4
    minibatches: int = 4
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    horizon: int = 5
    gamma_risk: float = 0.9
    cost_budget: float = 0.0
    risk_mode: str = "max"
    trace: bool = False


def check_hparams(hp: PPOHParams) -> None:
    """Raises ValueError when the minibatches do not divide an iteration's num_envs * rollout_len steps."""
    if hp.num_envs * hp.rollout_len % hp.minibatches:
        raise ValueError(f"minibatches: expected to divide num_envs*rollout_len={hp.num_envs * hp.rollout_len}")


def _optimizer(hp: PPOHParams):
    return optax.chain(optax.clip_by_global_norm(0.5), optax.adam(hp.lr))


def ppo_init(key, pre, *, env, hp: PPOHParams) -> loop.TrainState:
    """The online state: the task policy and value from `pre` ({"pi", "v"} with fresh Adam states), num_envs
    envs reset with a key split from `key`, the rest of `key` carried; extra: env_state, lam = 0, failures = 0."""
    k_env, k = jax.random.split(key)
    env_state = jax.vmap(env.reset)(jax.random.split(k_env, hp.num_envs))
    tx = _optimizer(hp)
    return loop.TrainState(params={"pi": pre["pi"], "v": pre["v"]},
                           opt_state={"pi": tx.init(pre["pi"]), "v": tx.init(pre["v"])},
                           step=jnp.zeros((), jnp.int32), key=k,
                           extra={"env_state": env_state, "lam": jnp.zeros(()), "failures": jnp.zeros(())})


def _init_static(key, *, pre: loop.Static, env, hp: PPOHParams) -> loop.TrainState:
    return ppo_init(key, pre.value, env=env, hp=hp)


def _rollout(state: loop.TrainState, arm, pre, *, env, hp: PPOHParams):
    """rollout_len steps of the num_envs envs under the task policy and the arm's safety switch
    -> (env_state, key, per-step dict of [T, N, ...] leaves)."""
    pi_params = state.params["pi"]

    def step(carry, _):
        env_state, key = carry
        key, k_act = jax.random.split(key)
        obs = env_state.obs
        mean, log_std = POLICY.apply(pi_params, obs)
        a_task = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
        logp = gaussian_logp(mean, log_std, a_task)
        a_rec = jnp.where(arm.recovery == 0, POLICY.apply(pre["rec"], obs)[0], 0.0)
        risk, r_wm, r_q = _risk_of(arm, pre, pi_params, obs, jnp.clip(a_task, -1.0, 1.0), horizon=hp.horizon,
                                   gamma_risk=hp.gamma_risk, risk_mode=hp.risk_mode)
        action, flag = safety_switch(risk, a_task, a_rec, eps_safe=arm.eps_safe)
        nxt = jax.vmap(env.step)(env_state, jnp.clip(action, -1.0, 1.0))
        tr = dict(obs=obs, action=a_task, logp=logp, reward=nxt.reward, cost=nxt.info["cost"], done=nxt.done,
                  trunc=nxt.info["truncation"], terminal_obs=nxt.info["terminal_obs"], flag=flag, risk=risk,
                  risk_wm=r_wm, risk_q=r_q,
                  ep_done_return=nxt.info["ep_done_return"], ep_success=nxt.info["ep_success"])
        return (nxt, key), tr

    (env_state, key), traj = jax.lax.scan(step, (state.extra["env_state"], state.key), None,
                                          length=hp.rollout_len)
    return env_state, key, traj


def ppo_step(state: loop.TrainState, data, *, env, hp: PPOHParams) -> tuple[loop.TrainState, dict]:
    """One PPO iteration of the arm: rollout, PPO batch, epochs of policy / value updates, multiplier step;
    with arm.learn == 0 every parameter, optimizer state and the multiplier stay as they were.
    data: (arm, pre). Returns (state, metrics of `_iteration_metrics`; with hp.trace the `trace/<name>` leaves)."""
    arm, pre = data
    env_state, key, tr = _rollout(state, arm, pre, env=env, hp=hp)
    lam0 = state.extra["lam"]
    batch = _ppo_batch(state.params["v"], lam0, tr, env_state, arm, gamma=hp.gamma, gae_lambda=hp.gae_lambda)
    key, k_ep = jax.random.split(key)
    tx = _optimizer(hp)
    old = (state.params["pi"], state.params["v"], state.opt_state["pi"], state.opt_state["v"])
    new, (lp, lv) = _ppo_epochs(tx, tx, old, batch, k_ep, epochs=hp.epochs, minibatches=hp.minibatches,
                                clip_eps=hp.clip_eps)
    cost_rate = tr["cost"].mean()
    lam = jnp.maximum(0.0, lam0 + arm.lagrange_lr * (cost_rate - hp.cost_budget))
    keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(arm.learn > 0, x, y), a, b)
    pi_p, v_p, pi_o, v_o, lam = keep((*new, lam), (*old, lam0))
    failures = state.extra["failures"] + tr["cost"].sum()
    metrics = _iteration_metrics(tr, failures, lam, lp, lv, trace=hp.trace)
    return loop.TrainState(params={"pi": pi_p, "v": v_p}, opt_state={"pi": pi_o, "v": v_o}, step=state.step + 1,
                           key=key, extra={"env_state": env_state, "lam": lam, "failures": failures}), metrics


def _pack_env(state: loop.TrainState) -> loop.TrainState:
    """extra["env_state"] -> the list of its non-empty leaves (orbax cannot save zero-size arrays, and the mjx
    pipeline state holds some, e.g. `act` [N, 0])."""
    leaves = jax.tree.leaves(state.extra["env_state"])
    return state.replace(extra={**state.extra, "env_state": [x for x in leaves if x.size]})


def _unpack_env(state: loop.TrainState, *, env, hp: PPOHParams) -> loop.TrainState:
    """Inverse of `_pack_env`: the env state's structure and its zero-size leaves come from `env.reset`'s shapes."""
    like = jax.eval_shape(lambda k: jax.vmap(env.reset)(jax.random.split(k, hp.num_envs)), jax.random.PRNGKey(0))
    leaves, treedef = jax.tree.flatten(like)
    kept = iter(state.extra["env_state"])
    full = [next(kept) if math.prod(x.shape) else jnp.zeros(x.shape, x.dtype) for x in leaves]
    return state.replace(extra={**state.extra, "env_state": treedef.unflatten(full)})


def _init_packed(key, *, pre: loop.Static, env, hp: PPOHParams) -> loop.TrainState:
    return _pack_env(ppo_init(key, pre.value, env=env, hp=hp))


def _step_packed(state: loop.TrainState, data, *, env, hp: PPOHParams):
    state, metrics = ppo_step(_unpack_env(state, env=env, hp=hp), data, env=env, hp=hp)
    return _pack_env(state), metrics


def online_trainer(env, hp: PPOHParams, pre) -> loop.Trainer:
    """The online PPO as a `loop.Trainer` for `loop.run`: `init(key)` is `ppo_init` from `pre`'s task policy and
    value (held by identity, `loop.Static`), `step(state, (arm, pre))` is `ppo_step`; the state's
    extra["env_state"] holds the env state's non-empty leaves only (so that orbax can checkpoint it; `ppo_step`
    sees the whole env state). Run it with `run_online` or `loop.run(trainer, key, ..., data=(arm, pre))`;
    `loop.vmap_seeds(trainer)` runs several seeds at once."""
    check_hparams(hp)
    return loop.Trainer(init=loop.bind(_init_packed, pre=loop.Static(pre), env=env, hp=hp),
                        step=loop.bind(_step_packed, env=env, hp=hp))


def _risk_of(arm, pre, pi_params, obs, a_task, *, horizon: int, gamma_risk: float, risk_mode: str):
    """-> (risk used by the switch, WM C_H (0 unless critic == 1), twin-critic max) each [N]."""
    def wm(_):
        f = lambda o, a: wm_risk(pre["wm"], pi_params, o, a, horizon=horizon, gamma_risk=gamma_risk,
                                 mode=risk_mode)
        return jax.vmap(f)(obs, a_task)

    r_wm = jax.lax.cond(arm.critic == 1, wm, lambda _: jnp.zeros(obs.shape[0]), None)
    r_q = jnp.max(TWIN.apply(pre["q"], obs, a_task), axis=-1)
    risk = jnp.where(arm.critic == 1, r_wm, jnp.where(arm.critic == 2, r_q, 0.0))
    return risk, r_wm, r_q


def _ppo_epochs(pi_tx, v_tx, params_opts, batch: dict, key, *, epochs: int, minibatches: int, clip_eps: float):
    """`epochs` passes of shuffled minibatch PPO (clipped surrogate) and value updates over the flat batch
    (obs, action, logp, adv, ret, mask; leading axis n). params_opts = (pi, v, pi_opt, v_opt).
    -> (params_opts, (policy losses, value losses) [epochs, minibatches])."""
    n = batch["adv"].shape[0]

    def pi_loss(p, mb):
        mean, log_std = POLICY.apply(p, mb["obs"])
        return ppo_policy_loss(gaussian_logp(mean, log_std, mb["action"]), mb["logp"], mb["adv"], mb["mask"],
                               clip_eps=clip_eps)

    def v_loss(p, mb):
        return value_loss(VALUE.apply(p, mb["obs"]), mb["ret"], coef=0.5)

    def epoch(carry, k):
        perm = jax.random.permutation(k, n)
        mbs = jax.tree.map(lambda x: x[perm].reshape((minibatches, n // minibatches) + x.shape[1:]), batch)

        def mb_step(c, mb):
            pi_p, v_p, pi_o, v_o = c
            lp, gp = jax.value_and_grad(pi_loss)(pi_p, mb)
            lv, gv = jax.value_and_grad(v_loss)(v_p, mb)
            up, pi_o = pi_tx.update(gp, pi_o, pi_p)
            uv, v_o = v_tx.update(gv, v_o, v_p)
            return (optax.apply_updates(pi_p, up), optax.apply_updates(v_p, uv), pi_o, v_o), (lp, lv)

        return jax.lax.scan(mb_step, carry, mbs)

    return jax.lax.scan(epoch, params_opts, jax.random.split(key, epochs))


def _ppo_batch(v_params, lam, tr: dict, env_state, arm, *, gamma: float, gae_lambda: float) -> dict:
    """The flat PPO batch of a rollout tr ([T, N] leaves) under the value `v_params` and the multiplier `lam`:
    GAE on the Lagrangian-shaped reward (r - lam c),
    bootstrapping truncated episodes from their terminal observation; recovery steps masked when
    arm.mask_recovery; advantages normalized over the unmasked steps."""
    v = lambda o: VALUE.apply(v_params, o)
    value_t = v(tr["obs"])
    v_next_obs = jnp.concatenate([value_t[1:], v(env_state.obs)[None]], 0)
    next_value = jnp.where(tr["done"] > 0, tr["trunc"] * v(tr["terminal_obs"]), v_next_obs)
    shaped = tr["reward"] - lam * tr["cost"]
    adv, ret = gae(shaped, value_t, next_value, tr["done"], gamma=gamma, lam=gae_lambda)
    mask = jnp.where(arm.mask_recovery > 0, 1.0 - tr["flag"], 1.0)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    batch = dict(obs=flat(tr["obs"]), action=flat(tr["action"]), logp=flat(tr["logp"]), adv=flat(adv),
                 ret=flat(ret), mask=flat(mask))
    batch["adv"] = normalize_advantages(batch["adv"], batch["mask"])
    return batch


def _iteration_metrics(tr: dict, failures, lam, lp, lv, *, trace: bool) -> dict:
    """Per-iteration scalars (failures, trigger rate, episode return/success over finished episodes, ...)
    and, with trace, the per-step traces (`trace/<name>`, [T, N, ...])."""
    n_done = jnp.maximum(tr["done"].sum(), 1.0)
    metrics = dict(failures=tr["cost"].sum(), cum_failures=failures, trigger_rate=tr["flag"].mean(),
                   reward=tr["reward"].mean(), episodes=tr["done"].sum(),
                   ep_return=tr["ep_done_return"].sum() / n_done, success=tr["ep_success"].sum() / n_done,
                   lam=lam, pi_loss=lp.mean(), v_loss=lv.mean())
    if trace:
        metrics.update({f"trace/{k}": tr[k] for k in ("risk_wm", "risk_q", "cost", "done", "flag", "obs")})
    return metrics


def _nest_trace(metrics: dict) -> dict:
    """`trace/<name>` leaves of a step's metrics -> metrics["trace"][<name>] (the `make_train` layout)."""
    out = {k: v for k, v in metrics.items() if not k.startswith("trace/")}
    trace = {k[len("trace/"):]: v for k, v in metrics.items() if k.startswith("trace/")}
    if trace:
        out["trace"] = trace
    return out


@dataclasses.dataclass(frozen=True, eq=False)   # a callable jax.jit can weak-reference (a NamedTuple cannot)
class OnlineTrain:
    """What `make_train` returns: callable as `train(key, arm, pre) -> (loop.TrainState, metrics [iterations])`
    (one `lax.scan`; jit/vmap it), with `init(key, pre) -> state`, `iteration(state, arm, pre) -> (state,
    metrics)` (one PPO iteration), `evaluate(key, arm, pre, pi_params) -> dict of scalars` and the `hparams`."""
    run: Callable
    init: Callable
    iteration: Callable
    evaluate: Callable
    hparams: Any

    def __call__(self, key, arm, pre):
        return self.run(key, arm, pre)


def make_train(env, *, num_envs: int, rollout_len: int, iterations: int, epochs: int = 4,
               minibatches: int = 4, lr: float = 3e-4, gamma: float = 0.99, gae_lambda: float = 0.95,
               clip_eps: float = 0.2, horizon: int = 5, gamma_risk: float = 0.9, cost_budget: float = 0.0,
               risk_mode: str = "max", trace: bool = False, eval_iterations: int = 10):
    """Builds `train(key, arm, pre) -> (loop.TrainState, metrics [iterations])`: `ppo_init` then `iterations`
    `ppo_step`s in one `lax.scan` (`loop.scan_steps`), so `jax.jit(jax.vmap(train, in_axes=(0, None, None)))`
    is one program for all seeds and arms. The keywords are the fields of `PPOHParams` (train.hparams).

    pre: dict of frozen/pretrained parameters: pi (task policy init), v (value init), rec (recovery policy),
    wm (world-model ensemble, stacked [E, ...]), q (twin risk critic).
    trace: also return per-step traces [iterations, rollout_len, num_envs] in metrics["trace"]: risk_wm (the
    world-model C_H, computed only when arm.critic == 1, else 0), risk_q (max of the twin critics, always
    computed: it is cheap), cost, done, flag, and obs ([..., 12], the observation the step acted on).
    `train.init(key, pre) -> state`, `train.iteration(state, arm, pre) -> (state, metrics)`: one iteration.
    `train.evaluate(key, arm, pre, pi_params) -> dict of scalars`: evaluation on fresh episodes (no learning),
    eval_iterations * rollout_len steps of num_envs envs.
    """
    hp = PPOHParams(num_envs=num_envs, rollout_len=rollout_len, epochs=epochs, minibatches=minibatches, lr=lr,
                    gamma=gamma, gae_lambda=gae_lambda, clip_eps=clip_eps, horizon=horizon, gamma_risk=gamma_risk,
                    cost_budget=cost_budget, risk_mode=risk_mode, trace=trace)
    check_hparams(hp)
    step = loop.bind(ppo_step, env=env, hp=hp)

    def init(key, pre):
        return ppo_init(key, pre, env=env, hp=hp)

    def iteration(state, arm: Arm, pre):
        state, metrics = step(state, (arm, pre))
        return state, _nest_trace(metrics)

    def train(key, arm: Arm, pre):
        state, metrics = loop.scan_steps(init(key, pre), (arm, pre), step=step, length=iterations)
        return state, _nest_trace(metrics)

    return OnlineTrain(run=train, init=init, iteration=iteration, evaluate=_make_evaluate(env, hp, eval_iterations),
                       hparams=hp)


_EVAL_KEYS = ("cost", "done", "flag", "ep_done_return", "ep_success")


def _make_evaluate(env, hp: PPOHParams, eval_iterations: int):
    """`evaluate(key, arm, pre, pi_params) -> dict of scalars`: fresh episodes of the task policy `pi_params`
    (nothing learns): `eval_iterations` rollouts from envs reset with `key`, through the same switch as training
    (arm.eps_safe = +inf: without the filter); see `_eval_metrics`."""
    def evaluate(key, arm: Arm, pre, pi_params):
        state = ppo_init(key, pre, env=env, hp=hp)
        state = state.replace(params={**state.params, "pi": pi_params})

        def body(s, _):
            env_state, k, tr = _rollout(s, arm, pre, env=env, hp=hp)
            return s.replace(key=k, extra={**s.extra, "env_state": env_state}), {x: tr[x] for x in _EVAL_KEYS}

        _, tr = jax.lax.scan(body, state, None, length=eval_iterations)
        return _eval_metrics(tr)
    return evaluate


def run_online(env, key, arm: Arm, pre, *, iterations: int, hp: PPOHParams = PPOHParams(), chunk: int = 10,
               eval_key=None, eval_iterations: int = 10, eval_every: int | None = None,
               ckpt_dir: str | None = None, progress: bool | str = False, **run_kwargs):
    """Online PPO of one arm through `loop.run`: `iterations` PPO iterations in jitted chunks of `chunk`, the
    arm and `pre` a jit argument of each chunk, checkpoints of (state, history) in `ckpt_dir` after every chunk
    (a rerun resumes there). key: [2], or [S, 2] for S seeds at once (`loop.vmap_seeds`; metrics and the
    evaluation then hold [S] values, the evaluation's record their means). With `eval_key` (same shape as
    key), `train.evaluate` of the current task policy runs after every chunk (or every `eval_every`
    iterations). hp.trace must be False (the history holds scalars per iteration).
    Returns (loop.TrainState with the whole env state, history) as `loop.run`."""
    if hp.trace:
        raise ValueError("hp: expected trace=False under run_online (use make_train for the per-step traces)")
    trainer = online_trainer(env, hp, pre)
    seeds = jnp.ndim(key) == 2
    trainer = loop.vmap_seeds(trainer) if seeds else trainer
    eval_fn = None
    if eval_key is not None:
        evaluate = _make_evaluate(env, hp, eval_iterations)
        evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0)) if seeds else evaluate)
        eval_fn = lambda s: {k: jnp.mean(v) for k, v in evaluate(eval_key, arm, pre, s.params["pi"]).items()}
    state, history = loop.run(trainer, key, steps=iterations, chunk=chunk, data=(arm, pre), eval_fn=eval_fn,
                              eval_every=eval_every, ckpt_dir=ckpt_dir, progress=progress, **run_kwargs)
    unpack = functools.partial(_unpack_env, env=env, hp=hp)
    return (jax.vmap(unpack)(state) if seeds else unpack(state)), history


def _eval_metrics(tr: dict) -> dict:
    """Evaluation scalars from per-step leaves [..., T, N]: failures (sum of costs), finished episodes, mean
    return and success over the finished episodes, trigger rate (share of steps the switch recovered)."""
    n_done = tr["done"].sum()
    per_ep = jnp.maximum(n_done, 1.0)
    return {"failures": tr["cost"].sum(), "episodes": n_done, "return": tr["ep_done_return"].sum() / per_ep,
            "success": tr["ep_success"].sum() / per_ep, "trigger_rate": tr["flag"].mean()}
