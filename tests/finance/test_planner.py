"""Scheduler closed form, one-step hypergradient vs finite differences, provenance replay."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlab.finance import data, ops, planner, provenance
from jaxlab.finance import train as T


def test_scheduler_closed_form_and_reward():
    for e in range(12):
        assert planner.scheduler_alpha(e, tau=5.0) == pytest.approx(min(np.tanh(e / 5) + 0.01, 1.0))
    a = [planner.scheduler_alpha(e, tau=5.0, reward=0.1) for e in range(30)]
    assert np.all(np.diff(a) >= 0) and max(a) <= 1.0 and min(a) >= 0.001 - 1e-12
    assert planner.scheduler_update(3, 2) == (1.0, 3)      # counter grew -> R = 1
    assert planner.scheduler_update(0, 2) == (0.1, 0)      # reset -> R = .1
    assert planner.scheduler_update(2, 2) == (0.1, 2)
    with pytest.raises(ValueError, match="tau"):
        planner.scheduler_alpha(1, tau=0.0)


def _tiny_problem():
    """float64 tiny MLP task, a linear planner, and three exact-gradient op pairs."""
    k = jax.random.split(jax.random.PRNGKey(0), 8)
    B, T_, F, Q = 6, 16, 3, 3
    x = jax.random.normal(k[0], (B, T_, F))
    xb = jax.random.normal(k[1], (B, T_, F))
    y = jax.random.normal(k[2], (B,))
    yb = jax.random.normal(k[3], (B,))
    xv = jax.random.normal(k[4], (10, T_, F))
    yv = jax.random.normal(k[5], (10,))
    theta = {"w1": 0.3 * jax.random.normal(k[6], (T_ * F, 4)), "w2": 0.3 * jax.random.normal(k[7], (4,))}
    phi = {"wp": 0.1 * jnp.ones((2, Q)) + 0.05 * jnp.arange(2 * Q).reshape(2, Q) / Q,
           "wl": 0.2 * jnp.ones((2, Q)) - 0.07 * jnp.arange(2 * Q).reshape(2, Q) / Q}
    stats = jnp.stack([x.mean((1, 2)), x.std((1, 2))], -1)            # [B, 2]
    keys = jax.random.split(jax.random.PRNGKey(9), B)

    def policy_fn(ph):
        return jax.nn.softmax(stats @ ph["wp"], -1), jax.nn.sigmoid(stats @ ph["wl"])

    def augment_all(lam_bq):
        def one(xa, xbb, ya, ybb, lam, key):
            o0 = ops.jitter(xa, lam[0], key, sigma=0.1), ya
            o1 = ops.linear_mix(xa, xbb, ya, ybb, lam[1])
            o2 = ops.amplitude_mix(ops.scaling(xa, lam[2], key), xbb, ya, ybb, lam[2])
            return jnp.stack([o0[0], o1[0], o2[0]]), jnp.stack([o0[1], o1[1], o2[1]])
        return jax.vmap(one)(x, xb, y, yb, lam_bq, keys)

    def task_losses(th, xx, yy):
        h = jnp.tanh(xx.reshape(xx.shape[0], -1) @ th["w1"])
        return (h @ th["w2"] - yy) ** 2

    return phi, theta, dict(policy_fn=policy_fn, augment_all_fn=augment_all, task_losses_fn=task_losses,
                            x_val=xv, y_val=yv, eta=0.5, gamma=0.05)


@pytest.fixture(scope="module")
def hyper_x64():
    """float64 problem plus ONE compiled hypergradient (y_val is an argument) and ONE compiled objective,
    shared by the finite-difference and the mutation tests (compiling them dominates these tests)."""
    with jax.enable_x64(True):
        phi, theta, kw = _tiny_problem()
        phi = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), phi)
        flat, unravel = jax.flatten_util.ravel_pytree(phi)
        grad_fn = jax.jit(lambda ph, yv: planner.hypergradient(ph, theta, **dict(kw, y_val=yv)))
        obj_fn = jax.jit(lambda v: planner.hyper_objective(unravel(v), theta, **kw))
    return phi, kw, flat, grad_fn, obj_fn          # x64 must not stay on for the rest of the module


def test_one_step_hypergradient_matches_central_finite_difference(hyper_x64):
    phi, kw, flat, grad_fn, f = hyper_x64
    with jax.enable_x64(True):
        gflat = jax.flatten_util.ravel_pytree(grad_fn(phi, kw["y_val"]))[0]
        eps = 1e-5
        fd = np.array([(f(flat.at[i].add(eps)) - f(flat.at[i].add(-eps))) / (2 * eps) for i in range(flat.size)])
        assert np.max(np.abs(gflat)) > 1e-6                                   # not trivially zero
        np.testing.assert_allclose(np.asarray(gflat), fd, rtol=1e-4, atol=1e-9)


def test_hypergradient_changes_sign_with_the_validation_target(hyper_x64):
    """Mutation check: a val set that rewards the augmentation vs one that penalises it flips the p-gradient."""
    phi, kw, _, grad_fn, _ = hyper_x64
    with jax.enable_x64(True):
        g1 = grad_fn(phi, kw["y_val"])
        g2 = grad_fn(phi, -kw["y_val"] + 3.0)
        assert not np.allclose(np.asarray(g1["wp"]), np.asarray(g2["wp"]))


def test_risk_aware_outer_loss_gamma_zero_is_mse():
    phi, theta, kw = _tiny_problem()
    kw0 = dict(kw, gamma=0.0)

    @jax.jit
    def direct(ph):
        p, lam = kw["policy_fn"](ph)
        xs, ys = kw["augment_all_fn"](lam)
        xx, yy = planner.expected_augmentation(p, xs, ys)
        g = jax.grad(lambda th: jnp.mean(kw["task_losses_fn"](th, xx, yy)))(theta)
        th1 = planner.sgd_step(theta, g, kw["eta"])
        return jnp.mean(kw["task_losses_fn"](th1, kw["x_val"], kw["y_val"])), planner.hyper_objective(ph, theta, **kw0)

    mse, obj = direct(phi)
    np.testing.assert_allclose(float(obj), float(mse), rtol=1e-5)


def _small_config():
    c = ml_collections.ConfigDict(dict(model="dlinear", batch_size=16, epochs=2, steps_per_epoch=3, lr=1e-3,
                                       planner_lr=1e-3, planner_hidden=16, eta=1e-3, gamma=0.05, freq=2,
                                       planner_start=0, tau=5.0, patience=5, val_batch=32, st_all=False,
                                       k_targets=5, b_max=0.5, fixed_alpha=0.5))
    return c


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    panel, _ = data.synthetic_universe(2, num_assets=4, num_days=200)
    a, b = data.chronological_split(200)
    prep = T.prepare(panel, 12, a, b, 200)
    tr = T.make_train(T.TrainHParams.from_config(_small_config()), prep)
    path = str(tmp_path_factory.mktemp("prov") / "prov.jsonl")
    out = tr(jax.random.PRNGKey(0), "adaaug", log_path=path)
    return prep, tr, path, out


def test_provenance_replay_is_exact_and_key_sensitive(small_run):
    prep, tr, path, out = small_run
    recs = provenance.read_log(path)
    assert len(recs) == 6 and all(len(r["p_mean"]) == ops.NUM_PAIRS for r in recs)
    assert any(any(r["mask"]) for r in recs)
    res = provenance.replay(recs, tr.augment, prep.x_tr, prep.y_tr, prep.asset_tr, prep.day_tr)
    assert res["matched"] == res["steps"] == 6
    r = dict(recs[-1])
    r["key"] = list(r["key"])
    r["key"][-1] = (r["key"][-1] + 1) % 2 ** 32
    d, _ = provenance.replay_record(r, tr.augment, prep.x_tr, prep.y_tr, prep.asset_tr, prep.day_tr)
    assert d != recs[-1]["digest"]
    # the planner was updated by the hypergradient (its digest changes across steps)
    assert len({rr["phi_sha256"] for rr in recs}) > 1


def test_training_runs_and_reports_metrics(small_run):
    prep, tr, path, out = small_run
    m = out["metrics"]
    for k in ("val_mse", "test_mse", "test_mae", "ic", "rank_ic", "ls_sharpe", "ls_mdd"):
        assert np.isfinite(m[k]), k
    with pytest.raises(ValueError, match="method"):
        tr(jax.random.PRNGKey(0), "magic")


def test_original_method_never_augments(small_run):
    prep, tr, _, _ = small_run
    st = tr.init(jax.random.PRNGKey(1))
    x = prep.x_tr[:16]
    theta, phi = st.params["theta"], st.params["phi"]
    _, _, _, mask = tr.plan(theta, phi, x, jax.random.PRNGKey(2), 0, 1.0)
    assert not bool(mask.any())
    _, _, _, mask = tr.plan(theta, phi, x, jax.random.PRNGKey(2), 3, 1.0)
    assert bool(mask.all())
