"""Decision rule, metrics and probability recovery for learning to defer with J experts.

Decision rule (standard; PiCCE audit ``evaluate()``): ``a = argmax`` over the K+J deferral scores; if
``a < K`` predict class ``a``, else defer to expert ``a - K``. For softmax- and OvA-type losses the scores
are monotone in the logits so ``argmax`` over logits is the same; the decoupled baseline compares
``softmax`` over the K class logits with ``sigmoid`` of each expert head.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.l2d.losses import check_l2d_inputs

Array = jax.Array

SCORE_KINDS = ("softmax", "sigmoid", "decoupled")


class Decision(NamedTuple):
    """Per-example decisions (all ``[B]``)."""
    action: Array        # int in [0, K+J): argmax of the scores
    defer: Array         # bool: action >= K
    pred_class: Array    # int: the classifier's own prediction, argmax over the first K scores
    expert: Array        # int: expert deferred to, -1 when predicting


def _mask_bj(expert_mask, shape):
    if expert_mask is None:
        return jnp.ones(shape, bool)
    return jnp.broadcast_to(jnp.asarray(expert_mask, bool), shape)


def deferral_scores(logits, *, num_classes: int, kind: str = "softmax", expert_mask=None) -> Array:
    """Scores whose argmax is the decision. ``logits: [B, K+J]`` -> ``[B, K+J]``.

    ``kind``: ``"softmax"`` (softmax over all active K+J logits), ``"sigmoid"`` (elementwise sigmoid, OvA),
    ``"decoupled"`` (softmax over the K class logits, sigmoid over each expert head). Inactive experts
    (``expert_mask`` False) get score ``-inf``.
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"kind must be one of {SCORE_KINDS}, got {kind!r}")
    if np.ndim(logits) != 2 or np.shape(logits)[1] <= num_classes:
        raise ValueError(f"logits must have shape [B, K+J] with K={num_classes} and J >= 1, got {np.shape(logits)}")
    cls, exp = logits[:, :num_classes], logits[:, num_classes:]
    mask = _mask_bj(expert_mask, exp.shape)
    exp = jnp.where(mask, exp, -jnp.inf)
    if kind == "softmax":
        scores = jax.nn.softmax(jnp.concatenate([cls, exp], -1), axis=-1)
    elif kind == "sigmoid":
        scores = jax.nn.sigmoid(jnp.concatenate([cls, exp], -1))
    else:
        scores = jnp.concatenate([jax.nn.softmax(cls, axis=-1), jax.nn.sigmoid(exp)], -1)
    return jnp.concatenate([scores[:, :num_classes], jnp.where(mask, scores[:, num_classes:], -jnp.inf)], -1)


def decide(scores, *, num_classes: int) -> Decision:
    """Applies the argmax-over-K+J rule. ``scores: [B, K+J]`` -> :class:`Decision` of ``[B]`` arrays."""
    action = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    defer = action >= num_classes
    pred_class = jnp.argmax(scores[:, :num_classes], axis=-1).astype(jnp.int32)
    expert = jnp.where(defer, action - num_classes, -1)
    return Decision(action=action, defer=defer, pred_class=pred_class, expert=expert)


def system_prediction(decision: Decision, expert_preds) -> Array:
    """Final label of the human-AI system: the class when predicting, expert's label when deferring. ``[B]``."""
    idx = jnp.maximum(decision.expert, 0)
    exp_label = jnp.take_along_axis(expert_preds, idx[:, None], axis=-1)[:, 0]
    return jnp.where(decision.defer, exp_label, decision.pred_class)


def class_mass(logits, *, num_classes: int, expert_mask=None) -> Array:
    """``sum_{k<K} softmax(theta)_k`` per example ``[B]``: 1/(1+A) at the vanilla CE optimum, 1/(1+V) for PiCCE."""
    cls, exp = logits[:, :num_classes], logits[:, num_classes:]
    exp = jnp.where(_mask_bj(expert_mask, exp.shape), exp, -jnp.inf)
    q = jax.nn.softmax(jnp.concatenate([cls, exp], -1), axis=-1)
    return q[:, :num_classes].sum(-1)


def l2d_metrics(logits, labels, expert_preds, *, num_classes: int, kind: str = "softmax",
                expert_mask=None, acc_table=None) -> dict[str, Array]:
    """System metrics on one batch/split.

    Args:
      logits: ``[B, K+J]``; labels: ``[B]``; expert_preds: ``[B, J]``.
      kind: score kind of the method (see :func:`deferral_scores`).
      expert_mask: optional ``[J]`` bool of active experts.
      acc_table: optional ``[J, K]`` generating accuracies ``P(m_j = y | y)``; enables the deferral-target
        report (does the method defer to the most accurate expert for the example's class?).

    Returns:
      dict with scalars ``system_error, coverage, classifier_accuracy, class_mass`` and, per expert ``[J]``,
      ``defer_frac`` (share of all points sent to j) and ``expert_accuracy`` (empirical); with ``acc_table``
      also ``defer_to_best`` (share of deferrals that go to an expert of maximal accuracy for the true class;
      NaN without deferrals) and ``defer_regret`` (mean accuracy gap to that expert over deferrals).
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    num_experts = expert_preds.shape[1]
    if expert_mask is not None and np.ndim(expert_mask) != 1:
        raise ValueError(f"expert_mask must have shape [J] in l2d_metrics, got {np.shape(expert_mask)}")
    mask = _mask_bj(expert_mask, (num_experts,))
    dec = decide(deferral_scores(logits, num_classes=num_classes, kind=kind, expert_mask=mask),
                 num_classes=num_classes)
    final = system_prediction(dec, expert_preds)
    onehot_e = jax.nn.one_hot(dec.expert, num_experts) * dec.defer[:, None]
    out = {
        "system_error": jnp.mean(final != labels),
        "coverage": jnp.mean(~dec.defer),
        "classifier_accuracy": jnp.mean(dec.pred_class == labels),
        "class_mass": jnp.mean(class_mass(logits, num_classes=num_classes, expert_mask=mask)),
        "defer_frac": onehot_e.mean(0),
        "expert_accuracy": jnp.where(mask, jnp.mean(expert_preds == labels[:, None], axis=0), jnp.nan),
    }
    if acc_table is not None:
        acc_table = jnp.asarray(acc_table)
        if acc_table.shape != (num_experts, num_classes):
            raise ValueError(f"acc_table must have shape [J, K]=[{num_experts}, {num_classes}], got {acc_table.shape}")
        acc_y = jnp.where(mask[None, :], acc_table.T[labels], -jnp.inf)       # [B, J]
        best = acc_y.max(-1)
        chosen = jnp.take_along_axis(acc_y, jnp.maximum(dec.expert, 0)[:, None], -1)[:, 0]
        n_def = dec.defer.sum()
        is_best = (chosen >= best - 1e-6) & dec.defer
        out["defer_to_best"] = jnp.where(n_def > 0, is_best.sum() / jnp.maximum(n_def, 1), jnp.nan)
        out["defer_regret"] = jnp.where(
            n_def > 0, jnp.where(dec.defer, best - chosen, 0.0).sum() / jnp.maximum(n_def, 1), jnp.nan)
    return out


def recover_probabilities(logits, *, num_classes: int, kind: str = "softmax", expert_mask=None):
    """Class probabilities and the top-ranked expert's accuracy implied by a (near-)minimizer.

    CE family (Lemma 5 / Theorem 6 with the erratum): ``eta_hat = q_{:K} / sum_{k<K} q_k``,
    ``V_hat = sum_j q_{K+j} / sum_{k<K} q_k``, ``Acc_top = q_{K+top} / sum_{k<K} q_k = q_{K+top}(1+V)``
    (the printed ``Acc V/(1+V)`` is wrong). OvA: ``eta_hat = sigmoid(theta_{:K})``,
    ``Acc_top = sigmoid(theta_{K+top})``. Only the top expert's accuracy is identifiable.

    Returns:
      dict: ``eta [B, K]``, ``top [B]`` (index of the highest expert logit), ``acc_top [B]`` and, for the
      CE family, ``union [B]`` (V_hat).
    """
    cls, exp = logits[:, :num_classes], logits[:, num_classes:]
    mask = _mask_bj(expert_mask, exp.shape)
    exp = jnp.where(mask, exp, -jnp.inf)
    top = jnp.argmax(exp, axis=-1).astype(jnp.int32)
    if kind == "softmax":
        q = jax.nn.softmax(jnp.concatenate([cls, exp], -1), axis=-1)
        mass = q[:, :num_classes].sum(-1)
        q_top = jnp.take_along_axis(q[:, num_classes:], top[:, None], -1)[:, 0]
        return {"eta": q[:, :num_classes] / mass[:, None], "top": top, "acc_top": q_top / mass,
                "union": q[:, num_classes:].sum(-1) / mass}
    if kind == "sigmoid":
        return {"eta": jax.nn.sigmoid(cls), "top": top,
                "acc_top": jax.nn.sigmoid(jnp.take_along_axis(exp, top[:, None], -1)[:, 0])}
    raise ValueError(f"kind must be 'softmax' or 'sigmoid' for recovery, got {kind!r}")
