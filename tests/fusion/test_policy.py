"""Diffusion policy plumbing: chunk/window indexing (spec test 7), normalisation (8), bad inputs, a tiny
train + closed-loop rollout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.fusion import policy as PL
from jaxlab.fusion import pour as P


def test_chunk_and_window_indexing():
    To, Tp, Ta = 2, 8, 4
    idx = PL.chunk_indices(5, obs_horizon=To, pred_horizon=Tp, length=60)
    np.testing.assert_array_equal(idx, np.arange(4, 12))
    # executed slice [To-1, To-1+Ta) starts at the current step t
    np.testing.assert_array_equal(idx[To - 1:To - 1 + Ta], [5, 6, 7, 8])
    np.testing.assert_array_equal(PL.chunk_indices(0, obs_horizon=To, pred_horizon=Tp, length=60)[:2], [0, 0])
    np.testing.assert_array_equal(PL.chunk_indices(58, obs_horizon=To, pred_horizon=Tp, length=60)[-3:],
                                  [59, 59, 59])
    np.testing.assert_array_equal(PL.window_indices(0, obs_horizon=To), [0, 0])
    np.testing.assert_array_equal(PL.window_indices(7, obs_horizon=To), [6, 7])


def test_trajectory_dataset_alignment():
    tr = P.rollout_expert(jax.random.PRNGKey(0))
    obs, act = PL.trajectory_dataset(tr, obs_horizon=2, pred_horizon=8)
    assert act.shape == (60, 8, 1) and obs.image.shape == (60, 24, 24, 2) and obs.proprio.shape == (60, 6)
    assert obs.logmel.shape == (60, 26, 32)
    t = 10
    # chunk position To-1 holds the expert action for step t; proprio's last frame is the obs after step t-1
    assert float(act[t, 1, 0]) == float(tr.actions[t])
    np.testing.assert_allclose(obs.proprio[t, 3:], tr.obs.proprio[t - 1])
    np.testing.assert_allclose(obs.proprio[t, :3], tr.obs.proprio[t - 2])
    np.testing.assert_allclose(obs.proprio[0, :3], tr.first_obs.proprio)


def test_action_normalizer_maps_bounds_to_unit_interval():
    n = PL.action_normalizer()
    np.testing.assert_allclose(n.normalize(jnp.array([-0.15, 0.0, 0.15])), [-1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(n.unnormalize(n.normalize(jnp.array([0.07]))), [0.07], atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="action must be in"):
        P.check_action(0.3)
    with pytest.raises(ValueError, match="shape"):
        P.check_action(np.zeros(2))
    P.check_action(-0.15)
    obs = PL.PolicyObs(jnp.zeros((4, 24, 24, 2)), jnp.zeros((4, 26, 32)), jnp.zeros((4, 6)))
    with pytest.raises(ValueError, match="variant"):
        PL.make_train(PL.PolicyConfig(variant="bogus"), (obs, jnp.zeros((4, 8, 1))))
    with pytest.raises(ValueError, match="actions"):
        PL.make_train(PL.PolicyConfig(variant="havp"), (obs, jnp.zeros((4, 5, 1))))


@pytest.mark.slow
def test_tiny_training_reduces_loss_and_rollout_runs():
    cfg = PL.PolicyConfig(variant="havp", batch_size=16, train_steps=40, warmup=5, denoiser="mlp",
                          num_inference_steps=2)
    data = PL.expert_dataset(jax.random.PRNGKey(0), 4, obs_horizon=2, pred_horizon=8)
    net, init, train_chunk = PL.make_train(cfg, data)
    st = init(jax.random.PRNGKey(1))
    st, losses = train_chunk(st, jax.random.PRNGKey(2), 40)
    assert int(st.step) == 40
    assert float(losses[-10:].mean()) < float(losses[:5].mean())
    act = PL.make_policy_fn(net, cfg)
    small = P.PourParams(horizon=8)
    ev = jax.jit(lambda prm, k: PL.rollout_policy(act, prm, k, 3, cfg, small))(st.extra["ema"], jax.random.PRNGKey(3))
    assert ev["success"].shape == (3,) and bool(jnp.all(jnp.isfinite(ev["fill_error"])))
