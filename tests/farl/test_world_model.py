"""World model ensemble: the failure head separates held-out failure demos; disagreement grows off-distribution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.farl import offline
from jaxlab.farl.envs import make_env
from jaxlab.farl.safety import auroc


@pytest.fixture(scope="module")
def fitted():
    env = make_env("bounded_push", episode_length=40)
    collect = jax.jit(lambda k: {"failure": offline.collect(env, k, kind="failure", num_envs=24, steps=80, noise=0.3)})
    train = offline.flatten(collect(jax.random.PRNGKey(0))["failure"])
    held = offline.flatten(collect(jax.random.PRNGKey(1))["failure"])
    wm, losses = offline.train_world_model(jax.random.PRNGKey(2), train, ensemble=3, steps=1500)
    return wm, losses, held


def test_failure_head_separates_held_out_failures(fitted):
    wm, losses, held = fitted
    assert held["cost"].sum() >= 5
    next_obs, p = offline.wm_predict(wm, held["obs"], held["action"])
    assert auroc(np.asarray(p).max(0), held["cost"]) > 0.9
    # one-step prediction error on held-out data is small compared with the motion per step
    err = np.abs(np.asarray(next_obs).mean(0)[:, :4] - held["next_obs"][:, :4]).mean()
    move = np.abs(held["next_obs"][:, :4] - held["obs"][:, :4]).mean()
    assert err < 0.5 * move
    assert float(losses[:, -1].mean()) < float(losses[:, 0].mean())


def test_ensemble_disagreement_is_higher_off_distribution(fitted):
    wm, _, held = fitted
    on = held["obs"][:512]
    off = on.copy()
    off[:, :4] = off[:, :4] * 4.0 + 2.0  # pusher and puck far outside anything seen
    act = held["action"][:512]
    std_on = np.asarray(offline.wm_predict(wm, on, act)[0]).std(0).mean()
    std_off = np.asarray(offline.wm_predict(wm, off, act)[0]).std(0).mean()
    assert std_off > 2.0 * std_on
