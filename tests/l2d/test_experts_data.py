"""Synthetic experts (frozen, seeded, nested over J) and the data sets (direct vs tfds builders)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.l2d import data, experts as E, theory as T

K = 10


def _labels(n=20000, seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), (n,), 0, K)


@pytest.mark.parametrize("setting", E.SETTINGS)
def test_empirical_accuracy_matches_table(setting):
    y = _labels()
    ex = E.sample_experts(jax.random.PRNGKey(1), y, 4, setting=setting, max_experts=6, num_classes=K)
    preds, table = np.asarray(ex.preds), np.asarray(ex.acc_table)
    yy = np.asarray(y)
    np.testing.assert_array_equal(np.asarray(ex.mask), [1, 1, 1, 1, 0, 0])
    assert np.all(preds[:, 4:] == -1) and np.all(table[4:] == 0)
    for j in range(4):
        for k in range(K):
            sel = yy == k
            p = table[j, k]
            se = np.sqrt(p * (1 - p) / sel.sum())
            assert abs((preds[sel, j] == k).mean() - p) < 5 * se + 1e-9
    # wrong predictions are uniform over the K-1 wrong labels
    wrong = preds[:, 0] != yy
    offs = (preds[wrong, 0] - yy[wrong]) % K
    counts = np.bincount(offs, minlength=K)
    assert counts[0] == 0
    expected = wrong.sum() / (K - 1)
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))


def test_settings_structure():
    key = jax.random.PRNGKey(3)
    spec, _ = E.expert_accuracy_table(key, 4, setting="specialist", max_experts=4, num_classes=K)
    assert np.all(np.asarray(spec) == np.asarray(spec)[0])            # identical copies
    np.testing.assert_allclose(np.asarray(spec)[0], [0.95] * 5 + [0.2] * 5)
    over, _ = E.expert_accuracy_table(key, 4, setting="overlapped", max_experts=4, num_classes=K)
    over = np.asarray(over)
    assert np.all((over == 0.95).sum(1) == 5) and len({tuple(r) for r in over}) > 1
    var, _ = E.expert_accuracy_table(key, 4, setting="varying", max_experts=6, num_classes=K)
    np.testing.assert_allclose(np.asarray(var)[:4, 0], np.linspace(0.95, 0.6, 4), atol=1e-6)
    one, _ = E.expert_accuracy_table(key, 1, setting="varying", max_experts=6, num_classes=K)
    assert float(one[0, 0]) == pytest.approx(0.95)
    # varying accuracies: a unique best expert, Condition 1 holds (independent given y)
    assert T.satisfies_condition1(T.independent_pattern_probs(np.asarray(var)[:4, 0]))
    with pytest.raises(ValueError, match="setting"):
        E.expert_accuracy_table(key, 4, setting="animal", max_experts=4, num_classes=K)


def test_experts_frozen_and_nested_over_j_under_vmap():
    y = _labels(500)
    fn = jax.jit(jax.vmap(lambda j: E.sample_experts(jax.random.PRNGKey(5), y, j, setting="overlapped",
                                                     max_experts=8, num_classes=K)))
    ex = fn(jnp.asarray([2, 8]))
    p2, p8 = np.asarray(ex.preds[0]), np.asarray(ex.preds[1])
    np.testing.assert_array_equal(p2[:, :2], p8[:, :2])                # first J experts are shared
    assert np.all(p2[:, 2:] == -1)
    again = fn(jnp.asarray([2, 8]))
    np.testing.assert_array_equal(np.asarray(again.preds), np.asarray(ex.preds))   # frozen given the key


def test_gmm_posterior_is_bayes():
    d = data.gmm_splits(0, sizes=(10, 10, 2000))
    te = d["test"]
    np.testing.assert_allclose(te["eta"].sum(-1), 1.0, atol=1e-5)
    # recompute eta from the log-likelihoods in NumPy
    means = np.asarray(data.gmm_means(jax.random.split(jax.random.PRNGKey(0), 4)[0], scale=0.5))
    ll = -0.5 * ((te["x"][:, None, :] - means[None]) ** 2).sum(-1)
    eta = np.exp(ll - ll.max(-1, keepdims=True))
    eta /= eta.sum(-1, keepdims=True)
    np.testing.assert_allclose(te["eta"], eta, atol=1e-4)
    # labels are drawn from eta: the Bayes accuracy equals the mean max posterior within sampling error
    acc = (te["eta"].argmax(-1) == te["y"]).mean()
    assert abs(acc - te["eta"].max(-1).mean()) < 0.04


def test_digits_splits():
    d = data.digits_splits(0)
    sizes = [len(d[s]["y"]) for s in data.SPLITS]
    assert sum(sizes) == 1797 and sizes[0] == 1078
    assert d["train"]["x"].shape == (1078, 64)
    np.testing.assert_allclose(d["train"]["x"].mean(0), 0.0, atol=1e-4)
    assert set(np.unique(d["test"]["y"])) == set(range(10))
    np.testing.assert_array_equal(data.digits_splits(0)["test"]["y"], d["test"]["y"])
    with pytest.raises(ValueError, match="fractions"):
        data.digits_splits(0, fractions=(0.5, 0.5, 0.5))


def test_tfds_builders_match_direct_generation(tmp_path):
    via_tfds = data.load("gmm", source="tfds", data_dir=str(tmp_path), config="tiny")
    direct = data.load("gmm", source="direct", config="tiny")
    for split in data.SPLITS:
        for k in ("x", "y", "eta", "index"):
            np.testing.assert_allclose(via_tfds[split][k], direct[split][k], rtol=1e-6)
    dig = data.load("digits", source="tfds", data_dir=str(tmp_path))
    dig_direct = data.digits_splits(0)
    np.testing.assert_allclose(dig["test"]["x"], dig_direct["test"]["x"], rtol=1e-6)
    np.testing.assert_array_equal(dig["train"]["y"], dig_direct["train"]["y"])
    with pytest.raises(ValueError, match="name"):
        data.load("cifar", source="direct")
