"""Pure-JAX single-asset trading environment (paper A §V RL protocol; shared with paper B).

State (t, position p, value V). The action is the target position a in {-1, 0, 1} (index 0, 1, 2).
One step: the position held from t-1 earns the market return r_t = P_t / P_{t-1} - 1, then the position
is changed to a and costs are charged on the traded notional:
  paper_A / strict:  cost = c |a - p|            (a flip trades 2x notional)
  code_B:            cost = c |a| if p == 0 (open), c |a| if a flip (new notional only), 0 if closing to flat
reward = p r_t - cost (relative change of portfolio value); V <- V (1 + reward).
`jit(vmap(step))` runs many environments; `rollout` is a `lax.scan` over time.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

COST_MODES = ("paper_A", "code_B", "strict")
ACTIONS = jnp.array([-1.0, 0.0, 1.0])


class EnvState(NamedTuple):
    t: jax.Array       # [] int32 current price index
    pos: jax.Array     # [] float position in {-1, 0, 1}
    value: jax.Array   # [] portfolio value


def reset(t0, *, v0=1.0) -> EnvState:
    return EnvState(jnp.asarray(t0, jnp.int32), jnp.zeros(()), jnp.asarray(v0, jnp.float32))


def trade_cost(pos, target, *, cost=1e-3, mode="paper_A"):
    """Cost of moving from pos to target as a fraction of portfolio value."""
    if mode not in COST_MODES:
        raise ValueError(f"mode: expected one of {COST_MODES}, got {mode!r}")
    if mode in ("paper_A", "strict"):
        return cost * jnp.abs(target - pos)
    opening = (pos == 0) & (target != 0)
    flip = (pos * target) < 0
    return jnp.where(opening | flip, cost * jnp.abs(target), 0.0)


def step(state: EnvState, action, prices_t, *, cost=1e-3, mode="paper_A"):
    """action: [] int in {0, 1, 2}; prices_t: [T] price path. Returns (next state, reward)."""
    t = state.t + 1
    r_mkt = prices_t[t] / prices_t[t - 1] - 1.0
    target = ACTIONS[action]
    reward = state.pos * r_mkt - trade_cost(state.pos, target, cost=cost, mode=mode)
    return EnvState(t, target, state.value * (1.0 + reward)), reward


def rollout(actions_t, prices_t, *, t0=0, cost=1e-3, mode="paper_A"):
    """Runs a fixed action sequence with lax.scan. actions_t: [N]; returns (rewards [N], values [N+1])."""
    def body(s, a):
        s2, r = step(s, a, prices_t, cost=cost, mode=mode)
        return s2, (r, s2.value)
    s0 = reset(t0)
    _, (rew, vals) = jax.lax.scan(body, s0, actions_t)
    return rew, jnp.concatenate([s0.value[None], vals])


def observation(state: EnvState, features_tf, *, window=20):
    """Last `window` feature rows up to t (causal) and the current position: [window * F + 1]."""
    f = jax.lax.dynamic_slice_in_dim(features_tf, state.t - window + 1, window, axis=0)
    return jnp.concatenate([f.reshape(-1), state.pos[None]])
