"""Our PPO: GAE parity, masked recovery steps, the switch limits inside the full training step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.farl.envs import make_env
from jaxlab.farl.ppo import POLICY, TWIN, VALUE, WM_MEMBER, gae, gaussian_logp, make_arm, make_train, ppo_policy_loss


def _random_pre(key, ensemble=2):
    ks = jax.random.split(key, 5)
    o, a = jnp.zeros((12,)), jnp.zeros((2,))
    wm = jax.vmap(lambda k: WM_MEMBER.init(k, o, a))(jax.random.split(ks[3], ensemble))
    return {"pi": POLICY.init(ks[0], o), "v": VALUE.init(ks[1], o), "rec": POLICY.init(ks[2], o), "wm": wm,
            "q": TWIN.init(ks[4], o, a)}


@pytest.fixture(scope="module")
def trainer():
    env = make_env("bounded_push", episode_length=10)
    train = make_train(env, num_envs=2, rollout_len=8, iterations=2, epochs=1, minibatches=2, horizon=2, trace=True)
    return jax.jit(train), _random_pre(jax.random.PRNGKey(0))


def test_gae_matches_numpy_loop():
    rng = np.random.default_rng(0)
    T, B = 12, 3
    r, v, vn = rng.normal(size=(3, T, B)).astype(np.float32)
    d = (rng.random((T, B)) < 0.2).astype(np.float32)
    adv, ret = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(vn), jnp.asarray(d), gamma=0.9, lam=0.8)
    ref = np.zeros((T, B), np.float32)
    nxt = np.zeros(B, np.float32)
    for t in reversed(range(T)):
        nxt = r[t] + 0.9 * vn[t] - v[t] + 0.9 * 0.8 * (1 - d[t]) * nxt
        ref[t] = nxt
    np.testing.assert_allclose(np.asarray(adv), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), ref + v, rtol=1e-5, atol=1e-5)


def test_recovery_steps_give_zero_policy_gradient():
    params = POLICY.init(jax.random.PRNGKey(1), jnp.zeros((12,)))
    obs = jax.random.normal(jax.random.PRNGKey(2), (16, 12))
    act = jax.random.normal(jax.random.PRNGKey(3), (16, 2))
    adv = jax.random.normal(jax.random.PRNGKey(4), (16,))
    mean0, log_std0 = POLICY.apply(params, obs)
    logp_old = gaussian_logp(mean0, log_std0, act) + 0.05  # ratios near 1, inside the clip range

    def loss(p, mask):
        mean, log_std = POLICY.apply(p, obs)
        return ppo_policy_loss(gaussian_logp(mean, log_std, act), logp_old, adv, mask)

    g_rec = jax.grad(loss)(params, jnp.zeros(16))  # a batch of only recovery steps
    g_task = jax.grad(loss)(params, jnp.ones(16))
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g_rec))
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_task)) > 1e-4


def test_recovery_steps_still_enter_gae():
    # step 1 is a recovery step; its reward changes the advantage of the task step before it
    v = jnp.zeros((3, 1))
    r1 = jnp.array([[0.0], [0.0], [0.0]])
    r2 = jnp.array([[0.0], [1.0], [0.0]])
    a1, _ = gae(r1, v, v, jnp.zeros((3, 1)), gamma=0.9, lam=0.9)
    a2, _ = gae(r2, v, v, jnp.zeros((3, 1)), gamma=0.9, lam=0.9)
    np.testing.assert_allclose(float(a2[0, 0] - a1[0, 0]), 0.81, rtol=1e-6)


def test_eps_plus_inf_reproduces_vanilla_bit_for_bit(trainer):
    train, pre = trainer
    key = jax.random.PRNGKey(7)
    ts_v, m_v = train(key, make_arm("vanilla"), pre)
    ts_f, m_f = train(key, make_arm("farl", eps_wm=float("inf")), pre)
    ts_q, _ = train(key, make_arm("recovery_rl", eps_q=float("inf")), pre)
    for a, b, c in zip(*(jax.tree.leaves(t.params["pi"]) for t in (ts_v, ts_f, ts_q))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    np.testing.assert_array_equal(np.asarray(m_v["reward"]), np.asarray(m_f["reward"]))
    assert float(m_f["trigger_rate"].sum()) == 0.0


def test_eps_minus_inf_always_recovers_and_masks_the_policy(trainer):
    train, pre = trainer
    ts, m = train(jax.random.PRNGKey(7), make_arm("farl", eps_wm=float("-inf")), pre)
    np.testing.assert_array_equal(np.asarray(m["trigger_rate"]), 1.0)
    # every step was a recovery step, so the masked policy loss never moved the task policy
    for a, b in zip(jax.tree.leaves(ts.params["pi"]), jax.tree.leaves(pre["pi"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the value function still learned from those steps
    assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(jax.tree.leaves(ts.params["v"]), jax.tree.leaves(pre["v"])))


def test_failure_counter_is_the_sum_of_costs(trainer):
    train, pre = trainer
    _, m = train(jax.random.PRNGKey(8), make_arm("vanilla"), pre)
    np.testing.assert_allclose(np.asarray(m["cum_failures"]), np.cumsum(np.asarray(m["failures"])))


def test_unknown_arm_raises():
    with pytest.raises(ValueError, match="name"):
        make_arm("safe_magic")


def test_learn_off_freezes_everything_and_traces_both_critics(trainer):
    """learn=0 (the eps_safe validation run): parameters unchanged, rollouts identical to learning's first
    iteration, and the per-step traces carry the WM C_H (critic 1) and the twin-critic risk."""
    train, pre = trainer
    key = jax.random.PRNGKey(9)
    ts, m = train(key, make_arm("farl", eps_wm=float("inf"), learn=False), pre)
    for a, b in zip(jax.tree.leaves((ts.params["pi"], ts.params["v"])), jax.tree.leaves((pre["pi"], pre["v"]))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _, m_learn = train(key, make_arm("farl", eps_wm=float("inf")), pre)
    np.testing.assert_array_equal(np.asarray(m["reward"][0]), np.asarray(m_learn["reward"][0]))
    tr = m["trace"]
    assert tr["risk_wm"].shape == (2, 8, 2) and tr["risk_q"].shape == (2, 8, 2)
    assert float(tr["risk_wm"].min()) > 0.0 and float(tr["risk_q"].min()) > 0.0
    np.testing.assert_array_equal(np.asarray(tr["flag"]), 0.0)
    # vanilla does not query the world model (its C_H trace is 0) but still records the cheap twin-critic risk
    _, m_v = train(key, make_arm("vanilla"), pre)
    np.testing.assert_array_equal(np.asarray(m_v["trace"]["risk_wm"]), 0.0)
    np.testing.assert_allclose(np.asarray(m_v["trace"]["risk_q"][0]), np.asarray(tr["risk_q"][0]), rtol=1e-6)


def test_evaluate_is_a_frozen_rollout_of_the_given_policy(trainer):
    """train.evaluate(key, arm, pre, pi) == the first iteration of the learn=0 run of the same arm from the same
    key (same episodes, same switch); and it acts with the policy it is given, not pre["pi"]."""
    train, pre = trainer
    env = make_env("bounded_push", episode_length=10)
    raw = make_train(env, num_envs=2, rollout_len=8, iterations=2, epochs=1, minibatches=2, horizon=2,
                     eval_iterations=1)
    ev = jax.jit(raw.evaluate)
    key = jax.random.PRNGKey(11)
    _, m0 = train(key, make_arm("farl", eps_wm=float("inf"), learn=False), pre)
    eps = float(np.median(np.asarray(m0["trace"]["risk_wm"][0])))      # the switch fires on about half the steps
    arm = make_arm("farl", eps_wm=eps)
    out = ev(key, arm, pre, pre["pi"])
    _, m = train(key, make_arm("farl", eps_wm=eps, learn=False), pre)
    assert float(out["failures"]) == float(m["failures"][0])
    assert float(out["episodes"]) == float(m["episodes"][0])
    np.testing.assert_allclose(float(out["trigger_rate"]), float(m["trigger_rate"][0]), rtol=1e-6)
    assert 0.0 < float(out["trigger_rate"]) < 1.0
    other = _random_pre(jax.random.PRNGKey(5))["pi"]
    assert float(ev(key, arm, pre, other)["trigger_rate"]) != float(out["trigger_rate"])


def test_run_online_through_core_loop_equals_make_train_and_resumes(trainer, tmp_path):
    """The online trainer through `loop.run` (chunks of one iteration, killed after the first and resumed from its
    checkpoint) ends in the same state, bit for bit, as `make_train`'s one scan; the history holds its metrics."""
    from jaxlab.farl.ppo import PPOHParams, run_online
    train, pre = trainer
    env = make_env("bounded_push", episode_length=10)
    arm = make_arm("ppo_lagrangian", lagrange_lr=5.0)
    ts, m = train(jax.random.PRNGKey(3), arm, pre)
    hp = PPOHParams(num_envs=2, rollout_len=8, epochs=1, minibatches=2, horizon=2)
    kw = dict(hp=hp, chunk=1, ckpt_dir=str(tmp_path / "ckpt"))
    run_online(env, jax.random.PRNGKey(3), arm, pre, iterations=1, **kw)
    state, hist = run_online(env, jax.random.PRNGKey(3), arm, pre, iterations=2, **kw)
    assert hist["step"] == [1, 2] and int(state.step) == 2
    for a, b in zip(jax.tree.leaves((state.params, state.opt_state, state.key, state.extra)),
                    jax.tree.leaves((ts.params, ts.opt_state, ts.key, ts.extra))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in ("failures", "cum_failures", "lam", "pi_loss", "v_loss", "ep_return"):
        np.testing.assert_array_equal(np.asarray(hist[k], np.float32), np.asarray(m[k]))
