"""Paper A's objectives (and the DQN trader's) as top-level pure functions: the forecaster's task loss, the
planner's hyper-objective and hypergradient (Alg. 2, `planner`), the risk-aware loss (eq. 15, `metrics`) and the
DQN loss and targets. `train`, `planner` and `dqn` call these; the package re-exports them at the top level.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.finance.metrics import risk_aware_loss  # noqa: F401  (eq. 15, re-exported)
from jaxlab.finance.planner import hyper_objective, hypergradient  # noqa: F401  (Alg. 2, re-exported)


class DQNLossHParams(NamedTuple):
    """Hyperparameters of `dqn_loss`."""
    huber_delta: float = 1.0


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")


def forecast_loss(pred_b, y_b, *, y_scale=1.0, reduction: str = "mean"):
    """Squared error of a next-day return forecast in units of the training std: (pred - y / y_scale)^2.

    Args:
      pred_b: [B] model outputs (standardised returns); y_b: [B] raw next-day returns; y_scale: the training
        split's return std (scalar) so that the loss is scale free.
      reduction: "mean" (scalar) or "none" ([B], the per-sample losses the planner's risk term needs).
    """
    _check_reduction(reduction)
    per = (pred_b - y_b / y_scale) ** 2
    return jnp.mean(per) if reduction == "mean" else per


def dqn_targets(rewards_b, discounts_b, q_next_target_ba, q_next_online_ba=None):
    """One-step Q-learning targets y = r + discount * Q_target(s', a*).

    a* = argmax_a Q_target(s', a) (DQN) or argmax_a Q_online(s', a) when `q_next_online_ba` is given
    (double DQN). discounts_b = gamma * (1 - terminal). Targets carry no gradient.
    Args: rewards_b [B], discounts_b [B], q_next_target_ba [B, A], q_next_online_ba [B, A] or None.
    Returns: [B].
    """
    if q_next_online_ba is None:
        v = jnp.max(q_next_target_ba, axis=-1)
    else:
        a = jnp.argmax(q_next_online_ba, axis=-1)
        v = jnp.take_along_axis(q_next_target_ba, a[:, None], axis=-1)[:, 0]
    return jax.lax.stop_gradient(rewards_b + discounts_b * v)


def dqn_loss(q_ba, actions_b, targets_b, *, huber_delta=1.0, reduction: str = "mean"):
    """Huber loss of Q(s, a) against the targets. q_ba [B, A], actions_b [B] int, targets_b [B].

    Returns a scalar ("mean") or [B] ("none")."""
    _check_reduction(reduction)
    q = jnp.take_along_axis(q_ba, actions_b[:, None].astype(jnp.int32), axis=-1)[:, 0]
    per = optax.huber_loss(q, targets_b, delta=huber_delta)
    return jnp.mean(per) if reduction == "mean" else per


__all__ = ["DQNLossHParams", "dqn_loss", "dqn_targets", "forecast_loss", "hyper_objective", "hypergradient",
           "risk_aware_loss"]
