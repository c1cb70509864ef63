"""Our PPO over vmapped Brax envs inside `lax.scan`, with an optional safety filter (the FARL arms).

Brax's bundled PPO trainer calls JAX APIs that recent JAX removed, so this is written from scratch in the
purejaxrl style: `make_train(...) -> train(key, arm) -> (state, metrics)`, one jit around a whole iteration
(rollout scan + GAE + epochs of minibatch updates).

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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

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


class TrainState(NamedTuple):
    pi_params: Any
    v_params: Any
    pi_opt: Any
    v_opt: Any
    env_state: Any
    lam: jax.Array
    failures: jax.Array
    key: jax.Array


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


def _ppo_batch(ts: TrainState, tr: dict, env_state, arm, *, gamma: float, gae_lambda: float) -> dict:
    """The flat PPO batch of a rollout tr ([T, N] leaves): GAE on the Lagrangian-shaped reward (r - lam c),
    bootstrapping truncated episodes from their terminal observation; recovery steps masked when
    arm.mask_recovery; advantages normalized over the unmasked steps."""
    v = lambda o: VALUE.apply(ts.v_params, o)
    value_t = v(tr["obs"])
    v_next_obs = jnp.concatenate([value_t[1:], v(env_state.obs)[None]], 0)
    next_value = jnp.where(tr["done"] > 0, tr["trunc"] * v(tr["terminal_obs"]), v_next_obs)
    shaped = tr["reward"] - ts.lam * tr["cost"]
    adv, ret = gae(shaped, value_t, next_value, tr["done"], gamma=gamma, lam=gae_lambda)
    mask = jnp.where(arm.mask_recovery > 0, 1.0 - tr["flag"], 1.0)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    batch = dict(obs=flat(tr["obs"]), action=flat(tr["action"]), logp=flat(tr["logp"]), adv=flat(adv),
                 ret=flat(ret), mask=flat(mask))
    batch["adv"] = normalize_advantages(batch["adv"], batch["mask"])
    return batch


def _iteration_metrics(tr: dict, failures, lam, lp, lv, *, trace: bool) -> dict:
    """Per-iteration scalars (failures, trigger rate, episode return/success over finished episodes, ...)
    and, with trace, the per-step traces."""
    n_done = jnp.maximum(tr["done"].sum(), 1.0)
    metrics = dict(failures=tr["cost"].sum(), cum_failures=failures, trigger_rate=tr["flag"].mean(),
                   reward=tr["reward"].mean(), episodes=tr["done"].sum(),
                   ep_return=tr["ep_done_return"].sum() / n_done, success=tr["ep_success"].sum() / n_done,
                   lam=lam, pi_loss=lp.mean(), v_loss=lv.mean())
    if trace:
        metrics["trace"] = {k: tr[k] for k in ("risk_wm", "risk_q", "cost", "done", "flag", "obs")}
    return metrics


def make_train(env, *, num_envs: int, rollout_len: int, iterations: int, epochs: int = 4,
               minibatches: int = 4, lr: float = 3e-4, gamma: float = 0.99, gae_lambda: float = 0.95,
               clip_eps: float = 0.2, horizon: int = 5, gamma_risk: float = 0.9, cost_budget: float = 0.0,
               risk_mode: str = "max", trace: bool = False, eval_iterations: int = 10):
    """Builds `train(key, arm, pre) -> (TrainState, metrics [iterations])`.

    pre: dict of frozen/pretrained parameters: pi (task policy init), v (value init), rec (recovery policy),
    wm (world-model ensemble, stacked [E, ...]), q (twin risk critic).
    trace: also return per-step traces [iterations, rollout_len, num_envs] in metrics["trace"]: risk_wm (the
    world-model C_H, computed only when arm.critic == 1, else 0), risk_q (max of the twin critics, always
    computed: it is cheap), cost, done, flag, and obs ([..., 12], the observation the step acted on).
    `train.evaluate(key, arm, pre, pi_params) -> dict of scalars`: evaluation on fresh episodes (no learning),
    eval_iterations * rollout_len steps of num_envs envs.
    """
    if num_envs * rollout_len % minibatches:
        raise ValueError(f"minibatches: expected to divide num_envs*rollout_len={num_envs * rollout_len}")
    pi_tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(lr))
    v_tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(lr))
    v_env_step = jax.vmap(env.step)

    def risk_of(arm, pre, pi_params, obs, a_task):
        return _risk_of(arm, pre, pi_params, obs, a_task, horizon=horizon, gamma_risk=gamma_risk, risk_mode=risk_mode)

    def rollout(ts: TrainState, arm, pre):
        def step(carry, _):
            env_state, key = carry
            key, k_act = jax.random.split(key)
            obs = env_state.obs
            mean, log_std = POLICY.apply(ts.pi_params, obs)
            a_task = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
            logp = gaussian_logp(mean, log_std, a_task)
            a_rec = jnp.where(arm.recovery == 0, POLICY.apply(pre["rec"], obs)[0], 0.0)
            risk, r_wm, r_q = risk_of(arm, pre, ts.pi_params, obs, jnp.clip(a_task, -1.0, 1.0))
            action, flag = safety_switch(risk, a_task, a_rec, eps_safe=arm.eps_safe)
            nxt = v_env_step(env_state, jnp.clip(action, -1.0, 1.0))
            tr = dict(obs=obs, action=a_task, logp=logp, reward=nxt.reward, cost=nxt.info["cost"], done=nxt.done,
                      trunc=nxt.info["truncation"], terminal_obs=nxt.info["terminal_obs"], flag=flag, risk=risk,
                      risk_wm=r_wm, risk_q=r_q,
                      ep_done_return=nxt.info["ep_done_return"], ep_success=nxt.info["ep_success"])
            return (nxt, key), tr

        (env_state, key), traj = jax.lax.scan(step, (ts.env_state, ts.key), None, length=rollout_len)
        return env_state, key, traj

    def iteration(ts: TrainState, arm, pre):
        env_state, key, tr = rollout(ts, arm, pre)
        batch = _ppo_batch(ts, tr, env_state, arm, gamma=gamma, gae_lambda=gae_lambda)
        key, k_ep = jax.random.split(key)
        (pi_p, v_p, pi_o, v_o), (lp, lv) = _ppo_epochs(pi_tx, v_tx, (ts.pi_params, ts.v_params, ts.pi_opt, ts.v_opt),
                                                       batch, k_ep, epochs=epochs, minibatches=minibatches,
                                                       clip_eps=clip_eps)
        cost_rate = tr["cost"].mean()
        lam = jnp.maximum(0.0, ts.lam + arm.lagrange_lr * (cost_rate - cost_budget))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(arm.learn > 0, a, b), new, old)
        pi_p, v_p, pi_o, v_o, lam = keep((pi_p, v_p, pi_o, v_o, lam),
                                         (ts.pi_params, ts.v_params, ts.pi_opt, ts.v_opt, ts.lam))
        failures = ts.failures + tr["cost"].sum()
        metrics = _iteration_metrics(tr, failures, lam, lp, lv, trace=trace)
        return TrainState(pi_p, v_p, pi_o, v_o, env_state, lam, failures, key), metrics

    def init(key, pre):
        k_env, k = jax.random.split(key)
        env_state = jax.vmap(env.reset)(jax.random.split(k_env, num_envs))
        return TrainState(pre["pi"], pre["v"], pi_tx.init(pre["pi"]), v_tx.init(pre["v"]), env_state,
                          jnp.zeros(()), jnp.zeros(()), k)

    def train(key, arm: Arm, pre):
        ts = init(key, pre)
        return jax.lax.scan(lambda t, _: iteration(t, arm, pre), ts, None, length=iterations)

    train.init = init
    train.iteration = iteration
    train.evaluate = _make_evaluate(init, rollout, eval_iterations)
    return train


_EVAL_KEYS = ("cost", "done", "flag", "ep_done_return", "ep_success")


def _make_evaluate(init, rollout, eval_iterations: int):
    """`evaluate(key, arm, pre, pi_params) -> dict of scalars`: fresh episodes of the task policy `pi_params`
    (nothing learns): `eval_iterations` rollouts from envs reset with `key`, through the same switch as training
    (arm.eps_safe = +inf: without the filter); see `_eval_metrics`."""
    def evaluate(key, arm: Arm, pre, pi_params):
        ts = init(key, pre)._replace(pi_params=pi_params)

        def body(t, _):
            env_state, k, tr = rollout(t, arm, pre)
            return t._replace(env_state=env_state, key=k), {x: tr[x] for x in _EVAL_KEYS}

        _, tr = jax.lax.scan(body, ts, None, length=eval_iterations)
        return _eval_metrics(tr)
    return evaluate


def _eval_metrics(tr: dict) -> dict:
    """Evaluation scalars from per-step leaves [..., T, N]: failures (sum of costs), finished episodes, mean
    return and success over the finished episodes, trigger rate (share of steps the switch recovered)."""
    n_done = tr["done"].sum()
    per_ep = jnp.maximum(n_done, 1.0)
    return {"failures": tr["cost"].sum(), "episodes": n_done, "return": tr["ep_done_return"].sum() / per_ep,
            "success": tr["ep_success"].sum() / per_ep, "trigger_rate": tr["flag"].mean()}
