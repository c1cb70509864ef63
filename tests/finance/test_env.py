"""Trading environment: hand-computed rewards and costs, jit(vmap) vs Python loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import env, metrics


def test_reward_and_costs_match_hand_computation():
    prices = jnp.array([100.0, 110.0, 99.0, 99.0, 108.9])
    # actions: long, short (flip), flat (close), long
    rew, vals = env.rollout(jnp.array([2, 0, 1, 2]), prices, cost=1e-3, mode="paper_A")
    want = [0.0 - 1e-3,              # t=1: r=+10%, no position yet earns 0; open long costs c
            -0.1 - 2e-3,             # t=2: r=-10%, long loses 10%; flip to short trades 2x notional
            0.0 - 1e-3,              # t=3: r=0, short earns 0; closing costs c
            0.0 - 1e-3]              # t=4: r=+10%, flat earns 0; open long costs c
    np.testing.assert_allclose(np.asarray(rew), want, rtol=1e-5)
    np.testing.assert_allclose(float(vals[-1]), np.prod(1 + np.array(want)), rtol=1e-5)
    rb, _ = env.rollout(jnp.array([2, 0, 1, 2]), prices, cost=1e-3, mode="code_B")
    np.testing.assert_allclose(np.asarray(rb), [-1e-3, -0.1 - 1e-3, 0.0, -1e-3], rtol=1e-5)  # flip: new notional; close free
    with pytest.raises(ValueError, match="mode"):
        env.trade_cost(0.0, 1.0, mode="free")


def test_buy_and_hold_reproduces_price_return():
    prices = jnp.array([10.0, 11.0, 12.5, 12.0, 13.0])
    _, vals = env.rollout(jnp.array([2, 2, 2, 2]), prices, cost=0.0)
    # the first step opens the position, which then earns P_4 / P_1
    np.testing.assert_allclose(float(vals[-1]), 13.0 / 11.0, rtol=1e-6)


def test_jit_vmap_step_equals_python_loop():
    key = jax.random.PRNGKey(0)
    prices = 100 * jnp.exp(jnp.cumsum(0.01 * jax.random.normal(key, (60,))))
    acts = jax.random.randint(jax.random.PRNGKey(1), (8, 30), 0, 3)
    t0 = jnp.arange(8) * 3
    states = jax.vmap(env.reset)(t0)
    vstep = jax.jit(jax.vmap(lambda s, a: env.step(s, a, prices, mode="code_B")))
    rew_v = []
    for k in range(30):
        states, r = vstep(states, acts[:, k])
        rew_v.append(r)
    rew_v = np.stack(rew_v, 1)
    for e in range(8):
        s = env.reset(int(t0[e]))
        for k in range(30):
            s, r = env.step(s, int(acts[e, k]), prices, mode="code_B")
            np.testing.assert_allclose(float(r), rew_v[e, k], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(float(s.value), float(states.value[e]), rtol=1e-5)


def test_observation_is_causal():
    feats = jnp.arange(50.0)[:, None] * jnp.ones((1, 2))
    s = env.reset(25)
    o = env.observation(s, feats, window=5)
    np.testing.assert_allclose(o[:-1].reshape(5, 2)[:, 0], [21, 22, 23, 24, 25])


def test_drawdown_and_sharpe_goldens_on_env_values():
    v = jnp.array([1.0, 1.2, 0.9, 1.1])
    assert float(metrics.max_drawdown(v)) == pytest.approx(0.25)
    r = jnp.diff(v) / v[:-1]
    assert float(metrics.sharpe_ratio(r, periods=1)) == pytest.approx(float(np.mean(r) / np.std(r)), rel=1e-5)
