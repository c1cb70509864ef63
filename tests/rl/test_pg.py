"""jaxlab.rl.pg: hand-computed surrogate values (dual clip, clip-higher), the masked PPO loss against the closure
FARL used before the move, GAE against a NumPy loop, and masked advantage normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.rl import pg
from jaxlab.rl.losses import grpo_loss


def test_clipped_surrogate_hand_values_with_dual_clip():
    ratio = jnp.array([1.5, 0.5, 0.5, 5.0])
    adv = jnp.array([1.0, 1.0, -1.0, -1.0])
    surr, clipped = pg.clipped_surrogate(ratio, adv, clip_eps=0.2)
    np.testing.assert_allclose(surr, [1.2, 0.5, -0.8, -5.0], rtol=1e-6)
    assert clipped.tolist() == [True, False, True, False]      # clip active where the clipped term is the min
    surr, clipped = pg.clipped_surrogate(ratio, adv, clip_eps=0.2, dual_clip=3.0)
    np.testing.assert_allclose(surr, [1.2, 0.5, -0.8, -3.0], rtol=1e-6)   # max(-5, 3 * -1) for A < 0
    assert clipped.tolist() == [True, False, True, True]
    surr, _ = pg.clipped_surrogate(jnp.array([1.5]), jnp.array([1.0]), clip_eps=0.2, clip_eps_high=0.3)
    np.testing.assert_allclose(surr, [1.3], rtol=1e-6)


def _old_farl_loss(logp_new, logp_old, adv, mask, *, clip=0.2):
    rho = jnp.exp(logp_new - logp_old)
    surr = jnp.minimum(rho * adv, jnp.clip(rho, 1.0 - clip, 1.0 + clip) * adv)
    return -jnp.sum(mask * surr) / jnp.maximum(jnp.sum(mask), 1.0)


def test_ppo_policy_loss_equals_the_old_farl_closure_and_reductions():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    lp, lo, adv = (jax.random.normal(k, (64,)) * s for k, s in ((k1, 0.3), (k2, 0.3), (k3, 1.0)))
    mask = (jnp.arange(64) % 3 != 0).astype(jnp.float32)
    np.testing.assert_array_equal(pg.ppo_policy_loss(lp, lo, adv, mask, clip_eps=0.2),
                                  _old_farl_loss(lp, lo, adv, mask, clip=0.2))
    per = pg.ppo_policy_loss(lp, lo, adv, mask, reduction="none")
    assert per.shape == (64,) and float(jnp.abs(per * (1 - mask)).max()) == 0.0       # masked rows give 0
    np.testing.assert_allclose(pg.ppo_policy_loss(lp, lo, adv, mask, reduction="sum"), per.sum(), rtol=1e-6)
    np.testing.assert_allclose(pg.ppo_policy_loss(lp, lo, adv, mask), per.sum() / mask.sum(), rtol=1e-6)
    # an all-zero mask gives 0, not NaN
    assert float(pg.ppo_policy_loss(lp, lo, adv, jnp.zeros(64))) == 0.0


def test_grpo_loss_still_uses_the_shared_surrogate():
    """grpo_loss on one token per sequence equals -mean of the shared surrogate (same clip)."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    lp, lo = jax.random.normal(k1, (8, 1)) * 0.3, jax.random.normal(k2, (8, 1)) * 0.3
    adv = jax.random.normal(k3, (8,))
    out = grpo_loss(lp, lo, adv, jnp.ones((8, 1)), clip_eps=0.2)
    loss = out[0] if isinstance(out, tuple) else out
    surr, _ = pg.clipped_surrogate(jnp.exp(lp - lo)[:, 0], adv, clip_eps=0.2)
    np.testing.assert_allclose(loss, -surr.mean(), rtol=1e-5)


def test_bad_arguments_raise_value_errors():
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match="reduction"):
        pg.ppo_policy_loss(x, x, x, reduction="avg")
    with pytest.raises(ValueError, match="clip_eps"):
        pg.ppo_policy_loss(x, x, x, clip_eps=1.5)
    with pytest.raises(ValueError, match="dual_clip"):
        pg.ppo_policy_loss(x, x, x, dual_clip=0.5)


def test_gae_matches_a_numpy_loop_and_reduces_to_returns():
    rng = np.random.default_rng(0)
    T, N = 7, 3
    r, v, vn = rng.normal(size=(3, T, N))
    d = (rng.uniform(size=(T, N)) < 0.3).astype(np.float64)
    gamma, lam = 0.9, 0.8
    adv_ref = np.zeros((T, N))
    nxt = np.zeros(N)
    for t in reversed(range(T)):
        nxt = r[t] + gamma * vn[t] - v[t] + gamma * lam * (1 - d[t]) * nxt
        adv_ref[t] = nxt
    adv, ret = pg.gae(*map(jnp.asarray, (r, v, vn, d)), gamma=gamma, lam=lam)
    np.testing.assert_allclose(adv, adv_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, adv_ref + v, rtol=1e-5, atol=1e-6)
    z = jnp.zeros((3, 1))
    _, mc = pg.gae(jnp.ones((3, 1)), z, z, z, gamma=0.5, lam=1.0)          # discounted returns 1.75, 1.5, 1
    np.testing.assert_allclose(mc[:, 0], [1.75, 1.5, 1.0], rtol=1e-6)


def test_normalize_advantages_uses_only_the_masked_elements():
    adv = jnp.array([1.0, 2.0, 3.0, 100.0])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    out = pg.normalize_advantages(adv, mask)
    sd = np.sqrt(2 / 3)                                                   # population std of 1, 2, 3
    np.testing.assert_allclose(out[:3], np.array([-1.0, 0.0, 1.0]) / (sd + 1e-8), rtol=1e-6)
    full = pg.normalize_advantages(adv)
    np.testing.assert_array_equal(full, (adv - adv.mean()) / (adv.std() + 1e-8))     # the offline PPO's old form
    m = (jnp.arange(4) < 3).astype(jnp.float32)
    mu = jnp.sum(adv * m) / jnp.maximum(m.sum(), 1.0)                                # the online PPO's old form
    sd = jnp.sqrt(jnp.sum(m * (adv - mu) ** 2) / jnp.maximum(m.sum(), 1.0)) + 1e-8
    np.testing.assert_array_equal(pg.normalize_advantages(adv, m), (adv - mu) / sd)
