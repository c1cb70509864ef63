"""Training: vmapped grid == single runs == `loop.run` of the Trainer (with a kill + resume); a learning check of
the class-mass diagnosis (Eq. 6 vs PiCCE)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import loop
from jaxlab.l2d import data, train as T


def _tiny(n_train=600):
    d = data.gmm_splits(1, sizes=(n_train, 200, 400))
    return {s: {k: v for k, v in d[s].items() if k in ("x", "y", "eta")} for s in d}


# the tiny runs of the first test and (with 3 epochs: chunks of 2 and 1) of the `loop.run` test
TINY = dict(method="picce_ce", setting="overlapped", num_classes=10, max_experts=4, hidden=(16,), epochs=2,
            batch_size=64)


def test_vmapped_grid_equals_single_runs():
    tr = T.make_train(_tiny(256), **TINY)
    _, grid = T.run_grid(tr, [0, 3], [1, 4])
    _, single = jax.jit(tr)(jax.random.PRNGKey(3), jnp.int32(4))
    np.testing.assert_allclose(grid["test"]["system_error"][1, 1], single["test"]["system_error"], atol=1e-6)
    np.testing.assert_allclose(grid["val"]["class_mass"][1, 1], single["val"]["class_mass"], rtol=1e-4)
    assert grid["test"]["defer_frac"].shape == (2, 2, 2, 4)
    # J=1: only expert 0 can ever be chosen
    assert float(np.asarray(grid["test"]["defer_frac"])[0, :, :, 1:].max()) == 0.0


def test_a_traced_grid_point_equals_the_built_in_hyperparameters_and_compiles_once():
    """`run_grid(..., hparams)` with a cached `grid_fn`: the learning rate and the loss weight are traced, so two grid
    points share one compiled program, and each point's run equals a `make_train` built with those values."""
    d = _tiny(256)
    kw = dict(method="realizable", setting="specialist", num_classes=10, max_experts=4, hidden=(16,), epochs=2,
              batch_size=64)
    tr = T.make_train(d, **kw)
    fn = T.grid_fn(tr)
    n0 = fn.func._cache_size()
    _, a = T.run_grid(tr, [0, 1], [2, 4], {"lr": 3e-3, "alpha": 0.5}, fn=fn)
    _, b = T.run_grid(tr, [0, 1], [2, 4], {"lr": 1e-3, "alpha": 1.0}, fn=fn)
    assert fn.func._cache_size() == n0 + 1
    _, ref = T.run_grid(T.make_train(d, lr=3e-3, loss_kwargs={"alpha": 0.5}, **kw), [0, 1], [2, 4])
    np.testing.assert_allclose(a["train_loss"], ref["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["test"]["system_error"], ref["test"]["system_error"], atol=1e-6)
    assert not np.allclose(a["train_loss"], b["train_loss"])


class _Kill(Exception):
    pass


def test_loop_run_with_a_kill_and_resume_equals_the_grid(tmp_path):
    """The Trainer under `loop.run` (data a jit argument, chunks of 2 epochs, killed after its first checkpoint and
    resumed) trains bit for bit the parameters and per-epoch losses of the uninterrupted run and of the vmapped
    grid's run of that (seed, J); its `eval_scalars` match the grid's last-epoch metrics."""
    tr = T.make_train(_tiny(256), **dict(TINY, epochs=3))
    kw = tr.keywords
    hp = kw["hp"]._replace(num_experts=4)
    trainer = T.l2d_trainer(hp, in_dim=kw["in_dim"])
    key, data = jax.random.PRNGKey(3), kw["data"]
    full, h_full = loop.run(trainer, key, steps=hp.epochs, chunk=2, data=data, progress=False)

    def kill(step, _):
        if step == 2:
            raise _Kill
    with pytest.raises(_Kill):
        loop.run(trainer, key, steps=hp.epochs, chunk=2, data=data, ckpt_dir=str(tmp_path), log_fn=kill, progress=False)
    resumed, h_res = loop.run(trainer, key, steps=hp.epochs, chunk=2, data=data, ckpt_dir=str(tmp_path),
                              progress=False, eval_fn=lambda s: T.eval_scalars(s, data, hp=hp))
    # the grid path (one jit, vmapped over seeds) for J = 4; seed 3 is [0, 1]. (A J axis of several values
    # batches the first layer's matmul differently: within 1 ulp of the single run, as the first test allows.)
    grid_params, grid = T.run_grid(tr, [0, 3], [4])
    for a, b, c in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), jax.tree.leaves(grid_params)):
        assert np.array_equal(a, b) and np.array_equal(a, np.asarray(c)[0, 1])
    assert h_res["step"] == [1, 2, 3] and int(resumed.step) == hp.epochs
    for h in (h_full, h_res):
        assert np.array_equal(np.asarray(h["train_loss"], np.float32), np.asarray(grid["train_loss"])[0, 1])
    last = h_res["eval"][-1]
    for k in ("system_error", "coverage", "classifier_accuracy"):       # counts: exact
        assert last[f"test/{k}"] == float(np.asarray(grid["test"][k])[0, 1, -1])
    # a mean of probabilities, evaluated outside the grid's scan: within float round-off
    np.testing.assert_allclose(last["val/class_mass"], np.asarray(grid["val"]["class_mass"])[0, 1, -1], rtol=1e-6)


def test_class_mass_follows_theory_after_training():
    """Vanilla CE mass ~ 1/(1+A) (here A = 8 x 0.95 on half the classes), PiCCE-CE mass ~ 1/(1+V) >= 1/2."""
    d = _tiny(3000)
    out = {}
    for method in ("ce", "picce_ce"):
        tr = T.make_train(d, method=method, setting="specialist", num_classes=10, max_experts=8,
                          hidden=(64,), epochs=6, batch_size=100)
        _, m = jax.jit(tr)(jax.random.PRNGKey(0), jnp.int32(8))
        out[method] = m
    van, pic = out["ce"], out["picce_ce"]
    mass_v, theory_v = float(van["test"]["class_mass"][-1]), float(van["mass_vanilla_theory"])
    assert theory_v < 0.35
    assert abs(mass_v - theory_v) < 0.25 * theory_v
    mass_p, theory_p = float(pic["test"]["class_mass"][-1]), float(pic["mass_picce_theory"])
    assert mass_p > 0.45 and abs(mass_p - theory_p) < 0.1
    for m in (van, pic):
        assert float(m["test"]["classifier_accuracy"][-1]) > 0.5         # chance is 0.1
        assert np.all(np.isfinite(np.asarray(m["train_loss"])))


def test_make_train_bad_input():
    with pytest.raises(ValueError, match="method"):
        T.make_train(_tiny(100), method="softmax", setting="specialist", num_classes=10, max_experts=2)
    with pytest.raises(ValueError, match="setting"):
        T.make_train(_tiny(100), method="ce", setting="dog", num_classes=10, max_experts=2)
    with pytest.raises(ValueError, match="batch_size"):
        T.make_train(_tiny(100), method="ce", setting="varying", num_classes=10, max_experts=2, batch_size=500)
    with pytest.raises(ValueError, match="setting"):
        T.l2d_trainer(T.L2DHParams(setting="dog"), in_dim=4)
    with pytest.raises(ValueError, match="split"):
        T.l2d_arrays({"train": {"x": np.zeros((4, 2)), "y": np.zeros(4)}})
