"""jaxlab.farl.losses: hand values and equality with the closures the trainers used before the move."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.farl as farl
from jaxlab.farl import losses


def _data(n=32, d=12):
    ks = jax.random.split(jax.random.PRNGKey(0), 7)
    return dict(delta=jax.random.normal(ks[0], (n, d)), r=jax.random.normal(ks[1], (n,)),
                logit=jax.random.normal(ks[2], (n,)) * 3, obs=jax.random.normal(ks[3], (n, d)),
                next_obs=jax.random.normal(ks[4], (n, d)), reward=jax.random.normal(ks[5], (n,)),
                cost=(jax.random.uniform(ks[6], (n,)) < 0.2).astype(jnp.float32))


def test_world_model_loss_equals_the_old_closure_and_per_row_mean():
    b, pw = _data(), 4.0
    l_dyn = jnp.mean(jnp.sum((b["delta"] - (b["next_obs"] - b["obs"])) ** 2, -1))
    l_r = jnp.mean((b["r"] - b["reward"]) ** 2)
    c = b["cost"]
    bce = -(pw * c * jax.nn.log_sigmoid(b["logit"]) + (1 - c) * jax.nn.log_sigmoid(-b["logit"]))
    old = 100.0 * l_dyn + l_r + jnp.mean(bce) / pw * 10.0
    args = (b["delta"], b["r"], b["logit"], b["obs"], b["next_obs"], b["reward"], b["cost"])
    np.testing.assert_array_equal(losses.world_model_loss(*args, pos_weight=pw), old)
    per = losses.world_model_loss(*args, pos_weight=pw, reduction="none")
    assert per.shape == (32,)
    np.testing.assert_allclose(per.mean(), old, rtol=1e-5)
    with pytest.raises(ValueError, match="pos_weight"):
        losses.world_model_loss(*args, pos_weight=0.0)


def test_failure_term_weights_positives_by_pos_weight():
    """A single row with c = 1 and logit 0: BCE_w / pos_weight * fail_coef = log 2 * fail_coef (pos_weight cancels)."""
    z = jnp.zeros((1, 2))
    one = lambda c, pw: losses.world_model_loss(z, jnp.zeros(1), jnp.zeros(1), z, z, jnp.zeros(1), jnp.array([c]),
                                                pos_weight=pw, fail_coef=1.0)
    np.testing.assert_allclose(one(1.0, 5.0), np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(one(0.0, 5.0), np.log(2.0) / 5.0, rtol=1e-6)


def test_bc_value_and_risk_losses_hand_values():
    np.testing.assert_allclose(losses.bc_loss(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 0.0]])), 2.5)
    np.testing.assert_allclose(losses.value_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0])), 5.0)
    np.testing.assert_allclose(losses.value_loss(jnp.array([1.0, 3.0]), jnp.zeros(2), coef=0.5), 2.5)
    np.testing.assert_allclose(losses.value_loss(jnp.array([1.0, 3.0]), jnp.zeros(2), reduction="none"), [1.0, 9.0])
    q = jnp.array([[1.0, 2.0], [0.0, 0.5]])
    np.testing.assert_allclose(losses.risk_critic_loss(q, jnp.array([1.0, 0.5]), reduction="none"), [1.0, 0.25])
    np.testing.assert_allclose(losses.risk_critic_loss(q, jnp.array([1.0, 0.5])), 0.625)
    with pytest.raises(ValueError, match="reduction"):
        losses.bc_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), reduction="sum")


def test_losses_are_the_package_front_door_and_pg_lives_in_rl():
    import jaxlab.rl.pg as pg
    for name in ("bc_loss", "value_loss", "world_model_loss", "risk_critic_loss", "ppo_policy_loss", "gae"):
        assert getattr(farl, name) is getattr(losses, name)
    assert farl.ppo_policy_loss is pg.ppo_policy_loss and farl.gae is pg.gae
