"""Dr. MAS advantage functions (spec drmas §8 tests 1-4, 6-7) and the validity mask of group_advantages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.rl import group_advantages, grpo_advantages
from jaxlab.rl.drmas import (ADV_MODES, agent_moments, drmas_advantages, global_step_advantages,
                             grpo_traj_advantages, spike_stats, step_advantages)


def _random_rows(seed, P=4, K=2, n_min=2, n_max=7):
    """Rows with unequal agent counts per prompt and agent-dependent reward distributions."""
    rng = np.random.default_rng(seed)
    r, p, a = [], [], []
    for pi in range(P):
        for k in range(K):
            n = int(rng.integers(n_min, n_max + 1))
            r += list(rng.normal(loc=3.0 * k, scale=1.0 + k, size=n))
            p += [pi] * n
            a += [k] * n
    perm = rng.permutation(len(r))
    return (np.asarray(r, np.float32)[perm], np.asarray(p, np.int32)[perm],
            np.asarray(a, np.int32)[perm])


def test_lemma_identity_global_step_and_drmas_give_one():
    r, p, a = _random_rows(0, P=5, K=3)
    g = np.asarray(global_step_advantages(r, p, num_prompts=5, eps=0.0, ddof=0))
    d = np.asarray(drmas_advantages(r, p, a, num_prompts=5, num_agents=3, eps=0.0, ddof=0))
    for pi in range(5):
        rp = r[p == pi].astype(np.float64)
        mu, var = rp.mean(), rp.var()
        for k in range(3):
            sel = (p == pi) & (a == k)
            rk = r[sel].astype(np.float64)
            factor = (rk.var() + (rk.mean() - mu) ** 2) / var
            np.testing.assert_allclose(np.mean(g[sel] ** 2), factor, rtol=1e-4)
            np.testing.assert_allclose(np.mean(d[sel] ** 2), 1.0, rtol=1e-4)
    m = agent_moments(jnp.asarray(g), r, p, a, num_prompts=5, num_agents=3)
    # the agent with the shifted mean (k = 2, mean 6 vs team ~3) has a Lemma factor far above 1
    assert float(m["lemma"][2]) > 1.5 and np.all(np.asarray(m["count"]) > 0)


def test_drmas_per_group_zero_mean_unit_std_unbiased():
    r, p, a = _random_rows(1)
    d = np.asarray(drmas_advantages(r, p, a, num_prompts=4, num_agents=2, eps=0.0))
    for pi in range(4):
        for k in range(2):
            sel = (p == pi) & (a == k)
            assert abs(d[sel].mean()) < 1e-5
            np.testing.assert_allclose(d[sel].std(ddof=1), 1.0, rtol=1e-4)
            ref = (r[sel] - r[sel].mean()) / (r[sel].std(ddof=1) + 1e-6)
            np.testing.assert_allclose(
                np.asarray(drmas_advantages(r, p, a, num_prompts=4, num_agents=2))[sel], ref,
                rtol=1e-4, atol=1e-5)


def test_one_agent_drmas_equals_global_step():
    r, p, _ = _random_rows(2, K=1)
    a = np.zeros_like(p)
    np.testing.assert_array_equal(
        np.asarray(drmas_advantages(r, p, a, num_prompts=4, num_agents=1)),
        np.asarray(global_step_advantages(r, p, num_prompts=4)))


def test_one_step_per_trajectory_global_step_equals_grpo_traj_and_grpo():
    rng = np.random.default_rng(3)
    P, G = 3, 6
    r = rng.integers(0, 2, size=P * G).astype(np.float32) + rng.normal(size=P * G).astype(np.float32)
    p = np.repeat(np.arange(P), G).astype(np.int32)
    t = np.arange(P * G, dtype=np.int32)
    a = rng.integers(0, 2, size=P * G).astype(np.int32)
    gt = np.asarray(grpo_traj_advantages(r, p, t, num_prompts=P, num_trajs=P * G))
    gs = np.asarray(global_step_advantages(r, p, num_prompts=P))
    np.testing.assert_allclose(gt, gs, atol=1e-6)
    np.testing.assert_allclose(gs, np.asarray(grpo_advantages(r.reshape(P, G))).reshape(-1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(step_advantages("grpo_traj", r, p, a, t, num_prompts=P,
                                                          num_agents=2, num_trajs=P * G)), gt)


def test_grpo_traj_uses_mean_step_reward_and_broadcasts():
    # two trajectories of one prompt: steps (1, 0) and (1,) -> returns 0.5 and 1.0
    r = jnp.array([1.0, 0.0, 1.0])
    p = jnp.array([0, 0, 0])
    t = jnp.array([0, 0, 1])
    adv = np.asarray(grpo_traj_advantages(r, p, t, num_prompts=1, num_trajs=2, eps=0.0))
    s = np.std([0.5, 1.0], ddof=1)
    np.testing.assert_allclose(adv, [-0.25 / s, -0.25 / s, 0.25 / s], rtol=1e-5)


def test_affine_map_of_one_agent_leaves_drmas_unchanged_but_not_global():
    r, p, a = _random_rows(4)
    r2 = np.where(a == 1, 3.0 * r + 5.0, r).astype(np.float32)
    kw = dict(num_prompts=4, num_agents=2, eps=0.0)
    np.testing.assert_allclose(np.asarray(drmas_advantages(r2, p, a, **kw)),
                               np.asarray(drmas_advantages(r, p, a, **kw)), atol=1e-4)
    assert not np.allclose(np.asarray(global_step_advantages(r2, p, num_prompts=4)),
                           np.asarray(global_step_advantages(r, p, num_prompts=4)), atol=1e-2)


def test_permutation_equivariance_and_groups_are_per_prompt():
    r, p, a = _random_rows(5)
    perm = np.random.default_rng(0).permutation(len(r))
    kw = dict(num_prompts=4, num_agents=2)
    d = np.asarray(drmas_advantages(r, p, a, **kw))
    np.testing.assert_allclose(np.asarray(drmas_advantages(r[perm], p[perm], a[perm], **kw)), d[perm],
                               atol=1e-6)
    # changing prompt 0's rewards never changes another prompt's advantages
    r3 = np.where(p == 0, r + 100.0 * (a == 1), r).astype(np.float32)
    d3 = np.asarray(drmas_advantages(r3, p, a, **kw))
    np.testing.assert_array_equal(d3[p != 0], d[p != 0])


def test_singleton_rule_and_equal_rewards():
    r = jnp.array([0.7, 2.0, 2.0, 2.0])
    p = jnp.array([0, 1, 1, 1])
    a = jnp.zeros(4, jnp.int32)
    raw = np.asarray(drmas_advantages(r, p, a, num_prompts=2, num_agents=1, singleton="raw"))
    zero = np.asarray(drmas_advantages(r, p, a, num_prompts=2, num_agents=1, singleton="zero"))
    np.testing.assert_allclose(raw, [0.7, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(zero, [0.0, 0.0, 0.0, 0.0])
    assert np.all(np.isfinite(raw)) and np.all(np.isfinite(zero))


def test_masked_rows_never_change_other_rows():
    r, p, a = _random_rows(6)
    t = np.arange(len(r), dtype=np.int32) % 5 + 5 * p
    valid = np.random.default_rng(1).random(len(r)) < 0.7
    junk = np.where(valid, r, np.float32(1e6)).astype(np.float32)
    junk[np.flatnonzero(~valid)[0]] = np.nan
    kw = dict(num_prompts=4, num_agents=2, num_trajs=20)
    for mode in ADV_MODES:
        full = np.asarray(step_advantages(mode, r, p, a, t, valid, **kw))
        other = np.asarray(step_advantages(mode, junk, p, a, t, valid, **kw))
        np.testing.assert_array_equal(full, other)
        assert np.all(full[~valid] == 0.0) and np.all(np.isfinite(full))
        # and equal to the advantages of the valid rows alone
        alone = np.asarray(step_advantages(mode, r[valid], p[valid], a[valid], t[valid], **kw))
        np.testing.assert_allclose(full[valid], alone, atol=1e-6)


def test_group_advantages_mask_backward_compatible():
    rng = np.random.default_rng(7)
    r = rng.normal(size=12).astype(np.float32)
    ids = np.repeat(np.arange(3), 4)
    np.testing.assert_array_equal(
        np.asarray(group_advantages(r, ids, num_groups=3)),
        np.asarray(group_advantages(r, ids, num_groups=3, valid_n=np.ones(12, bool))))


def test_jit_matches_eager():
    r, p, a = _random_rows(8)
    t = (np.arange(len(r)) % 3 + 3 * p).astype(np.int32)
    for mode in ADV_MODES:
        f = jax.jit(lambda r_, p_, a_, t_: step_advantages(mode, r_, p_, a_, t_, num_prompts=4,
                                                           num_agents=2, num_trajs=12))
        np.testing.assert_allclose(np.asarray(f(r, p, a, t)), np.asarray(
            step_advantages(mode, r, p, a, t, num_prompts=4, num_agents=2, num_trajs=12)), atol=1e-6)


def test_bad_inputs_raise():
    r, p, a = jnp.ones(4), jnp.zeros(4, jnp.int32), jnp.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="mode"):
        step_advantages("vanilla", r, p, a, p, num_prompts=1, num_agents=3, num_trajs=1)
    with pytest.raises(ValueError, match="agent_ids_n"):
        drmas_advantages(r, p, a, num_prompts=1, num_agents=2)
    with pytest.raises(ValueError, match="prompt_ids_n"):
        global_step_advantages(r, p + 3, num_prompts=2)
    with pytest.raises(ValueError, match="singleton"):
        drmas_advantages(r, p, a, num_prompts=1, num_agents=3, singleton="one")
    with pytest.raises(ValueError, match="valid_n"):
        drmas_advantages(r, p, a, jnp.ones(3, bool), num_prompts=1, num_agents=3)


def test_spike_stats_counts_and_share():
    x = np.ones(30)
    x[[10, 20]] = 10.0
    s = spike_stats(x, threshold=5.0)
    assert s["spikes"] == 2 and s["frac_above"] == pytest.approx(2 / 30) and s["median"] == 1.0
