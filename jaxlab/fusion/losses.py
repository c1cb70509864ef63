"""The fusion paper's objectives as top-level pure functions: the diffusion-policy (epsilon-prediction) loss and
the mutual-information objectives of the embedding analysis (InfoNCE and MINE / Donsker-Varadhan).

`policy.make_train` and `mi.estimate_mi` call these; nothing else computes them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxlab.diffusion.schedules import Schedule, q_sample


class MINEHParams(NamedTuple):
    """Hyperparameters of `mine_loss`: the moving-average rate of the denominator E[e^T]."""
    ema: float = 0.99


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")


def eps_prediction_loss(eps_pred, eps, *, reduction: str = "mean"):
    """||eps_pred - eps||^2: the mean over all elements ("mean", scalar) or per sample ("none", [B], the mean
    over the non-batch axes). eps_pred, eps: [B, ...]."""
    _check_reduction(reduction)
    sq = (eps_pred - eps) ** 2
    return jnp.mean(sq) if reduction == "mean" else sq.reshape(sq.shape[0], -1).mean(-1)


def diffusion_policy_loss(eps_fn: Callable, schedule: Schedule, key, x0_bta, *, reduction: str = "mean"):
    """DDPM epsilon-prediction loss of a (conditional) diffusion policy, E_{t, eps} ||eps - eps_fn(x_t, t)||^2.

    t ~ U{0, ..., K-1} and eps ~ N(0, I) per sample from `key`; x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.

    Args:
      eps_fn: (x_t [B, T, A], t [B]) -> predicted eps [B, T, A] (the observation conditioning is closed over).
      schedule: the training noise schedule (K = schedule.num_steps).
      key: PRNG key; x0_bta: [B, T, A] clean normalised action chunks.
      reduction: "mean" (scalar) or "none" ([B]).
    """
    k_t, k_e = jax.random.split(key)
    t = jax.random.randint(k_t, (x0_bta.shape[0],), 0, schedule.num_steps)
    eps = jax.random.normal(k_e, x0_bta.shape)
    return eps_prediction_loss(eps_fn(q_sample(schedule, x0_bta, t, eps), t), eps, reduction=reduction)


def infonce_bound(scores_nn, *, reduction: str = "mean"):
    """InfoNCE lower bound log N + mean_i [S_ii - logsumexp_j S_ij]; at most log N. scores_nn: [N, N] critic
    scores S[i, j] = T(z_i, y_j). "none" returns the per-row terms [N] (their mean is the bound)."""
    _check_reduction(reduction)
    n = scores_nn.shape[0]
    if reduction == "none":
        return jnp.log(n) + (jnp.diag(scores_nn) - jax.nn.logsumexp(scores_nn, axis=1))
    return jnp.log(n) + jnp.mean(jnp.diag(scores_nn) - jax.nn.logsumexp(scores_nn, axis=1))


def infonce_loss(scores_nn, *, reduction: str = "mean"):
    """-infonce_bound(scores_nn): the critic's training loss. scores_nn: [N, N]; scalar or [N] ("none")."""
    return -infonce_bound(scores_nn, reduction=reduction)


def dv_bound(scores_nn):
    """Donsker-Varadhan bound mean_i S_ii - log mean_{i != j} exp S_ij (off-diagonal pairs = product of marginals).
    scores_nn: [N, N]; returns a scalar (a log of a batch mean has no per-row form)."""
    n = scores_nn.shape[0]
    off = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, scores_nn)
    return jnp.mean(jnp.diag(scores_nn)) - (jax.nn.logsumexp(off) - jnp.log(n * (n - 1)))


def mine_loss(scores_nn, moving_avg, *, ema: float = MINEHParams.ema):
    """MINE's training loss with the bias-corrected gradient (Belghazi et al. 2018, Sec. 3.2).

    loss = -(mean_i S_ii - m_i / ma), m = mean_{i != j} exp S_ij, ma <- ema ma + (1 - ema) stop_grad(m): its
    gradient is d/dtheta E_joint[T] - (d/dtheta E_marg[e^T]) / ma, the DV gradient with the denominator
    E[e^T] replaced by its moving average.

    Args:
      scores_nn: [N, N] critic scores; moving_avg: scalar, the running average of E_marg[e^T] (start at 1).
      ema: the average's decay in [0, 1).
    Returns:
      (scalar loss, updated moving average).
    """
    n = scores_nn.shape[0]
    joint = jnp.mean(jnp.diag(scores_nn))
    off = jnp.where(jnp.eye(n, dtype=bool), 0.0, jnp.exp(scores_nn)).sum() / (n * (n - 1))
    ma = ema * moving_avg + (1 - ema) * jax.lax.stop_gradient(off)
    return -(joint - off / ma), ma


__all__ = ["MINEHParams", "diffusion_policy_loss", "dv_bound", "eps_prediction_loss", "infonce_bound",
           "infonce_loss", "mine_loss"]
