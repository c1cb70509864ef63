"""The forecasting trainer on `jaxlab.core.loop`: `make_train`'s train (loop.run with the host `collect` step,
the jitted update, the epoch's end as `eval_fn`) equals the plain per-step host loop of the paper's algorithm."""

import functools

import jax
import numpy as np
import pytest

from jaxlab.core import loop
from jaxlab.finance import data, planner, provenance
from jaxlab.finance import train as T

# the same hyperparameters and fold as test_planner.py's run, so the compiled functions are shared
HP = T.TrainHParams(model="dlinear", batch_size=16, epochs=2, steps_per_epoch=3, planner_hidden=16, freq=2,
                    planner_start=0, val_batch=32)


@pytest.fixture(scope="module")
def prep():
    panel, _ = data.synthetic_universe(2, num_assets=4, num_days=200)
    a, b = data.chronological_split(200)
    return T.prepare(panel, 12, a, b, 200)


def _host_loop(tr, prep, key, method):
    """The original trainer's loop written out: per epoch the scheduler's alpha and a permutation, per step the
    NumPy minibatch and validation draws, plan -> augment -> update; early stopping on validation MSE."""
    code, B = T._POLICY[method], HP.batch_size
    trainer = tr.trainer(method)
    state = jax.jit(trainer.init)(key)
    step = functools.partial(loop.jit_step, step=trainer.step)     # the same compiled update as loop.run's
    rng = np.random.default_rng(provenance.key_data(jax.random.split(key)[1])[-1])
    rng.choice(len(prep.x_tr), min(256, len(prep.x_tr)), replace=False)     # the monitor rows
    reward, es, last_es, best, records = 0.1, 0, 0, np.inf, []
    for epoch in range(HP.epochs):
        alpha = T._epoch_alpha(method, epoch, HP, reward)
        perm, losses, t0 = rng.permutation(len(prep.x_tr)), [], epoch * HP.steps_per_epoch
        for s in range(HP.steps_per_epoch):
            idx = perm[s * B:(s + 1) * B]
            vidx = rng.choice(len(prep.x_va), HP.val_batch, replace=False)
            _, k_plan, k_aug, _ = jax.random.split(state.key, 4)
            x, y, a, d = prep.x_tr[idx], prep.y_tr[idx], prep.asset_tr[idx], prep.day_tr[idx]
            _, q, lam, mask = tr.plan(state.params["theta"], state.params["phi"], x, k_plan, code, alpha)
            x_t, y_t, _ = tr.augment(x, y, a, d, q, lam, mask, k_aug)
            b = dict(x_t=x_t, y_t=y_t, x=x, y=y, asset=a, px=prep.panel_x_tr[d], py=prep.panel_y_tr[d],
                     xv=prep.x_va[vidx], yv=prep.y_va[vidx], do_hyper=np.bool_((t0 + s) % HP.freq == 0),
                     stats=tr.stats)
            state, m = step(state, b)
            losses.append(float(m["loss"]))
        val = tr.evaluate(state.params["theta"], test=False)["val_mse"]
        es, best = (0, val) if val < best else (es + 1, best)
        reward, last_es = planner.scheduler_update(es, last_es)
        records.append({"alpha": alpha, "train_loss": float(np.mean(losses)), "val_mse": val})
    return state, records


def test_loop_run_trainer_equals_the_plain_host_loop(prep):
    tr = T.make_train(HP, prep)
    out = tr(jax.random.PRNGKey(5), "ours")
    state, records = _host_loop(tr, prep, jax.random.PRNGKey(5), "ours")
    assert isinstance(out["state"], loop.TrainState) and int(out["state"].step) == 6
    assert [{k: r[k] for k in ("alpha", "train_loss", "val_mse")} for r in out["history"]] == records
    for a, b in zip(jax.tree_util.tree_leaves(out["state"]), jax.tree_util.tree_leaves(state)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert out["steps"]["step"] == list(range(1, 7)) and out["steps"]["hyper"] == [True, False] * 3
    assert records[1]["alpha"] != records[0]["alpha"]       # the scheduler moved alpha between the epochs


def test_early_stopping_stops_loop_run(prep):
    """patience 0: the first epoch's end (loop.run's eval_fn) sets the early-stop counter, stop_fn stops training
    after that one chunk, and the test metrics are those of that epoch's (best) theta."""
    out = T.make_train(HP._replace(epochs=3, patience=0), prep)(jax.random.PRNGKey(0), "original")
    assert len(out["history"]) == 1 and out["steps"]["stopped_early"] and out["steps"]["step"] == [1, 2, 3]
    assert out["metrics"]["val_mse"] == out["history"][0]["val_mse"]
