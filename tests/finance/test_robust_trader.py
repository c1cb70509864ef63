"""The NFSP + QBN + adversary trader loop (paper B): bad inputs, metrics, backtest and a short run."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import env as env_lib
from jaxlab.finance import gan as G
from jaxlab.finance import macro as M
from jaxlab.finance import robust_trader as rt


@pytest.fixture(scope="module")
def world():
    w = M.synthetic_macro_world(0, num_days=300, stress_window=(250, 290))
    return rt.prepare_world(w, 180, 240)


def test_bad_inputs_raise(world):
    gen = lambda g, x, c, k: x
    with pytest.raises(ValueError, match="cost_mode"):
        rt.make_trader(rt.TraderHParams(cost_mode="free"), num_assets=3, macro_dim=4, train_range=(0, 180), generate=gen)
    with pytest.raises(ValueError, match="adv_eps"):
        rt.make_trader(rt.TraderHParams(adv_eps=-0.1), num_assets=3, macro_dim=4, train_range=(0, 180), generate=gen)
    with pytest.raises(ValueError, match="avg_loss"):
        rt.make_trader(rt.TraderHParams(avg_loss="kl"), num_assets=3, macro_dim=4, train_range=(0, 180), generate=gen)
    with pytest.raises(ValueError, match="train_range"):
        rt.make_trader(rt.TraderHParams(), num_assets=3, macro_dim=4, train_range=(0, 60), generate=gen)
    with pytest.raises(ValueError, match="lo/hi"):
        rt.eval_obs(world.data, 0, 400, 16)                  # a window longer than the data
    with pytest.raises(ValueError, match="arms"):
        rt.arm_flags(["ours", "rarl"])


def test_trading_metrics_golden_values():
    r = jnp.array([0.2, -0.25, 0.2222222])                  # values 1, 1.2, 0.9, 1.1
    m = rt.trading_metrics(r)
    assert float(m["mdd"]) == pytest.approx(0.25, rel=1e-5)
    assert float(m["total_return"]) == pytest.approx(0.1, rel=1e-5)
    assert float(m["sharpe_sqrtN"]) == pytest.approx(float(m["sharpe_252"]) * np.sqrt(3 / 252), rel=1e-5)


def test_backtest_of_always_long_is_buy_and_hold_minus_one_opening_cost(world):
    obs, ret = rt.eval_obs(world.data, 200, 240, 16)
    long = lambda st, fl, o, pos: jnp.full(o.shape[:1], 2)
    r = rt.backtest(long, None, None, obs, ret, cost=1e-3, cost_mode="code_B")
    want = np.asarray(ret).mean(1)
    want[0] -= 1e-3
    np.testing.assert_allclose(np.asarray(r), want, rtol=1e-5, atol=1e-7)
    # the rewards agree with env.step on one asset
    close = world.data.close[:, 0]
    s = env_lib.reset(200)
    s, r0 = env_lib.step(s, 2, close, mode="code_B")
    assert float(r0) == pytest.approx(-1e-3, rel=1e-5)        # flat position earns nothing; opening costs c
    s2, r1 = env_lib.step(s, 2, close, mode="code_B")
    assert float(r1) == pytest.approx(float(close[202] / close[201] - 1), rel=1e-5)


@pytest.mark.slow
def test_short_training_run_is_finite_and_respects_the_budget(world):
    init_g, _, generate = G.make_gan(G.GanHParams(hidden=8), dim=12, macro_dim=4, window=32)
    gp = init_g(jax.random.PRNGKey(0)).g_params
    hp = rt.TraderHParams(num_envs=4, buffer_size=256, reservoir_size=128, learning_starts=32, adv_every=20,
                          aug_rate=0.5, episode_len=32)
    init, chunk, act = rt.make_trader(hp, num_assets=3, macro_dim=4, train_range=(0, 180), generate=generate)
    flags = rt.arm_flags(["ours", "dqn"])
    st = jax.vmap(lambda _: init(jax.random.PRNGKey(0)))(jnp.arange(2))
    f = jax.jit(jax.vmap(functools.partial(chunk, iters=60), in_axes=(0, 0, None, None)))
    st, m = f(st, flags, world.data, gp)
    assert all(np.isfinite(np.asarray(v)).all() for v in m.values())
    assert float(m["delta_abs"][0]) <= hp.adv_eps and float(m["aug_frac"][1]) == 0.0
    assert int(st.extra["res"].count[0]) > 0                          # the NFSP arm fills its reservoir
    obs, ret = rt.eval_obs(world.data, 200, 240, 16)
    r = rt.backtest(act, jax.tree_util.tree_map(lambda a: a[0], st), jax.tree_util.tree_map(lambda a: a[0], flags), obs, ret)
    assert r.shape == (39,) and np.isfinite(np.asarray(r)).all()


def test_observation_noise_arm_perturbs_real_windows_and_leaves_the_other_arms_alone(world):
    """The "DQN + noise" baseline augments the same share of steps as ours, with noise instead of the GAN,
    and no adversary; arms without the flag never add noise."""
    gen = lambda g, x, c, k: x                       # a stand-in generator: the real history, copied
    hp = rt.TraderHParams(num_envs=4, buffer_size=128, reservoir_size=64, learning_starts=10_000, adv_every=20,
                          aug_rate=0.5, episode_len=32, obs_noise=0.5, eps_decay_iters=1, eps_end=0.0)
    init, chunk, _ = rt.make_trader(hp, num_assets=3, macro_dim=4, train_range=(0, 180), generate=gen)
    flags = rt.arm_flags(["dqn", "dqn_noise", "ours"])
    assert flags.noise.tolist() == [0.0, 1.0, 0.0]
    st = jax.vmap(lambda _: init(jax.random.PRNGKey(0)))(jnp.arange(3))
    st, m = jax.jit(jax.vmap(functools.partial(chunk, iters=40), in_axes=(0, 0, None, None)))(
        st, flags, world.data, {})
    aug = np.asarray(m["aug_frac"])
    assert aug[0] == 0.0 and aug[1] > 0.2 and aug[2] > 0.2      # same Bernoulli(aug_rate) draws as ours
    assert float(m["delta_abs"][1]) == 0.0                      # no adversary in the noise arm
    # the stored observations: the noise arm's replay buffer differs from the plain DQN arm's (same keys)
    d = np.abs(np.asarray(st.extra["buf"]["obs"][1]) - np.asarray(st.extra["buf"]["obs"][0])).max()
    assert d > 0.1


def test_learned_observation_adversary_arm_stays_in_its_ball_and_learns_only_in_its_arm(world):
    """The "DQN + learned observation adversary" baseline shifts the real window by at most obs_adv_eps (l-inf,
    z units) on the augmented steps; no GAN, no macro adversary; its REINFORCE step moves only its own arm's
    observation-adversary parameters."""
    gen = lambda g, x, c, k: x + 100.0                 # a generator the arm must never use
    hp = rt.TraderHParams(num_envs=4, buffer_size=128, reservoir_size=64, learning_starts=10_000, adv_every=20,
                          aug_rate=0.5, episode_len=32, obs_adv_eps=0.3, eps_decay_iters=1, eps_end=0.0)
    init, chunk, _ = rt.make_trader(hp, num_assets=3, macro_dim=4, train_range=(0, 180), generate=gen)
    flags = rt.arm_flags(["dqn", "dqn_advobs"])
    assert flags.obs_adv.tolist() == [0.0, 1.0] and flags.aug.tolist() == [0.0, 0.0]
    st0 = jax.vmap(lambda _: init(jax.random.PRNGKey(0)))(jnp.arange(2))
    st, m = jax.jit(jax.vmap(functools.partial(chunk, iters=32), in_axes=(0, 0, None, None)))(
        st0, flags, world.data, {})
    aug = np.asarray(m["aug_frac"])
    assert aug[0] == 0.0 and aug[1] > 0.2
    assert float(m["delta_abs"][1]) == 0.0                      # the macro adversary is off
    n = 32 * hp.num_envs
    win = lambda a: np.asarray(st.extra["buf"]["obs"][a, :n, :-1])       # the window part (the position is last)
    d = np.abs(win(1) - win(0))
    assert d.max() <= hp.obs_adv_eps + 1e-5 and d.max() > 0.05  # perturbed, inside the ball, never generated
    rows = d.max(-1) > 0
    assert 0.2 < rows.mean() < 0.8                              # only the augmented steps
    moved = lambda a: max(float(np.abs(np.asarray(x[a]) - np.asarray(y[a])).max())
                          for x, y in zip(jax.tree_util.tree_leaves(st.params["oadv"]),
                                                    jax.tree_util.tree_leaves(st0.params["oadv"])))
    assert moved(0) == 0.0 and moved(1) > 0.0                   # one REINFORCE step (at 20), gated per arm
    with pytest.raises(ValueError, match="obs_adv_eps"):
        rt.make_trader(rt.TraderHParams(obs_adv_eps=-1.0), num_assets=3, macro_dim=4, train_range=(0, 180),
                       generate=gen)


def test_loop_run_with_a_resume_equals_one_straight_chunk(world, tmp_path):
    """The trader on the training contract: `loop.run` of `trader_trainer` in chunks of 8 with checkpoints,
    stopped after 16 iterations and resumed to 24, ends bitwise where `make_trader`'s one 24-iteration chunk
    (a single `scan_chunk`) ends, with the same per-step history."""
    from jaxlab.core import loop
    gen = lambda g, x, c, k: x + 0.5                 # a stand-in generator (the augmented steps differ from real)
    hp = rt.TraderHParams(window=8, hidden=8, qbn_hidden=4, num_envs=2, episode_len=8, buffer_size=32,
                          reservoir_size=16, batch_size=8, learning_starts=8, adv_every=6, target_every=5,
                          aug_rate=0.5, eps_decay_iters=10)
    kw = dict(num_assets=3, macro_dim=4, train_range=(0, 180), generate=gen)
    flags = jax.tree_util.tree_map(lambda v: v[0], rt.arm_flags(["ours"]))
    batch = rt.TraderBatch(flags, world.data, {})
    trainer, key, ckpt = rt.trader_trainer(hp, **kw), jax.random.PRNGKey(0), str(tmp_path / "ckpt")
    loop.run(trainer, key, steps=16, chunk=8, data=batch, ckpt_dir=ckpt, progress=False)
    st, hist = loop.run(trainer, key, steps=24, chunk=8, data=batch, ckpt_dir=ckpt, progress=False)
    init, chunk, _ = rt.make_trader(hp, **kw)
    ref, m = chunk(loop.jit_init(key, init=init), flags, world.data, {}, 24)
    assert int(st.step) == 24 and hist["step"] == list(range(1, 25))
    for a, b in zip(jax.tree_util.tree_leaves(st), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(np.abs(np.asarray(st.params["q"]["params"]["Dense_0"]["kernel"])).sum()) > 0
    assert max(hist["q_loss"]) > 0 and max(hist["adv_loss"]) != 0      # the updates ran inside the window
    np.testing.assert_allclose(np.mean(hist["reward"]), float(m["reward"]), rtol=1e-5, atol=1e-7)
