"""jaxlab.fusion.losses: the diffusion-policy loss equals the substrate's eps loss (same keys), the MI objectives
have their closed-form values, and MINE's loss equals the closure mi.py used before the move."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.fusion as fusion
from jaxlab import diffusion as D
from jaxlab.fusion import losses


def test_diffusion_policy_loss_equals_the_substrate_eps_loss():
    sched = D.make_schedule(20, "cosine")
    x0 = jax.random.normal(jax.random.PRNGKey(0), (6, 4, 1))
    eps_fn = lambda x, t: 0.5 * x + t[:, None, None] / 20.0        # noqa: E731
    key = jax.random.PRNGKey(1)
    np.testing.assert_array_equal(losses.diffusion_policy_loss(eps_fn, sched, key, x0),
                                  D.eps_loss(eps_fn, sched, key, x0))
    per = losses.diffusion_policy_loss(eps_fn, sched, key, x0, reduction="none")
    assert per.shape == (6,)
    np.testing.assert_allclose(per.mean(), D.eps_loss(eps_fn, sched, key, x0), rtol=1e-6)


def test_eps_prediction_loss_hand_value():
    pred = jnp.array([[1.0, 1.0], [0.0, 2.0]])
    np.testing.assert_allclose(losses.eps_prediction_loss(pred, jnp.zeros((2, 2))), 1.5)
    np.testing.assert_allclose(losses.eps_prediction_loss(pred, jnp.zeros((2, 2)), reduction="none"), [1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        losses.eps_prediction_loss(pred, pred, reduction="sum")


def test_infonce_closed_forms():
    n = 8
    assert abs(float(losses.infonce_bound(jnp.zeros((n, n))))) < 1e-6          # uninformative critic: 0
    big = 50.0 * jnp.eye(n)
    np.testing.assert_allclose(losses.infonce_bound(big), np.log(n), rtol=1e-5)  # capped at log N
    s = jax.random.normal(jax.random.PRNGKey(2), (n, n))
    np.testing.assert_allclose(losses.infonce_bound(s, reduction="none").mean(), losses.infonce_bound(s), rtol=1e-6)
    np.testing.assert_allclose(losses.infonce_loss(s), -losses.infonce_bound(s))


def test_dv_bound_closed_form():
    """Diagonal a, off-diagonal b: DV = a - b."""
    n, a, b = 5, 2.0, 0.5
    s = jnp.full((n, n), b) + (a - b) * jnp.eye(n)
    np.testing.assert_allclose(losses.dv_bound(s), a - b, rtol=1e-5)


def test_mine_loss_equals_the_old_closure_value_and_gradient():
    ema = 0.9

    def old(s, ma):
        n = s.shape[0]
        joint = jnp.mean(jnp.diag(s))
        off = jnp.where(jnp.eye(n, dtype=bool), 0.0, jnp.exp(s)).sum() / (n * (n - 1))
        ma = ema * ma + (1 - ema) * jax.lax.stop_gradient(off)
        return -(joint - off / ma), ma

    s = jax.random.normal(jax.random.PRNGKey(3), (6, 6))
    (l_new, ma_new), (l_old, ma_old) = losses.mine_loss(s, 1.3, ema=ema), old(s, 1.3)
    np.testing.assert_array_equal(l_new, l_old)
    np.testing.assert_array_equal(ma_new, ma_old)
    g_new = jax.grad(lambda x: losses.mine_loss(x, 1.3, ema=ema)[0])(s)
    g_old = jax.grad(lambda x: old(x, 1.3)[0])(s)
    np.testing.assert_allclose(g_new, g_old, rtol=1e-6)


def test_losses_are_the_package_front_door():
    for name in ("diffusion_policy_loss", "eps_prediction_loss", "infonce_bound", "infonce_loss", "dv_bound",
                 "mine_loss"):
        assert getattr(fusion, name) is getattr(losses, name)
