"""Safety critics and the safety switch (FARL arXiv 2601.07821; Recovery RL arXiv 2010.15920).

Pure functions, arrays in and arrays out:

* `safety_bellman_target`  y = c + (1 - c) (1 - terminal) gamma_safe Q'(s', a')   (Recovery RL, pessimistic max of twins)
* `discounted_risk`        C_H = sum_{i=0..H} gamma_risk^i p_i                      (FARL's H-step risk)
* `aggregate_ensemble`     pessimistic aggregation over ensemble members (max, or mean + k std)
* `world_model_risk`       roll a world model H steps under the task policy from a proposed action -> C_H
* `safety_switch`          execute a_task if C_H <= eps_safe else a_rec; returns the recovery flag
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxlab.core.classification import auroc, precision_recall  # noqa: F401  (moved to core)


def safety_bellman_target(cost: jax.Array, q_next: jax.Array, terminal: jax.Array, *,
                          gamma_safe: float) -> jax.Array:
    """Target of the risk critic: y = c + (1 - c) (1 - terminal) gamma_safe Q'(s', a').

    A violation (c = 1) gives y = 1 whatever the bootstrap; `terminal` is true termination only (a time-limit
    truncation is NOT terminal and bootstraps). With c, Q' in [0, 1] and gamma_safe in [0, 1], y stays in [0, 1].

    Args:
      cost: [B] in {0, 1}. q_next: [B] risk of the next state-action (e.g. max over twin target critics).
      terminal: [B] in {0, 1}. gamma_safe: discount in [0, 1].
    Returns:
      [B] targets.

    >>> float(safety_bellman_target(jnp.array(1.), jnp.array(0.3), jnp.array(0.), gamma_safe=0.9))
    1.0
    """
    if not 0.0 <= gamma_safe <= 1.0:
        raise ValueError(f"gamma_safe: expected a value in [0, 1], got {gamma_safe}")
    cost = jnp.asarray(cost, jnp.float32)
    return cost + (1.0 - cost) * (1.0 - jnp.asarray(terminal, jnp.float32)) * gamma_safe * q_next


def discounted_risk(p_h: jax.Array, *, gamma_risk: float, axis: int = -1) -> jax.Array:
    """C_H = sum_{i=0..H} gamma_risk^i p_i along `axis` (p_0 is the failure probability of the proposed action).

    With a constant p this is p (1 - g^(H+1)) / (1 - g); H = 0 (a length-1 axis) gives p_0.
    p_h: [..., H+1, ...] per-step failure probabilities; returns the array with `axis` reduced.
    """
    p_h = jnp.asarray(p_h)
    n = p_h.shape[axis]
    w = gamma_risk ** jnp.arange(n, dtype=p_h.dtype)
    shape = [1] * p_h.ndim
    shape[axis] = n
    return jnp.sum(p_h * w.reshape(shape), axis=axis)


def aggregate_ensemble(values_e: jax.Array, *, mode: str = "max", k: float = 1.0, axis: int = 0) -> jax.Array:
    """Pessimistic aggregation of per-member risks over `axis`: "max", "mean", or "mean_std" (mean + k std)."""
    if mode == "max":
        return jnp.max(values_e, axis=axis)
    if mode == "mean":
        return jnp.mean(values_e, axis=axis)
    if mode == "mean_std":
        return jnp.mean(values_e, axis=axis) + k * jnp.std(values_e, axis=axis)
    raise ValueError(f"mode: expected 'max', 'mean' or 'mean_std', got {mode!r}")


def world_model_risk(step_fn: Callable, policy_fn: Callable, obs: jax.Array, action: jax.Array, *,
                     horizon: int, gamma_risk: float, mode: str = "max", k: float = 1.0) -> jax.Array:
    """FARL's H-step risk of the proposed `action` at `obs`, pessimistic over the ensemble.

    Each member e imagines s_0 = obs, a_0 = action, a_i = policy_fn(s_i) for i >= 1 and
    (s_{i+1}, p_i) = step_fn(s_i, a_i)[e]; C_H^e = sum_{i=0..H} gamma_risk^i p_i; returns aggregate_e C_H^e.

    Args:
      step_fn: (obs [E, D], action [E, A]) -> (next_obs [E, D], fail_prob [E]), member e uses row e.
      policy_fn: obs [E, D] -> action [E, A] (the task policy's mean action, frozen during the query).
      obs: [E, D] (the same observation repeated per member), action: [E, A].
      horizon: H >= 0 (H + 1 failure probabilities are summed).
    Returns:
      scalar risk C_H.
    """
    if horizon < 0:
        raise ValueError(f"horizon: expected >= 0, got {horizon}")

    def body(carry, _):
        s, a = carry
        s_next, p = step_fn(s, a)
        return (s_next, policy_fn(s_next)), p

    _, p_he = jax.lax.scan(body, (obs, action), None, length=horizon + 1)  # [H+1, E]
    return aggregate_ensemble(discounted_risk(p_he, gamma_risk=gamma_risk, axis=0), mode=mode, k=k, axis=0)


def safety_switch(risk: jax.Array, a_task: jax.Array, a_rec: jax.Array, *, eps_safe) -> tuple[jax.Array, jax.Array]:
    """Executes a_task where risk <= eps_safe, else a_rec. risk: [B]; actions [B, A] -> (action [B, A], flag [B]).

    flag = 1 marks a recovery step. eps_safe = +inf never switches (vanilla policy); -inf always recovers.
    """
    flag = (risk > eps_safe).astype(jnp.float32)
    action = jnp.where(flag[..., None] > 0, a_rec, a_task)
    return action, flag


def risk_labels(cost_t: jax.Array, done_t: jax.Array, *, horizon: int) -> jax.Array:
    """Ground truth for critic precision/recall: 1 where a failure happens within the next H+1 steps of the same
    episode (steps t..t+H). cost_t, done_t: [T, ...] time-major; returns [T, ...] float32."""
    def body(carry, x):
        steps_to_fail = carry
        c, d = x
        # steps until the next failure, counted within the episode (a done without cost breaks the chain)
        steps = jnp.where(c > 0, 0, jnp.where(d > 0, 10**6, steps_to_fail + 1))
        return steps, steps
    init = jnp.full(cost_t.shape[1:], 10**6, jnp.int32)
    _, steps = jax.lax.scan(body, init, (cost_t, done_t), reverse=True)
    return (steps <= horizon).astype(jnp.float32)
