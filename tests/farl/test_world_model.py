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


def test_offline_fit_is_a_core_loop_trainer_that_resumes(tmp_path):
    """`offline.fit_trainer` through `loop.run` in chunks, killed and resumed from its checkpoint, equals the
    scanned fit (`_adam_fit`, what bc_policy / fit_value / offline_ppo / the world model use) bit for bit."""
    from jaxlab.core import loop
    from jaxlab.farl.ppo import VALUE
    from jaxlab.farl import losses
    rows = {"obs": jax.random.normal(jax.random.PRNGKey(0), (64, 12)), "ret": jax.random.normal(jax.random.PRNGKey(1), (64,))}
    params = VALUE.init(jax.random.PRNGKey(2), jnp.zeros((12,)))
    loss = lambda p, mb: losses.value_loss(VALUE.apply(p, mb["obs"]), mb["ret"])
    ref_p, ref_l = offline._adam_fit(loss, params, rows, key=jax.random.PRNGKey(3), steps=7, batch=16, lr=1e-3)
    tr = offline.fit_trainer(loss, params, offline.FitHParams(steps=7, batch=16, lr=1e-3))
    kw = dict(chunk=3, data=rows, ckpt_dir=str(tmp_path / "ckpt"), progress=False)
    loop.run(tr, jax.random.PRNGKey(3), steps=3, **kw)
    state, hist = loop.run(tr, jax.random.PRNGKey(3), steps=7, **kw)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_p)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(hist["loss"], np.float32), np.asarray(ref_l))
