"""jaxlab.core.classification: AUROC against the pairwise definition (ties 1/2), sign flip, precision/recall."""

import numpy as np
import pytest

from jaxlab.core.classification import auroc, precision_recall


def _pairwise_auroc(s, y):
    pos, neg = s[y], s[~y]
    return (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()


def test_auroc_closed_forms():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    # one tie among 4 pairs: (1 + 1 + 1 + 1/2) / 4
    assert auroc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([0, 0, 1, 1])) == 0.875


def test_auroc_matches_rank_formula_with_ties_and_sign_flip():
    rng = np.random.default_rng(0)
    s, y = rng.integers(0, 5, 300).astype(float), rng.random(300) < 0.3
    np.testing.assert_allclose(auroc(s, y), _pairwise_auroc(s, y), rtol=1e-12)
    np.testing.assert_allclose(auroc(-s, y), 1.0 - auroc(s, y), rtol=1e-12)
    # invariant to a strictly increasing map of the scores
    np.testing.assert_allclose(auroc(np.exp(s), y), auroc(s, y), rtol=1e-12)


def test_auroc_bad_input():
    with pytest.raises(ValueError, match="labels"):
        auroc(np.array([0.5, 0.5]), np.array([1, 1]))
    with pytest.raises(ValueError, match="labels"):
        auroc(np.array([0.5, 0.5, 0.1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="scores"):
        auroc(np.array([np.nan, 0.5]), np.array([1, 0]))


def test_precision_recall_closed_form_and_empty_cases():
    p, r = precision_recall(np.array([0, 1, 1, 0, 0, 0, 0.0]), np.array([0, 0, 1, 1, 0, 0, 0.0]))
    np.testing.assert_allclose([float(p), float(r)], [0.5, 0.5])
    p, r = precision_recall(np.zeros(3), np.zeros(3))          # 0/0 -> 1 for both
    assert float(p) == 1.0 and float(r) == 1.0
    with pytest.raises(ValueError, match="label"):
        precision_recall(np.zeros(3), np.zeros(4))
