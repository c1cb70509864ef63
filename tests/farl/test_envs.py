"""FailureBench envs: bad input, failure accounting, exact-step detection, no motion without contact."""
import brax.envs
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.farl.envs import TASKS, failure_event, make_env


@pytest.fixture(scope="module")
def env():
    return make_env("bounded_push", episode_length=30)


@pytest.fixture(scope="module")
def jitted(env):
    return jax.jit(env.reset), jax.jit(env.step)


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="task"):
        make_env("push_the_moon")


def test_registered_in_brax_by_name():
    from jaxlab.farl import register_envs
    assert "farl_fragile_push_wall" in register_envs()
    e = brax.envs.get_environment("farl_fragile_push_wall")
    assert e.task == "fragile_push_wall" and e.observation_size == 12 and e.action_size == 2


def test_bad_actions_raise_or_are_flagged(env, jitted):
    reset, step = jitted
    s = reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="action"):
        env.step(s, jnp.zeros(3))
    with pytest.raises(ValueError, match="action"):
        env.step(s, jnp.array([jnp.nan, 0.0]))
    s2 = step(s, jnp.array([jnp.nan, 0.0]))  # under jit: zeroed and flagged, never a NaN state
    assert float(s2.info["nan_action"]) == 1.0
    assert np.all(np.isfinite(np.asarray(s2.obs)))
    assert np.all(np.isfinite(np.asarray(s2.pipeline_state.q)))


def test_puck_does_not_move_without_contact(jitted):
    reset, step = jitted
    s = reset(jax.random.PRNGKey(1))
    puck0 = np.asarray(s.obs[2:4])
    for _ in range(10):  # pusher moves away from the puck (-x): no contact
        s = step(s, jnp.array([-1.0, 0.3]))
    np.testing.assert_allclose(np.asarray(s.obs[2:4]), puck0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.obs[6:8]), 0.0, atol=1e-6)
    assert np.linalg.norm(np.asarray(s.obs[0:2]) - np.asarray(s.obs[0:2])) == 0.0


def test_table_exit_detected_on_the_exact_step(jitted):
    reset, step = jitted
    s = reset(jax.random.PRNGKey(2))
    xs, costs, dones = [], [], []
    for _ in range(30):
        s = step(s, jnp.array([1.0, 0.0]))  # ram the puck off the +x edge
        xs.append(float(jnp.max(jnp.abs(s.info["terminal_obs"][2:4]))))
        costs.append(float(s.info["cost"]))
        dones.append(float(s.done))
        if dones[-1]:
            break
    xs = np.array(xs)
    first_out = int(np.argmax(xs > 0.5))
    assert xs[first_out] > 0.5 and np.all(xs[:first_out] <= 0.5)
    assert costs[first_out] == 1.0 and dones[first_out] == 1.0 and sum(costs) == 1.0
    assert int(s.info["t"]) == 0 and float(jnp.max(jnp.abs(s.obs[2:4]))) < 0.3  # auto-reset to a fresh start


def test_failure_accounting_one_failure_per_terminated_episode(env):
    n, steps = 8, 80

    @jax.jit
    def roll(key):
        s = jax.vmap(env.reset)(jax.random.split(key, n))

        def f(s, k):
            a = jnp.clip(jnp.array([1.0, 0.0]) + 0.5 * jax.random.normal(k, (n, 2)), -1, 1)
            s = jax.vmap(env.step)(s, a)
            return s, (s.info["cost"], s.done, s.info["truncation"], s.info["t"])

        return jax.lax.scan(f, s, jax.random.split(key, steps))[1]

    cost, done, trunc, t = (np.asarray(x) for x in roll(jax.random.PRNGKey(3)))
    assert cost.sum() > 0 and trunc.sum() > 0  # both failures and time-outs happen
    np.testing.assert_array_equal(done, np.maximum(cost, trunc))  # every failure terminates, exactly once
    assert np.all(cost * trunc == 0)  # a failure is never counted as a truncation
    assert np.all(t[done > 0] == 0)  # auto-reset
    counter = np.cumsum(cost.sum(1))
    assert np.all(np.diff(counter) >= 0) and counter[-1] == cost.sum()


@pytest.mark.parametrize("task", TASKS)
def test_failure_event_geometry(task):
    obs = np.zeros((2, 12), np.float32)
    obs[:, 8:10] = [0.3, 0.0]
    obs[:, 0:2] = [-0.5, -0.5]
    safe = obs[0].copy()
    safe[2:4] = [0.0, -0.3]
    bad = obs[1].copy()
    if task == "bounded_push":
        bad[2:4] = [0.51, 0.0]
    elif task == "fragile_push_wall":
        bad[2:4] = [0.42 - 0.02 - 0.05, 0.0]
        bad[6:8] = [0.5, 0.0]
    else:
        bad[2:4] = [0.05, 0.02]
    c = failure_event(task, jnp.stack([safe, bad]), jnp.stack([safe, bad]))
    np.testing.assert_array_equal(np.asarray(c), [0.0, 1.0])
    if task == "fragile_push_wall":  # a slow touch does not break the object
        slow = bad.copy()
        slow[6:8] = [0.05, 0.0]
        assert float(failure_event(task, jnp.asarray(slow), jnp.asarray(slow))) == 0.0
