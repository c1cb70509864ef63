"""Training an MLP scorer with a multi-expert L2D loss: ``make_train(...) -> train(key, num_experts)``.

Everything inside ``train`` is jit-able and both arguments can be ``vmap`` axes (seeds and the number of
experts J; logits are padded to ``max_experts`` and inactive experts masked), so one ``jax.jit`` covers a
whole method x setting grid. Experts are drawn once per (seed, split) inside ``train`` and frozen.
Per-epoch validation and test metrics come back stacked by ``lax.scan`` (shape ``[E, ...]``), so the
training budget (short / medium / best-on-validation) is read off one run.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxlab.core import nets
from jaxlab.l2d import decision, experts, losses


MLP = nets.MLP          # ReLU hidden layers: ``x [B, d] -> logits [B, K + J_max]``


def theory_masses(acc_table, mask, labels, eta=None):
    """Population class masses at x: vanilla CE ``1/(1+A(x))`` and PiCCE ``1/(1+V(x))``, averaged over points.

    ``A(x) = sum_y eta_y(x) sum_j acc[j, y]``, ``V(x) = sum_y eta_y(x) (1 - prod_j (1 - acc[j, y]))``
    (experts independent given y). Without ``eta`` the one-hot label is used. Returns two scalars.
    """
    num_classes = acc_table.shape[1]
    w = jax.nn.one_hot(labels, num_classes) if eta is None else eta              # [N, K]
    acc = jnp.where(mask[:, None], acc_table, 0.0)
    a_y = acc.sum(0)                                                             # [K]
    v_y = 1.0 - jnp.prod(1.0 - acc, axis=0)                                      # [K]
    return jnp.mean(1.0 / (1.0 + w @ a_y)), jnp.mean(1.0 / (1.0 + w @ v_y))


def make_train(data: dict[str, dict[str, Any]], *, method: str, setting: str, num_classes: int,
               max_experts: int, hidden: Sequence[int] = (256, 256), lr: float = 1e-3,
               batch_size: int = 128, epochs: int = 30, loss_kwargs: dict | None = None,
               expert_kwargs: dict | None = None) -> Callable:
    """Builds ``train(key, num_experts, hparams=None) -> (params, metrics)``.

    Args:
      data: ``{"train"|"validation"|"test": {"x": [N, d], "y": [N], optional "eta": [N, K]}}``.
      method: a key of :data:`jaxlab.l2d.losses.LOSSES`.
      setting: an expert setting (:data:`jaxlab.l2d.experts.SETTINGS`).
      lr, loss_kwargs: defaults; ``train``'s ``hparams`` (``{"lr": scalar, <loss kwarg>: scalar}``, values may
        be traced, so a grid over them needs no recompilation) override them.
    Returns:
      ``train``; its ``metrics`` dict holds ``train_loss [E]`` and, for ``val``/``test``, every
      :func:`jaxlab.l2d.decision.l2d_metrics` entry stacked over epochs (``[E]`` or ``[E, J_max]``), plus
      the population class masses ``mass_vanilla_theory`` / ``mass_picce_theory`` (scalars).
    """
    loss_fn = losses.get_loss(method)
    kind = losses.SCORE_KIND[method]
    loss_kwargs = dict(loss_kwargs or {})
    expert_kwargs = dict(expert_kwargs or {})
    if setting not in experts.SETTINGS:
        raise ValueError(f"setting must be one of {experts.SETTINGS}, got {setting!r}")
    arrays = {s: {k: jnp.asarray(v) for k, v in d.items() if k in ("x", "y", "eta")} for s, d in data.items()}
    for s in ("train", "validation", "test"):
        if s not in arrays:
            raise ValueError(f"data must have a {s!r} split, got {sorted(arrays)}")
    x_tr, y_tr = arrays["train"]["x"].astype(jnp.float32), arrays["train"]["y"].astype(jnp.int32)
    n_train = x_tr.shape[0]
    if batch_size > n_train:
        raise ValueError(f"batch_size must be <= the train size {n_train}, got {batch_size}")
    n_batches = n_train // batch_size
    model = MLP(hidden=tuple(hidden), out=num_classes + max_experts)

    def evaluate(params, split, preds, table, mask):
        arr = arrays[split]
        logits = model.apply(params, arr["x"].astype(jnp.float32))
        return decision.l2d_metrics(logits, arr["y"].astype(jnp.int32), preds, num_classes=num_classes,
                                    kind=kind, expert_mask=mask, acc_table=table)

    def train(key, num_experts, hparams=None):
        hp = {"lr": lr, **loss_kwargs, **(hparams or {})}
        opt, kw = optax.adam(hp.pop("lr")), hp
        k_exp, k_init, k_loop = jax.random.split(key, 3)
        k_tab, k_tr, k_va, k_te = jax.random.split(k_exp, 4)
        table, mask = experts.expert_accuracy_table(k_tab, num_experts, setting=setting, max_experts=max_experts,
                                                    num_classes=num_classes, **expert_kwargs)
        preds = {s: experts.sample_expert_predictions(k, arrays[s]["y"].astype(jnp.int32), table, mask,
                                                      num_classes=num_classes)
                 for s, k in (("train", k_tr), ("validation", k_va), ("test", k_te))}
        params = model.init(k_init, x_tr[:1])
        opt_state = opt.init(params)

        def batch_loss(p, xb, yb, mb):
            logits = model.apply(p, xb)
            return loss_fn(logits, yb, mb, num_classes=num_classes, expert_mask=mask, **kw)

        def sgd_step(carry, idx):
            p, st = carry
            loss, g = jax.value_and_grad(batch_loss)(p, x_tr[idx], y_tr[idx], preds["train"][idx])
            upd, st = opt.update(g, st, p)
            return (optax.apply_updates(p, upd), st), loss

        def epoch(carry, k):
            perm = jax.random.permutation(k, n_train)[: n_batches * batch_size].reshape(n_batches, batch_size)
            carry, batch_losses = jax.lax.scan(sgd_step, carry, perm)
            p = carry[0]
            out = {"train_loss": batch_losses.mean(),
                   "val": evaluate(p, "validation", preds["validation"], table, mask),
                   "test": evaluate(p, "test", preds["test"], table, mask)}
            return carry, out

        (params, _), metrics = jax.lax.scan(epoch, (params, opt_state), jax.random.split(k_loop, epochs))
        te = arrays["test"]
        mv, mp = theory_masses(table, mask, te["y"].astype(jnp.int32), te.get("eta"))
        metrics["mass_vanilla_theory"], metrics["mass_picce_theory"] = mv, mp
        metrics["acc_table"] = table
        return params, metrics

    return train


def grid_fn(train: Callable) -> Callable:
    """``jit(vmap(J) o vmap(seed))`` of ``train``: ``f(keys [S, 2], num_experts [n_J], hparams) -> (params, metrics)``
    with leading axes ``[n_J, S]``. ``hparams`` (a dict of scalars, shared by every run) is a traced argument:
    calling the same ``f`` at another grid point reuses the compiled program."""
    return jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, None, None)), in_axes=(None, 0, None)))


def run_grid(train: Callable, seeds: Sequence[int], num_experts: Sequence[int], hparams: dict | None = None,
             *, fn: Callable | None = None):
    """Runs ``train`` over ``num_experts x seeds`` in one jit (``fn``: a cached :func:`grid_fn` of ``train``).

    Returns ``(params, metrics)``, every leaf with leading axes ``[n_J, n_seeds]``."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()}
    return (fn or grid_fn(train))(keys, jnp.asarray(num_experts, jnp.int32), hp)
