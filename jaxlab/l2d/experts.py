"""Seeded synthetic experts, frozen per example (like real annotations).

Three settings (CPU analogues of the paper's CIFAR-100 / ImageNet synthetic experts; spec A7):

* ``"specialist"``: every expert is an identical-specialty copy (the "animal expert" analogue): correct
  w.p. ``p_in`` on a fixed set of ``specialty_size`` classes (classes ``0..specialty_size-1``), else ``p_out``.
* ``"overlapped"``: like ``"specialist"`` but each expert draws its own random specialty set, so the sets
  overlap partially ("overlapped animal expert").
* ``"varying"``: class-independent accuracies ``linspace(acc_high, acc_low, J)`` (expert 0 is the best;
  J = 1 gives ``acc_high``), so there is a unique most-accurate expert and Condition 1 holds.

A wrong expert predicts a label drawn uniformly from the K-1 wrong classes. The number of experts may be
a traced value (a ``vmap`` axis): outputs are padded to ``max_experts`` and inactive experts predict -1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

SETTINGS = ("specialist", "overlapped", "varying")


class Experts(NamedTuple):
    preds: jax.Array      # [N, J_max] int32, -1 for inactive experts
    acc_table: jax.Array  # [J_max, K] P(m_j = y | y) (0 for inactive experts)
    mask: jax.Array       # [J_max] bool, j < J


def expert_accuracy_table(key, num_experts, *, setting: str, max_experts: int, num_classes: int,
                          specialty_size: int = 5, p_in: float = 0.95, p_out: float = 0.2,
                          acc_high: float = 0.95, acc_low: float = 0.6):
    """Per-class accuracies ``[J_max, K]`` and active mask ``[J_max]`` for one expert setting.

    ``key`` only matters for ``"overlapped"`` (the random specialty sets); ``num_experts`` may be traced.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if not 1 <= specialty_size <= num_classes:
        raise ValueError(f"specialty_size must be in [1, {num_classes}], got {specialty_size}")
    j_idx = jnp.arange(max_experts)
    mask = j_idx < num_experts
    if setting == "specialist":
        in_spec = jnp.broadcast_to(jnp.arange(num_classes) < specialty_size, (max_experts, num_classes))
        table = jnp.where(in_spec, p_in, p_out)
    elif setting == "overlapped":
        keys = jax.random.split(key, max_experts)
        ranks = jax.vmap(lambda k: jnp.argsort(jax.random.permutation(k, num_classes)))(keys)
        table = jnp.where(ranks < specialty_size, p_in, p_out)
    else:
        frac = j_idx / jnp.maximum(num_experts - 1, 1)
        acc = acc_high - (acc_high - acc_low) * frac
        table = jnp.broadcast_to(acc[:, None], (max_experts, num_classes))
    table = jnp.where(mask[:, None], table, 0.0).astype(jnp.float32)
    return table, mask


def sample_expert_predictions(key, labels, acc_table, mask, *, num_classes: int) -> jax.Array:
    """Draws frozen predictions ``[N, J_max]``: correct w.p. ``acc_table[j, y]``, else a uniform wrong label."""
    k_c, k_w = jax.random.split(key)
    n, jmax = labels.shape[0], acc_table.shape[0]
    p = acc_table.T[labels]                                          # [N, J_max]
    correct = jax.random.uniform(k_c, (n, jmax)) < p
    offset = jax.random.randint(k_w, (n, jmax), 1, num_classes)      # 1..K-1
    wrong = (labels[:, None] + offset) % num_classes
    preds = jnp.where(correct, labels[:, None], wrong)
    return jnp.where(mask[None, :], preds, -1).astype(jnp.int32)


def sample_experts(key, labels, num_experts, *, setting: str, max_experts: int, num_classes: int,
                   **table_kwargs) -> Experts:
    """Expert accuracy table and frozen predictions for ``labels: [N]`` (``num_experts`` may be traced).

    The same ``key`` gives the same specialty sets; use :func:`expert_accuracy_table` once and
    :func:`sample_expert_predictions` per split to share the experts across train/val/test.
    """
    k_t, k_p = jax.random.split(key)
    table, mask = expert_accuracy_table(k_t, num_experts, setting=setting, max_experts=max_experts,
                                        num_classes=num_classes, **table_kwargs)
    return Experts(sample_expert_predictions(k_p, labels, table, mask, num_classes=num_classes), table, mask)
