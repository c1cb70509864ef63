"""Multi-expert learning-to-defer surrogate losses (PiCCE and baselines).

All losses take

* ``logits``: ``[B, K+J]`` - K class logits followed by J "defer to expert j" logits,
* ``labels``: ``[B]`` integer labels in ``[0, K)``,
* ``expert_preds``: ``[B, J]`` integer expert predictions in ``[0, K)``; ``-1`` marks an expert that
  gives no usable prediction (it is never counted as correct), which is how padded experts are encoded,
* ``num_classes`` (keyword): K,
* ``expert_mask`` (keyword, optional): ``[J]`` or ``[B, J]`` bool; inactive experts are removed from the
  softmax (their logit is treated as ``-inf``) and from every OvA term. This lets a grid over J be a
  ``vmap`` axis with logits padded to ``J_max``.
* ``reduction``: ``"none"`` (per-example ``[B]``), ``"mean"`` or ``"sum"``; ``where``: optional ``[B]`` bool
  mask applied before the reduction.

References:
  Liu, Cao, Feng, An, Ong. "When More Experts Hurt: Underfitting in Multi-Expert Learning to Defer"
  (PiCCE), arXiv 2602.17144, Definition 1 / Eq. 9.
  Verma, Barrejon, Nalisnick 2023 (multi-expert softmax / OvA), Mozannar & Sontag 2020 (L_CE^alpha),
  Mozannar et al. 2023 (RealizableSurrogate), Narasimhan et al. 2022 (post-hoc / decoupled).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------- validation helpers
def _concrete(x) -> np.ndarray | None:
    """Returns a NumPy copy of ``x`` when its value is known (not a tracer), else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # pragma: no cover - defensive (e.g. tracer subclasses)
        return None


def check_l2d_inputs(logits, labels, expert_preds, *, num_classes: int, expert_mask=None):
    """Validates the shapes (always) and label ranges (when values are concrete); returns J.

    Raises:
      ValueError naming the offending argument and what was expected.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    logits_shape, labels_shape, preds_shape = np.shape(logits), np.shape(labels), np.shape(expert_preds)
    if len(logits_shape) != 2:
        raise ValueError(f"logits must have shape [B, K+J], got shape {logits_shape}")
    if len(labels_shape) != 1 or labels_shape[0] != logits_shape[0]:
        raise ValueError(f"labels must have shape [B]=[{logits_shape[0]}], got shape {labels_shape}")
    if len(preds_shape) != 2 or preds_shape[0] != logits_shape[0]:
        raise ValueError(f"expert_preds must have shape [B, J] with B={logits_shape[0]}, got shape {preds_shape}")
    num_experts = preds_shape[1]
    if num_experts < 1:
        raise ValueError("expert_preds must hold at least one expert (J >= 1)")
    if logits_shape[1] != num_classes + num_experts:
        raise ValueError(
            f"logits last axis must be K+J = {num_classes}+{num_experts} = {num_classes + num_experts} "
            f"(num_classes + expert_preds.shape[1]), got {logits_shape[1]}")
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise ValueError(f"logits must be floating point, got dtype {jnp.result_type(logits)}")
    for name, arr in (("labels", labels), ("expert_preds", expert_preds)):
        if not jnp.issubdtype(jnp.result_type(arr), jnp.integer):
            raise ValueError(f"{name} must be integers, got dtype {jnp.result_type(arr)}")
    lab = _concrete(labels)
    if lab is not None and lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{lab.min()}, {lab.max()}]")
    prd = _concrete(expert_preds)
    if prd is not None and prd.size and (prd.min() < -1 or prd.max() >= num_classes):
        raise ValueError(
            f"expert_preds must lie in [0, {num_classes}) (or -1 for 'no prediction'), "
            f"got range [{prd.min()}, {prd.max()}]")
    if expert_mask is not None:
        mshape = np.shape(expert_mask)
        if mshape not in ((num_experts,), (logits_shape[0], num_experts)):
            raise ValueError(f"expert_mask must have shape [J]=[{num_experts}] or [B, J], got {mshape}")
    return num_experts


def _reduce(per_example: Array, reduction: str, where) -> Array:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if where is not None:
        if np.shape(where) != per_example.shape:
            raise ValueError(f"where must have shape {per_example.shape}, got {np.shape(where)}")
        per_example = jnp.where(where, per_example, 0.0)
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    denom = per_example.shape[0] if where is None else jnp.maximum(jnp.sum(where), 1)
    return per_example.sum() / denom


def _mask_bj(expert_mask, shape) -> Array:
    if expert_mask is None:
        return jnp.ones(shape, bool)
    return jnp.broadcast_to(jnp.asarray(expert_mask, bool), shape)


def expert_correct(labels, expert_preds, expert_mask=None) -> Array:
    """``C`` as a bool matrix: ``correct[b, j] = (m_j == y) and expert j active``. Returns ``[B, J]``."""
    correct = expert_preds == labels[:, None]
    return correct & _mask_bj(expert_mask, correct.shape)


def _masked_logits(logits, num_classes, mask_bj) -> Array:
    """Sets inactive expert logits to -inf (softmax-family losses)."""
    cls, exp = logits[:, :num_classes], logits[:, num_classes:]
    return jnp.concatenate([cls, jnp.where(mask_bj, exp, -jnp.inf)], axis=-1)


def picce_selection(logits, labels, expert_preds, *, num_classes: int, expert_mask=None):
    """The expert PiCCE credits: ``j_hat = argmax_{j in C} theta_{K+j}`` (no gradient; integer).

    Returns:
      (sel ``[B]`` int32, any_correct ``[B]`` bool). ``sel`` is 0 (and meaningless) when no expert is correct.
      Ties go to the lowest index (``jnp.argmax`` convention).
    """
    correct = expert_correct(labels, expert_preds, expert_mask)
    exp_logits = jax.lax.stop_gradient(logits[:, num_classes:])
    sel = jnp.argmax(jnp.where(correct, exp_logits, -jnp.inf), axis=-1).astype(jnp.int32)
    return sel, correct.any(-1)


def _phi(z):
    """Logistic loss phi(z) = log(1 + e^{-z})."""
    return jax.nn.softplus(-z)


def _bce(z, target):
    """Per-logit binary cross-entropy with targets in {0, 1}: t*phi(z) + (1-t)*phi(-z)."""
    return target * _phi(z) + (1.0 - target) * _phi(-z)


# ----------------------------------------------------------------------------- softmax family
def multi_expert_ce_loss(logits, labels, expert_preds, *, num_classes: int, expert_mask=None,
                         reduction: str = "mean", where=None) -> Array:
    """Vanilla multi-expert softmax CE (Verma et al. 2023): ``-log q_y - sum_{j in C} log q_{K+j}``.

    ``q = softmax(theta)`` over all K+J logits. Population minimizer (PiCCE paper Eq. 6):
    ``q_y = eta_y/(1+A)``, ``q_{K+j} = Acc_j/(1+A)``, ``A = sum_j Acc_j``.

    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    mask = _mask_bj(expert_mask, expert_preds.shape)
    lp = jax.nn.log_softmax(_masked_logits(logits, num_classes, mask), axis=-1)
    correct = expert_correct(labels, expert_preds, mask)
    cls_term = -jnp.take_along_axis(lp, labels[:, None], axis=-1)[:, 0]
    exp_term = -jnp.where(correct, lp[:, num_classes:], 0.0).sum(-1)
    return _reduce(cls_term + exp_term, reduction, where)


def picce_ce_loss(logits, labels, expert_preds, *, num_classes: int, expert_mask=None,
                  reduction: str = "mean", where=None) -> Array:
    """PiCCE-CE (Definition 1): ``-log q_y - 1[C != {}] log q_{K+j_hat}``, ``j_hat = argmax_{j in C} theta_{K+j}``.

    The second term equals ``logsumexp(theta) - max_{j in C} theta_{K+j}``, so the loss is continuous
    in theta (Theorem 2) although ``j_hat`` is an argmax; the index carries no gradient. Population
    minimizer: ``q_y = eta_y/(1+V)`` with ``V = P(some expert correct) <= 1``, so the class mass is >= 1/2.

    Winner-take-all: only the top-scoring correct expert is credited, so redundant experts are starved
    (their scores estimate first-correct masses, not accuracies); harmless for the system error, but
    only the top expert's accuracy is identifiable. The population objective has one local minimum per
    expert ranking (see ``jaxlab.l2d.theory.ranking_inits``); Theorem 6 concerns the global one.

    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    mask = _mask_bj(expert_mask, expert_preds.shape)
    lp = jax.nn.log_softmax(_masked_logits(logits, num_classes, mask), axis=-1)
    sel, anyc = picce_selection(logits, labels, expert_preds, num_classes=num_classes, expert_mask=mask)
    cls_term = -jnp.take_along_axis(lp, labels[:, None], axis=-1)[:, 0]
    lp_sel = jnp.take_along_axis(lp[:, num_classes:], sel[:, None], axis=-1)[:, 0]
    exp_term = -jnp.where(anyc, lp_sel, 0.0)
    return _reduce(cls_term + exp_term, reduction, where)


def mozannar_sontag_ce_loss(logits, labels, expert_preds, *, num_classes: int, alpha: float = 1.0,
                            reduction: str = "mean", where=None) -> Array:
    """Single-expert L_CE^alpha (Mozannar & Sontag 2020).

    ``-(alpha 1[m != y] + 1[m = y]) log q_y - 1[m = y] log q_perp`` with ``q = softmax`` over K+1 logits.
    ``alpha = 1`` is the standard surrogate and equals the multi-expert CE with J = 1.

    Args:
      expert_preds: ``[B, 1]`` (exactly one expert).
    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    num_experts = check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes)
    if num_experts != 1:
        raise ValueError(f"expert_preds must have shape [B, 1] for the single-expert loss, got J={num_experts}")
    lp = jax.nn.log_softmax(logits, axis=-1)
    correct = (expert_preds[:, 0] == labels)
    lp_y = jnp.take_along_axis(lp, labels[:, None], axis=-1)[:, 0]
    weight = jnp.where(correct, 1.0, alpha)
    per_ex = -weight * lp_y - jnp.where(correct, lp[:, num_classes], 0.0)
    return _reduce(per_ex, reduction, where)


def realizable_surrogate_loss(logits, labels, expert_preds, *, num_classes: int, alpha: float = 1.0,
                              expert_mask=None, reduction: str = "mean", where=None) -> Array:
    """RealizableSurrogate (Mozannar et al. 2023) with the multi-expert numerator [reconstructed].

    ``RS = -log((e^{theta_y} + sum_{j in C} e^{theta_{K+j}}) / sum_k e^{theta_k})``, mixed as
    ``alpha * RS + (1 - alpha) * CE(class logits only)``. Natural logarithm (the original uses log2,
    which only rescales the loss). Non-identifiable across correct experts by construction.

    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    mask = _mask_bj(expert_mask, expert_preds.shape)
    theta = _masked_logits(logits, num_classes, mask)
    correct = expert_correct(labels, expert_preds, mask)
    good = jnp.concatenate([jax.nn.one_hot(labels, num_classes, dtype=bool), correct], axis=-1)
    rs = jax.nn.logsumexp(theta, axis=-1) - jax.nn.logsumexp(jnp.where(good, theta, -jnp.inf), axis=-1)
    cls_lp = jax.nn.log_softmax(logits[:, :num_classes], axis=-1)
    ce = -jnp.take_along_axis(cls_lp, labels[:, None], axis=-1)[:, 0]
    return _reduce(alpha * rs + (1.0 - alpha) * ce, reduction, where)


# ----------------------------------------------------------------------------- one-vs-all family
def _ova_class_term(logits, labels, num_classes):
    target = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    return _bce(logits[:, :num_classes], target).sum(-1)


def multi_expert_ova_loss(logits, labels, expert_preds, *, num_classes: int, expert_mask=None,
                          reduction: str = "mean", where=None) -> Array:
    """Vanilla multi-expert OvA (Verma et al. 2023).

    ``phi(theta_y) + sum_{k != y} phi(-theta_k) + sum_j [phi(-theta_{K+j}) + 1[j in C](phi(theta_{K+j}) - phi(-theta_{K+j}))]``,
    i.e. per-logit BCE with targets ``[onehot(y), 1[m_j = y]]``; ``phi(z) = log(1 + e^{-z})``.

    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    mask = _mask_bj(expert_mask, expert_preds.shape)
    correct = expert_correct(labels, expert_preds, mask)
    exp_term = jnp.where(mask, _bce(logits[:, num_classes:], correct.astype(logits.dtype)), 0.0).sum(-1)
    return _reduce(_ova_class_term(logits, labels, num_classes) + exp_term, reduction, where)


def picce_ova_loss(logits, labels, expert_preds, *, num_classes: int, expert_mask=None,
                   reduction: str = "mean", where=None) -> Array:
    """PiCCE-OvA: per-logit BCE with targets ``[onehot(y), onehot(j_hat) * 1[C != {}]]``.

    ``sigmoid(theta_{K+top})`` recovers the top expert's accuracy at the population minimizer.

    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    mask = _mask_bj(expert_mask, expert_preds.shape)
    sel, anyc = picce_selection(logits, labels, expert_preds, num_classes=num_classes, expert_mask=mask)
    num_experts = expert_preds.shape[1]
    target = jax.nn.one_hot(sel, num_experts, dtype=logits.dtype) * anyc[:, None].astype(logits.dtype)
    exp_term = jnp.where(mask, _bce(logits[:, num_classes:], target), 0.0).sum(-1)
    return _reduce(_ova_class_term(logits, labels, num_classes) + exp_term, reduction, where)


# ----------------------------------------------------------------------------- decoupled / post-hoc
def decoupled_loss(logits, labels, expert_preds, *, num_classes: int, expert_weight: float = 1.0,
                   expert_mask=None, reduction: str = "mean", where=None) -> Array:
    """Decoupled (post-hoc style) baseline [reconstructed; verify against Narasimhan et al. 2022].

    ``CE(softmax over the K class logits only) + (lambda / J) * sum_j BCE(theta_{K+j}, 1[m_j = y])``,
    where J counts active experts and ``lambda = expert_weight``. Each expert head estimates its own
    accuracy; decide with :func:`jaxlab.l2d.decision.deferral_scores` ``kind="decoupled"``
    (defer iff ``max_j sigmoid(g_j) > max_y softmax_y``).

    Returns: ``[B]`` if ``reduction="none"`` else a scalar.
    """
    check_l2d_inputs(logits, labels, expert_preds, num_classes=num_classes, expert_mask=expert_mask)
    mask = _mask_bj(expert_mask, expert_preds.shape)
    correct = expert_correct(labels, expert_preds, mask)
    cls_lp = jax.nn.log_softmax(logits[:, :num_classes], axis=-1)
    ce = -jnp.take_along_axis(cls_lp, labels[:, None], axis=-1)[:, 0]
    bce = jnp.where(mask, _bce(logits[:, num_classes:], correct.astype(logits.dtype)), 0.0).sum(-1)
    n_active = jnp.maximum(mask.sum(-1), 1)
    return _reduce(ce + expert_weight * bce / n_active, reduction, where)


# ----------------------------------------------------------------------------- registry
LOSSES: dict[str, Callable[..., Array]] = {
    "ce": multi_expert_ce_loss,
    "ova": multi_expert_ova_loss,
    "picce_ce": picce_ce_loss,
    "picce_ova": picce_ova_loss,
    "realizable": realizable_surrogate_loss,
    "decoupled": decoupled_loss,
}

#: How each method turns logits into deferral scores (see decision.deferral_scores).
SCORE_KIND: dict[str, str] = {
    "ce": "softmax", "picce_ce": "softmax", "realizable": "softmax",
    "ova": "sigmoid", "picce_ova": "sigmoid", "decoupled": "decoupled",
}


def get_loss(name: str) -> Callable[..., Array]:
    """Looks up a loss by method name (one of ``LOSSES``)."""
    if name not in LOSSES:
        raise ValueError(f"method must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]
