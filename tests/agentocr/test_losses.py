"""Compression tag parsing/clamping, the off-by-one of c, the compression reward and GRPO advantages."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.agentocr import losses as L


def test_parse_compression_tags():
    assert L.parse_compression("<compression>1.2</compression>") == 1.2
    assert L.parse_compression("go to shelf 1") == 1.0
    assert L.parse_compression("<compression>abc</compression>") == 1.0
    assert L.parse_compression("<compression>1.5") == 1.0
    assert L.parse_compression("<compression>9</compression>") == 5.0
    assert L.parse_compression("<compression>nan</compression>") == 1.0
    assert L.parse_compression("<compression>inf</compression>") == 1.0
    assert L.parse_compression("<compression>0.3</compression>") == 1.0
    assert L.c_index(1.5) == 2
    with pytest.raises(ValueError, match="c:"):
        L.c_index(1.7)


def test_compression_reward_terms():
    hp = L.CompressionHParams(lam=0.01, every_k=5)
    c = jnp.array([1.0, 1.2, 1.5, 2.0, 3.0])
    on = L.compression_reward(c, jnp.ones(5, bool), iteration=10, hp=hp)
    np.testing.assert_allclose(on, 0.01 * np.log(np.array(c)), rtol=1e-6)
    assert float(on[0]) == 0.0 and np.all(np.diff(np.asarray(on)) > 0)               # 0 at c=1, monotone
    assert np.all(np.asarray(L.compression_reward(c, jnp.zeros(5, bool), iteration=10, hp=hp)) == 0)  # failure
    for it in (1, 2, 3, 4, 6):
        assert np.all(np.asarray(L.compression_reward(c, jnp.ones(5, bool), iteration=it, hp=hp)) == 0)
    with pytest.raises(ValueError, match="every_k"):
        L.compression_reward(c, jnp.ones(5, bool), iteration=0, hp=hp._replace(every_k=0))


def test_step_advantages_zero_sum_equal_scores_and_ln_c_order():
    rng = np.random.default_rng(0)
    scores = jnp.asarray(rng.normal(size=40))
    groups = jnp.asarray(rng.integers(0, 4, 40))
    valid = jnp.asarray(rng.random(40) < 0.8)
    adv = L.step_advantages(scores, groups, valid, num_groups=4)
    for g in range(4):
        sel = np.asarray((groups == g) & valid)
        assert abs(float(adv[sel].sum())) < 1e-4
    assert np.all(np.asarray(adv)[~np.asarray(valid)] == 0)
    flat = L.step_advantages(jnp.full(8, 10.0), jnp.zeros(8, int), jnp.ones(8, bool), num_groups=1)
    assert np.all(np.isfinite(flat)) and np.all(np.asarray(flat) == 0)
    # all-success group: the only variance is lambda ln c, advantages follow ln c
    c = jnp.array([1.0, 1.2, 1.5, 2.0, 3.0, 1.0, 2.0, 1.2])
    s = L.step_scores(jnp.full(8, 10.0), c, jnp.ones(8, bool), iteration=0, hp=L.CompressionHParams())
    adv = np.asarray(L.step_advantages(s, jnp.zeros(8, int), jnp.ones(8, bool), num_groups=1))
    lnc = np.log(np.asarray(c))
    assert np.all(np.sign(adv) == np.sign(lnc - lnc.mean()))
    assert np.all(np.diff(adv[np.argsort(lnc, kind="stable")]) >= -1e-6)


def test_policy_loss_gradient_sign_and_masking():
    adv = jnp.array([1.0, -1.0, 2.0])
    old = jnp.log(jnp.array([0.5, 0.5, 0.5]))
    valid = jnp.array([True, True, False])

    def f(la):
        loss, _ = L.policy_loss(la, old, old, old, adv, valid)
        return loss
    g = jax.grad(f)(old)
    assert g[0] < 0 and g[1] > 0 and g[2] == 0      # raise logp of positive advantage, lower negative
    loss, _ = L.policy_loss(old, old, old, old, adv, valid, learn_c=False)
    assert math.isfinite(float(loss))
