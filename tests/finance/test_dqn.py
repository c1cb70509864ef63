"""DQN trader: target closed forms, loss, schedule, a small learning check on a trend bank, evaluation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import dqn, env


def test_dqn_targets_closed_form_and_double_dqn():
    r = jnp.array([1.0, -0.5, 0.0])
    disc = jnp.array([0.9, 0.9, 0.0])                       # last transition terminal
    q_t = jnp.array([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0], [7.0, 7.0, 7.0]])
    q_o = jnp.array([[5.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(dqn.dqn_targets(r, disc, q_t), [1 + 0.9 * 3, -0.5 + 0.9 * 4, 0.0], rtol=1e-6)
    # double DQN evaluates the online argmax (0, 1, 2) with the target network
    np.testing.assert_allclose(dqn.dqn_targets(r, disc, q_t, q_o), [1 + 0.9 * 1, -0.5 - 0.9 * 1, 0.0], rtol=1e-6)
    g = jax.grad(lambda q: jnp.sum(dqn.dqn_targets(r, disc, q)))(q_t)
    assert float(jnp.abs(g).sum()) == 0.0                   # targets carry no gradient


def test_dqn_loss_is_huber_of_taken_action_and_epsilon_schedule():
    q = jnp.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    a = jnp.array([2, 0])
    y = jnp.array([2.5, 0.0])                               # errors 0.5 (quadratic) and 3 (linear)
    np.testing.assert_allclose(float(dqn.dqn_loss(q, a, y)), (0.5 * 0.25 + (3 - 0.5)) / 2, rtol=1e-6)
    eps = [float(dqn.epsilon_schedule(s, start=1.0, end=0.1, decay_steps=10)) for s in (0, 5, 10, 50)]
    np.testing.assert_allclose(eps, [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


def _trend_windows(seed, n, L=24):
    """Windows whose close path drifts up (+0.4%/day) or down; the return feature reveals the sign."""
    rng = np.random.default_rng(seed)
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    r = sign[:, None] * 0.004 + 0.002 * rng.standard_normal((n, L))
    c = np.concatenate([np.ones((n, 1)), np.exp(np.cumsum(r, 1))], 1)
    x = np.stack([c, c, c, c, np.ones_like(c)], -1).astype(np.float32)
    return x, sign, r


def test_dqn_learns_to_follow_a_visible_trend():
    x, _, _ = _trend_windows(0, 256)
    fmu, fsd = np.zeros(5, np.float32), np.array([0.005, 1, 1, 1, 1], np.float32)
    bank = dqn.bank_from_windows(x, fmu, fsd)
    init, train_chunk, act, evaluate = dqn.make_dqn(window=5, num_envs=8, buffer_size=2048,
                                                    eps_decay_iters=300, target_every=100)
    st = init(jax.random.PRNGKey(0), bank)
    st, _ = jax.jit(train_chunk, static_argnums=4)(st, bank, 0.0, 256, 800)
    # held-out trend windows, evaluated as 16 "days" x 8 "assets" (each day a fresh window)
    xt, sign, r = _trend_windows(1, 128)
    xt_d = xt.reshape(16, 8, *xt.shape[1:])
    y = (np.exp(r[:, -1]) - 1).reshape(16, 8)               # the next return continues the trend
    m, a_ds = jax.jit(evaluate)(st.params, xt_d, y, fmu, fsd)
    pos = np.asarray(a_ds).reshape(-1)
    acc = float(np.mean(pos == sign))
    assert acc > 0.85, acc                                   # random policy: 1/3
    assert float(m["mean_daily"]) > 0.5 * 0.004, m           # oracle earns ~0.4% per day
    # untrained network as the baseline: far lower
    m0, _ = jax.jit(evaluate)(init(jax.random.PRNGKey(0), bank).params, xt_d, y, fmu, fsd)
    assert float(m["mean_daily"]) > float(m0["mean_daily"]) + 0.002


def test_training_chunks_are_resumable_and_alpha_picks_the_augmented_half(tmp_path):
    x, _, _ = _trend_windows(2, 64)
    fmu, fsd = np.zeros(5, np.float32), np.array([0.005, 1, 1, 1, 1], np.float32)
    b = dqn.bank_from_windows(x, fmu, fsd)
    bank = dqn.concat_banks(b, b)
    init, train_chunk, _, _ = dqn.make_dqn(window=5, num_envs=4, buffer_size=256, learning_starts=16)
    tc = jax.jit(train_chunk, static_argnums=4)
    s0 = init(jax.random.PRNGKey(3), bank)
    one, _ = tc(s0, bank, 1.0, 64, 60)
    two, _ = tc(tc(s0, bank, 1.0, 64, 30)[0], bank, 1.0, 64, 30)
    for a, c in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(two)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))          # 60 = 30 + 30 exactly
    # after episodes reset with alpha = 1 every env window comes from the second (augmented) half
    assert bool(jnp.all(one.extra["env_n"] >= 64))
    zero, _ = tc(s0, bank, 0.0, 64, 60)
    assert bool(jnp.all(zero.extra["env_n"] < 64))
    with pytest.raises(ValueError, match="buffer_size"):
        dqn.make_dqn(num_envs=3, buffer_size=256)
    # the same run on the training contract: loop.run in chunks of 20 with checkpoints, stopped at 40 and
    # resumed to 60, ends bitwise where the single 60-iteration chunk ends
    from jaxlab.core import loop
    trainer = dqn.dqn_trainer(dqn.DQNHParams(window=5, num_envs=4, buffer_size=256, learning_starts=16))
    batch, ckpt = dqn.DQNBatch(bank, 1.0, 64), str(tmp_path / "ckpt")
    loop.run(trainer, jax.random.PRNGKey(3), steps=40, chunk=20, data=batch, ckpt_dir=ckpt, progress=False)
    st, hist = loop.run(trainer, jax.random.PRNGKey(3), steps=60, chunk=20, data=batch, ckpt_dir=ckpt, progress=False)
    for a, c in zip(jax.tree_util.tree_leaves(st), jax.tree_util.tree_leaves(one)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert hist["step"] == list(range(1, 61)) and max(hist["loss"]) > 0
    # arms side by side (the dataflow experiment's DQN ablation): arm a with its own bank and alpha = that arm
    # trained alone, from the identical start
    hp = dqn.DQNHParams(window=5, num_envs=4, buffer_size=256, learning_starts=16)
    bank2 = dqn.concat_banks(b, dqn.bank_from_windows(x[::-1].copy(), fmu, fsd))
    banks = jax.tree_util.tree_map(lambda u, v: jnp.stack([u, v]), bank, bank2)
    arms, _ = loop.run(dqn.arms_trainer(hp, 2), jax.random.PRNGKey(3), steps=60, chunk=60,
                       data=dqn.DQNBatch(banks, jnp.array([1.0, 0.5]), 64), progress=False)
    alone, _ = loop.run(trainer, jax.random.PRNGKey(3), steps=60, chunk=60, data=dqn.DQNBatch(bank2, 0.5, 64),
                        progress=False)
    for i, ref in ((0, st), (1, alone)):
        for a, c in zip(jax.tree_util.tree_leaves(arms), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(c), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_arms"):
        dqn.arms_trainer(hp, 0)


def test_observation_matches_env_and_is_causal():
    x, _, _ = _trend_windows(3, 2)
    b = dqn.bank_from_windows(x, np.zeros(5, np.float32), np.ones(5, np.float32))
    o = dqn.observe(b.feats[0], jnp.asarray(7), jnp.asarray(1.0), 5)
    assert o.shape == (5 * dqn.NUM_OBS_FEATURES + 1,) and float(o[-1]) == 1.0
    # changing bars after t leaves the observation unchanged
    x2 = x.copy()
    x2[0, 8:, :4] *= 1.5
    b2 = dqn.bank_from_windows(x2, np.zeros(5, np.float32), np.ones(5, np.float32))
    np.testing.assert_array_equal(np.asarray(o), np.asarray(dqn.observe(b2.feats[0], jnp.asarray(7), jnp.asarray(1.0), 5)))
    # row t of the aligned features is the log return into bar t
    np.testing.assert_allclose(float(b.feats[0, 7, 0]), np.log(x[0, 7, 3] / x[0, 6, 3]), rtol=1e-4)
    assert env.ACTIONS.shape == (dqn.NUM_ACTIONS,)
