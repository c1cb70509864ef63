"""Group advantages (spec §8 test 10) and host-side diagnostics (spikes, collapse flags)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.rl import collapse_flags, dr_grpo_advantages, group_advantages, grpo_advantages, spike_count


def test_group_advantages_zero_mean_and_unit_std_per_group():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(6, 8))
    a = np.asarray(grpo_advantages(jnp.asarray(r), eps=0.0))
    np.testing.assert_allclose(a.mean(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(a.std(1, ddof=1), 1.0, atol=1e-5)
    a0 = np.asarray(grpo_advantages(jnp.asarray(r), eps=0.0, ddof=0))
    np.testing.assert_allclose(a0, (r - r.mean(1, keepdims=True)) / r.std(1, keepdims=True), atol=1e-5)


def test_equal_rewards_give_zeros_not_nan():
    r = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    a = np.asarray(grpo_advantages(r))
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a[:2], 0.0)
    assert np.all(np.isfinite(np.asarray(grpo_advantages(r[:, :1]))))  # G = 1, ddof = 1


def test_segment_groups_match_dense_and_are_permutation_equivariant():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 2, size=(5, 4)).astype(np.float32)
    dense = np.asarray(grpo_advantages(jnp.asarray(r))).reshape(-1)
    ids = np.repeat(np.arange(5), 4)
    perm = rng.permutation(20)
    seg = np.asarray(group_advantages(jnp.asarray(r.reshape(-1)[perm]), jnp.asarray(ids[perm]), num_groups=5))
    np.testing.assert_allclose(seg, dense[perm], atol=1e-6)


def test_affine_reward_invariance_and_dr_grpo():
    r = jnp.array([[0.0, 1.0, 1.0, 0.0, 1.0]])
    a = grpo_advantages(r, eps=0.0)
    np.testing.assert_allclose(grpo_advantages(3 * r + 7, eps=0.0), a, atol=1e-5)
    np.testing.assert_allclose(dr_grpo_advantages(r), r - 0.6, atol=1e-6)


def test_bad_advantage_inputs_raise():
    with pytest.raises(ValueError, match="rewards_pg"):
        grpo_advantages(jnp.zeros(4))
    with pytest.raises(ValueError, match="group_ids_n"):
        group_advantages(jnp.zeros(4), jnp.zeros(3, int), num_groups=1)
    with pytest.raises(ValueError, match="ddof"):
        grpo_advantages(jnp.zeros((2, 2)), ddof=-1)


def test_spike_count_and_collapse_flags():
    norms = np.ones(50)
    norms[[10, 30]] = 6.0
    norms[31] = 4.0
    assert spike_count(norms) == 2
    acc = np.array([0.3, 0.5, 0.6, 0.4, 0.2, 0.7])
    np.testing.assert_array_equal(collapse_flags(acc), [0, 0, 0, 0, 1, 0])
    ent = np.array([1.0, 1.0, 0.01, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(collapse_flags(acc, ent), [0, 0, 1, 0, 1, 0])
