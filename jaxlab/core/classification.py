"""Binary classification metrics shared by the papers (AUROC with ties = 1/2, precision/recall).

* `auroc(scores, labels)`            Mann-Whitney AUROC, ties count one half (rank formula, O(N log N)).
* `precision_recall(pred, label)`    precision and recall of 0/1 predictions (0/0 -> 1).

Convention: `labels` are 0/1 (or bool); class 1 is the "positive" class, and a higher score means
"more likely positive". AUROC(-s) = 1 - AUROC(s).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata


def auroc(scores, labels) -> float:
    """Area under the ROC curve via the Mann-Whitney statistic (ties count 1/2).

    AUROC = (sum of the positives' average ranks - P (P + 1) / 2) / (P N_neg)
          = Pr[s_pos > s_neg] + 1/2 Pr[s_pos = s_neg].

    Args:
      scores: [N] real scores (higher = more likely class 1).
      labels: [N] 0/1 or bool labels (values > 0.5 count as class 1); both classes must occur.
    Returns:
      a Python float in [0, 1].

    >>> auroc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([0, 0, 1, 1]))
    0.875
    """
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel() > 0.5
    if s.shape != y.shape:
        raise ValueError(f"labels: expected the shape of scores {s.shape}, got {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: expected finite values")
    if y.all() or (~y).all():
        raise ValueError("labels: expected both classes present")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall(pred: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Precision and recall of binary predictions (0/0 -> 1 for precision, 0/0 -> 1 for recall).

    pred, label: [...] 0/1 arrays of the same shape. Returns (precision, recall) scalars.
    """
    pred, label = jnp.asarray(pred, jnp.float32), jnp.asarray(label, jnp.float32)
    if pred.shape != label.shape:
        raise ValueError(f"label: expected the shape of pred {pred.shape}, got {label.shape}")
    tp = jnp.sum(pred * label)
    prec = jnp.where(jnp.sum(pred) > 0, tp / jnp.maximum(jnp.sum(pred), 1.0), 1.0)
    rec = jnp.where(jnp.sum(label) > 0, tp / jnp.maximum(jnp.sum(label), 1.0), 1.0)
    return prec, rec
