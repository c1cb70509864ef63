"""FARL's objectives as top-level pure functions (arrays in, arrays out), used by `offline` and `ppo`.

Policy: the masked PPO clipped surrogate (`ppo_policy_loss`, from `jaxlab.rl.pg`, where GAE and advantage
normalisation also live) and behaviour cloning (`bc_loss`); value: `value_loss`; world model: `world_model_loss`
(dynamics + reward + class-weighted failure BCE); risk: `risk_critic_loss` (Recovery RL's twin safety critics
regressed on `safety_bellman_target`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.rl.pg import REDUCTIONS, gae, normalize_advantages, ppo_policy_loss  # noqa: F401  (FARL's PG primitives)
from jaxlab.farl.safety import safety_bellman_target  # noqa: F401


def _reduce(per_row, reduction: str):
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    return jnp.mean(per_row) if reduction == "mean" else per_row


def bc_loss(pred_action_na, action_na, *, reduction: str = "mean"):
    """Behaviour cloning of the policy mean: mean over rows and action dims of (mu(s) - a)^2.

    Args:
      pred_action_na: [N, A] policy means; action_na: [N, A] demonstrated actions.
      reduction: "mean" (scalar, mean over all N * A entries) or "none" ([N, A] squared errors).
    """
    sq = (pred_action_na - action_na) ** 2
    return _reduce(sq, reduction)


def value_loss(value_n, return_n, *, coef: float = 1.0, reduction: str = "mean"):
    """coef * (V(s) - R)^2. value_n, return_n: [N]; returns a scalar ("mean") or [N] ("none").

    The offline value fit uses coef = 1, the online PPO critic coef = 0.5.
    """
    if reduction == "none":
        return coef * (value_n - return_n) ** 2
    return coef * _reduce((value_n - return_n) ** 2, reduction)


def world_model_loss(delta_nd, reward_pred_n, fail_logit_n, obs_nd, next_obs_nd, reward_n, cost_n, *,
                     pos_weight: float, dyn_coef: float = 100.0, fail_coef: float = 10.0, reduction: str = "mean"):
    """One ensemble member's loss: dyn_coef * |delta - (s' - s)|^2 + (r_hat - r)^2 + fail_coef * BCE_w / pos_weight.

    BCE_w = -(pos_weight c log sigma(l) + (1 - c) log sigma(-l)) weights the rare failures (c = 1) up; dividing
    by pos_weight keeps its scale comparable across data sets.

    Args:
      delta_nd: [N, D] predicted state change; reward_pred_n, fail_logit_n: [N] predicted reward and failure logit.
      obs_nd, next_obs_nd: [N, D]; reward_n: [N]; cost_n: [N] failure indicator in {0, 1}.
      pos_weight: weight of the positive class (> 0). dyn_coef, fail_coef: term weights.
      reduction: "mean" (scalar, each term averaged over N) or "none" ([N] per-row loss).
    """
    if pos_weight <= 0:
        raise ValueError(f"pos_weight: expected > 0, got {pos_weight}")
    sq_dyn = jnp.sum((delta_nd - (next_obs_nd - obs_nd)) ** 2, -1)
    sq_r = (reward_pred_n - reward_n) ** 2
    bce = -(pos_weight * cost_n * jax.nn.log_sigmoid(fail_logit_n) + (1 - cost_n) * jax.nn.log_sigmoid(-fail_logit_n))
    if reduction == "none":
        return dyn_coef * sq_dyn + sq_r + bce / pos_weight * fail_coef
    return dyn_coef * _reduce(sq_dyn, reduction) + _reduce(sq_r, reduction) + \
        _reduce(bce, reduction) / pos_weight * fail_coef


def risk_critic_loss(q_nk, target_n, *, reduction: str = "mean"):
    """Twin (K-head) safety-critic regression: sum_k (Q_k(s, a) - y)^2, y from `safety_bellman_target`.

    Args:
      q_nk: [N, K] critic heads; target_n: [N] (held fixed: pass a stop-gradient target).
      reduction: "mean" (scalar) or "none" ([N]).
    """
    return _reduce(jnp.sum((q_nk - target_n[:, None]) ** 2, -1), reduction)


__all__ = ["REDUCTIONS", "bc_loss", "gae", "normalize_advantages", "ppo_policy_loss", "risk_critic_loss",
           "safety_bellman_target", "value_loss", "world_model_loss"]
