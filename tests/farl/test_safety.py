"""Closed forms of the safety Bellman target, the H-step risk, the switch and the critic metrics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.farl.safety import (aggregate_ensemble, auroc, discounted_risk, precision_recall, risk_labels,
                                safety_bellman_target, safety_switch, world_model_risk)


def test_bellman_violation_gives_one_whatever_the_bootstrap():
    q = jnp.array([0.0, 0.3, 1.0, 0.7])
    y = safety_bellman_target(jnp.ones(4), q, jnp.array([0.0, 1.0, 0.0, 1.0]), gamma_safe=0.9)
    np.testing.assert_array_equal(np.asarray(y), 1.0)


def test_bellman_truncation_is_not_termination():
    q = jnp.array([0.5, 0.5])
    # terminal=0 (a time-limit truncation) bootstraps, terminal=1 does not
    y = safety_bellman_target(jnp.zeros(2), q, jnp.array([0.0, 1.0]), gamma_safe=0.8)
    np.testing.assert_allclose(np.asarray(y), [0.4, 0.0], rtol=1e-6)


def test_bellman_values_stay_in_unit_interval():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    c = jax.random.bernoulli(k1, 0.3, (1000,))
    q = jax.random.uniform(k2, (1000,))
    term = jax.random.bernoulli(k3, 0.2, (1000,))
    y = np.asarray(safety_bellman_target(c, q, term, gamma_safe=1.0))
    assert y.min() >= 0.0 and y.max() <= 1.0
    with pytest.raises(ValueError, match="gamma_safe"):
        safety_bellman_target(c, q, term, gamma_safe=1.5)


@pytest.mark.parametrize("h", [0, 1, 5, 20])
def test_constant_risk_is_the_geometric_sum(h):
    p, g = 0.07, 0.9
    c = discounted_risk(jnp.full((h + 1,), p), gamma_risk=g)
    np.testing.assert_allclose(float(c), p * (1 - g ** (h + 1)) / (1 - g), rtol=1e-5)


def _toy_model(p_of_action):
    """Deterministic ensemble of 3 members: obs unchanged; member e's failure prob = (e+1)/3 * p(action)."""
    scale = jnp.array([1.0, 2.0, 3.0]) / 3.0

    def step_fn(s, a):
        return s, scale * p_of_action(a)

    return step_fn


def test_world_model_risk_closed_forms():
    p_of_action = lambda a: jnp.where(a[:, 0] > 0.5, 0.6, 0.1)
    policy = lambda s: jnp.zeros((s.shape[0], 2))  # the task policy's actions are safe (p = 0.1)
    obs = jnp.zeros((3, 4))
    risky = jnp.ones((3, 2))
    # H = 0: the one-step failure probability of the proposed action (pessimistic max over members)
    c0 = world_model_risk(_toy_model(p_of_action), policy, obs, risky, horizon=0, gamma_risk=0.9)
    np.testing.assert_allclose(float(c0), 0.6, rtol=1e-6)
    # H = 3: p_0 from the proposed action, then the policy's p = 0.1 discounted
    c3 = world_model_risk(_toy_model(p_of_action), policy, obs, risky, horizon=3, gamma_risk=0.9)
    np.testing.assert_allclose(float(c3), 0.6 + 0.1 * (0.9 + 0.81 + 0.729), rtol=1e-5)
    cm = world_model_risk(_toy_model(p_of_action), policy, obs, risky, horizon=0, gamma_risk=0.9, mode="mean")
    np.testing.assert_allclose(float(cm), 0.6 * 2 / 3, rtol=1e-5)
    with pytest.raises(ValueError, match="horizon"):
        world_model_risk(_toy_model(p_of_action), policy, obs, risky, horizon=-1, gamma_risk=0.9)


def test_aggregate_ensemble_modes():
    v = jnp.array([[0.1, 0.5], [0.3, 0.5]])
    np.testing.assert_allclose(np.asarray(aggregate_ensemble(v)), [0.3, 0.5])
    np.testing.assert_allclose(np.asarray(aggregate_ensemble(v, mode="mean_std", k=2.0)), [0.4, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        aggregate_ensemble(v, mode="min")


def test_switch_threshold_and_limits():
    risk = jnp.array([0.1, 0.3, 0.31])
    a_task, a_rec = jnp.ones((3, 2)), -jnp.ones((3, 2))
    a, flag = safety_switch(risk, a_task, a_rec, eps_safe=0.3)
    np.testing.assert_array_equal(np.asarray(flag), [0, 0, 1])  # C_H <= eps executes the task action
    np.testing.assert_array_equal(np.asarray(a[:, 0]), [1, 1, -1])
    _, f_inf = safety_switch(risk, a_task, a_rec, eps_safe=jnp.inf)
    _, f_minf = safety_switch(risk, a_task, a_rec, eps_safe=-jnp.inf)
    assert float(f_inf.sum()) == 0 and float(f_minf.sum()) == 3


def test_risk_labels_precision_recall_auroc():
    # one env, episodes: [0 0 0 fail] [0 0 trunc] ; H = 1 flags the failing step and the one before it
    cost = jnp.array([0, 0, 0, 1, 0, 0, 0], jnp.float32)[:, None]
    done = jnp.array([0, 0, 0, 1, 0, 0, 1], jnp.float32)[:, None]
    lab = np.asarray(risk_labels(cost, done, horizon=1))[:, 0]
    np.testing.assert_array_equal(lab, [0, 0, 1, 1, 0, 0, 0])
    p, r = precision_recall(jnp.array([0, 1, 1, 0, 0, 0, 0.0]), jnp.asarray(lab))
    np.testing.assert_allclose([float(p), float(r)], [0.5, 0.5])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    # rank formula == the pairwise Mann-Whitney definition (ties 1/2) on random data with many ties
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.3
    pos, neg = s[y], s[~y]
    ref = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    np.testing.assert_allclose(auroc(s, y), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="labels"):
        auroc(np.array([0.5, 0.5]), np.array([1, 1]))
