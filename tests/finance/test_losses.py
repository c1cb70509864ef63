"""jaxlab.finance.losses: the front door of paper A's objectives. Hand values, per-sample reductions, and the
identity of the package-level names (the trainer, planner and DQN call these very functions)."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.finance as finance
from jaxlab.finance import dqn, losses, planner, train


def test_forecast_loss_hand_values_and_reduction():
    pred, y = jnp.array([1.0, 0.0, -1.0]), jnp.array([0.02, 0.01, 0.0])
    per = losses.forecast_loss(pred, y, y_scale=0.01, reduction="none")
    np.testing.assert_allclose(per, [1.0, 1.0, 1.0], rtol=1e-5)                 # (1 - 2)^2, (0 - 1)^2, (-1 - 0)^2
    np.testing.assert_allclose(losses.forecast_loss(pred, y, y_scale=0.01), 1.0, rtol=1e-5)
    np.testing.assert_allclose(losses.forecast_loss(pred, y), np.mean((np.asarray(pred) - np.asarray(y)) ** 2),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        losses.forecast_loss(pred, y, reduction="sum")


def test_dqn_loss_reduction_none_is_the_per_sample_huber():
    q = jnp.array([[0.0, 1.0], [2.0, 5.0]])
    a, y = jnp.array([1, 1]), jnp.array([0.5, 2.0])
    per = losses.dqn_loss(q, a, y, reduction="none")
    np.testing.assert_allclose(per, [0.5 * 0.25, 3.0 - 0.5], rtol=1e-6)      # quadratic inside delta, linear out
    np.testing.assert_allclose(losses.dqn_loss(q, a, y), per.mean(), rtol=1e-6)


def test_risk_aware_loss_is_mean_plus_gamma_std():
    l = jnp.array([1.0, 3.0])
    np.testing.assert_allclose(losses.risk_aware_loss(l, gamma=0.5), 2.0 + 0.5 * 1.0, rtol=1e-6)


def test_one_implementation_behind_every_name():
    assert finance.forecast_loss is losses.forecast_loss
    assert finance.dqn_loss is losses.dqn_loss is dqn.dqn_loss
    assert finance.dqn_targets is losses.dqn_targets is dqn.dqn_targets
    assert finance.hyper_objective is losses.hyper_objective is planner.hyper_objective
    assert finance.risk_aware_loss is losses.risk_aware_loss
    assert train.forecast_loss is losses.forecast_loss
