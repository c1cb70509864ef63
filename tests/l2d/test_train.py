"""Training: vmapped grid == single runs; a learning check of the class-mass diagnosis (Eq. 6 vs PiCCE)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.l2d import data, train as T


def _tiny(n_train=600):
    d = data.gmm_splits(1, sizes=(n_train, 200, 400))
    return {s: {k: v for k, v in d[s].items() if k in ("x", "y", "eta")} for s in d}


def test_vmapped_grid_equals_single_runs():
    tr = T.make_train(_tiny(256), method="picce_ce", setting="overlapped", num_classes=10, max_experts=4,
                      hidden=(16,), epochs=2, batch_size=64)
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
    _, a = T.run_grid(tr, [0, 1], [2, 4], {"lr": 3e-3, "alpha": 0.5}, fn=fn)
    _, b = T.run_grid(tr, [0, 1], [2, 4], {"lr": 1e-3, "alpha": 1.0}, fn=fn)
    assert fn._cache_size() == 1
    _, ref = T.run_grid(T.make_train(d, lr=3e-3, loss_kwargs={"alpha": 0.5}, **kw), [0, 1], [2, 4])
    np.testing.assert_allclose(a["train_loss"], ref["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(a["test"]["system_error"], ref["test"]["system_error"], atol=1e-6)
    assert not np.allclose(a["train_loss"], b["train_loss"])


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
