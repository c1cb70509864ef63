"""Macro adversary (budget, zero-sum REINFORCE sign) and the quantile belief network (paper B)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.finance import adversary as A
from jaxlab.finance import belief as B


def test_delta_stays_in_the_ball_including_the_tanh_edge():
    u = jnp.concatenate([jax.random.normal(jax.random.PRNGKey(0), (1000, 4)) * 50,
                         jnp.array([[jnp.inf, -jnp.inf, 1e30, -1e30]])])
    for eps in (0.0, 0.1, 0.3, 1.0):
        d = A.project_delta(u, eps=eps)
        assert jnp.max(jnp.abs(d)) <= jnp.float32(eps)       # the bound in the array dtype
    d, _, logp = A.sample_delta(jax.random.PRNGKey(1), jnp.full((64, 4), 5.0), jnp.full((64, 4), 3.0), eps=0.3)
    assert jnp.max(jnp.abs(d)) <= jnp.float32(0.3) and logp.shape == (64,)
    with pytest.raises(ValueError, match="eps"):
        A.project_delta(u, eps=-0.1)


def _bandit_step(zero_sum):
    """delta > 0 hurts the trader: trader return = -delta. One REINFORCE step on the mean."""
    key = jax.random.PRNGKey(0)
    std = 0.5

    def loss(mu):
        u = jax.lax.stop_gradient(mu + std * jax.random.normal(key, (512, 1)))
        delta = A.project_delta(u, eps=0.3)
        logp = A.gaussian_log_prob(u, jnp.broadcast_to(mu, u.shape), jnp.full_like(u, std))
        return A.adversary_reinforce_loss(logp, -delta[:, 0], zero_sum=zero_sum)
    mu0 = jnp.zeros((1,))
    return mu0 - 0.1 * jax.grad(loss)(mu0)


def test_zero_sum_reinforce_moves_the_mean_towards_hurting_the_trader():
    assert float(_bandit_step(True)[0]) > 0.01
    assert float(_bandit_step(False)[0]) < -0.01        # the public code's sign favours the trader


def test_adversary_policy_shapes_and_start():
    pol = A.AdversaryPolicy()
    p = pol.init(jax.random.PRNGKey(0), jnp.zeros((2, 4)))
    mean, std = pol.apply(p, jnp.ones((2, 4)))
    assert mean.shape == (2, 4) and float(jnp.max(jnp.abs(mean))) == 0.0 and bool((std > 0).all())


def test_discounted_returns_closed_form():
    g = A.discounted_returns(jnp.array([[1.0, 1.0, 1.0]]), gamma=0.5)
    np.testing.assert_allclose(np.asarray(g), [[1.75, 1.5, 1.0]], rtol=1e-6)


def test_pinball_closed_form_and_bucket():
    q = jnp.zeros((1, 5))
    assert float(B.pinball_loss(q, jnp.array([1.0]))) == pytest.approx(sum(B.TAUS))
    assert float(B.pinball_loss(q, jnp.array([-1.0]))) == pytest.approx(sum(1 - t for t in B.TAUS))
    qq = jnp.array([[-2.0, -1.0, 0.0, 1.0, 2.0]] * 3)
    np.testing.assert_array_equal(np.asarray(B.belief_bucket(qq, jnp.array([-5.0, 0.2, 1.6]))), [0, 2, 4])
    np.testing.assert_allclose(np.asarray(B.soft_belief(qq, jnp.zeros(3))).sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="q_bk"):
        B.pinball_loss(jnp.zeros((2, 3)), jnp.zeros(2))


@pytest.mark.slow
def test_qbn_pinball_falls_and_covers_90_percent_of_a_standard_normal():
    net = B.QuantileBeliefNet(hidden=8)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 2)))
    tx = optax.adam(3e-2)

    @jax.jit
    def train(params):
        def step(carry, k):
            p, o = carry
            kx, ky = jax.random.split(k)
            x = jax.random.normal(kx, (512, 4, 2))
            y = jax.random.normal(ky, (512,))
            l, g = jax.value_and_grad(lambda p: B.pinball_loss(net.apply(p, x), y))(p)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), l
        (p, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(jax.random.PRNGKey(1), 600))
        return p, losses
    p, losses = train(params)
    assert float(losses[-50:].mean()) < 0.8 * float(losses[:10].mean())
    kx, ky = jax.random.split(jax.random.PRNGKey(2))
    x, y = jax.random.normal(kx, (20000, 4, 2)), jax.random.normal(ky, (20000,))
    q = net.apply(p, x)
    cov = float(B.interval_coverage(q, y))
    assert abs(cov - 0.9) < 0.03, cov
    b = B.belief_bucket(q, y)
    assert int(b.min()) >= 0 and int(b.max()) <= 4
    assert bool((jnp.diff(q, axis=-1) >= 0).all())            # monotone quantiles
