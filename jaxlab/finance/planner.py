"""Scheduler (Alg. 3) and the bilevel planner update with a one-step unrolled hypergradient (eq. 13-18).

The hypergradient is `jax.grad` of `hyper_objective` w.r.t. phi: one functional SGD step of the task
parameters on the *expected* augmentation sum_q p_q M_q(x, lam_q) (eq. 16), followed by the risk-aware
validation loss mean + gamma * std (eq. 15). No `higher`-style machinery: theta' is an ordinary pytree.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.finance.metrics import risk_aware_loss


def scheduler_alpha(epoch, *, tau=5.0, reward=1.0):
    """Alg. 3 proportion alpha = min(tanh(E / tau) + 0.01, 1) * R (MADAug's split_rate ramp)."""
    if tau <= 0:
        raise ValueError(f"tau: expected > 0, got {tau}")
    return min(float(np.tanh(epoch / tau)) + 0.01, 1.0) * reward


def scheduler_update(es_counter: int, last_es_counter: int) -> tuple[float, int]:
    """Alg. 3 reward: R = 1 if the early-stop counter grew (C_es > C_les) else 0.1; returns (R, C_les')."""
    reward = 1.0 if es_counter > last_es_counter else 0.1
    return reward, es_counter


def expected_augmentation(p_bq, xs_bq, ys_bq):
    """eq. 16: sum_q p_q x_q and sum_q p_q y_q. p_bq: [B, Q]; xs_bq: [B, Q, ...]; ys_bq: [B, Q]."""
    w = p_bq.reshape(p_bq.shape + (1,) * (xs_bq.ndim - 2))
    return jnp.sum(w * xs_bq, axis=1), jnp.sum(p_bq * ys_bq, axis=1)


def sgd_step(theta, grads, eta):
    """theta - eta * grads over a pytree (the virtual step)."""
    return jax.tree_util.tree_map(lambda a, g: a - eta * g, theta, grads)


def hyper_objective(phi, theta, *, policy_fn: Callable, augment_all_fn: Callable, task_losses_fn: Callable,
                    x_val, y_val, eta=1e-3, gamma=0.05):
    """L_val(theta - eta grad L_train(theta, E_p[M(x, lam)])) with the eq. 15 risk term.

    Args:
      phi: planner parameters (differentiated).
      theta: task parameters (held fixed; the virtual step is taken from them).
      policy_fn: phi -> (p [B, Q], lam [B, Q]).
      augment_all_fn: lam [B, Q] -> (xs [B, Q, ...], ys [B, Q]) manipulated training batch for every pair.
      task_losses_fn: (theta, x [B, ...], y [B]) -> per-sample losses [B].
      x_val, y_val: validation batch.
    Returns:
      scalar outer loss.
    """
    p, lam = policy_fn(phi)
    xs, ys = augment_all_fn(lam)
    xx, yy = expected_augmentation(p, xs, ys)
    g = jax.grad(lambda th: jnp.mean(task_losses_fn(th, xx, yy)))(theta)
    theta1 = sgd_step(theta, g, eta)
    return risk_aware_loss(task_losses_fn(theta1, x_val, y_val), gamma=gamma)


def hypergradient(phi, theta, **kw):
    """d hyper_objective / d phi (eq. 18 before averaging is inside the loss)."""
    return jax.grad(hyper_objective)(phi, theta, **kw)
