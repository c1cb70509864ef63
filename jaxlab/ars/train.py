"""Training the ARS shaping head g(u) = W u on counterfactual agreement data (train split only).

`make_trainer(data, hp)` returns `Trainer(init, step)` of pure functions (the jaxlab.core.loop
contract); `fit_head(key, data, hp, checkpoints=...)` runs it as ONE jitted `lax.scan` and returns W at
the requested epochs (epochs are chosen on val by the caller).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.ars.losses import ARSHParams, ars_loss, init_head, linear_head, supcon_loss

from jaxlab.core import sharding
from jaxlab.core.loop import Trainer, TrainState


class HeadData(NamedTuple):
    """Counterfactual agreement data of the TRAIN split. N problems, M counterfactuals each.

    u_nd: [N, d] embeddings of the original answers; ucf_nmd: [N, M, d] counterfactual embeddings;
    agree_nm: [N, M] bool agreement of each counterfactual with the original answer.
    """
    u_nd: jax.Array
    ucf_nmd: jax.Array
    agree_nm: jax.Array


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, -(-int(n) // int(batch_size)))


def _optimizer(hp: ARSHParams, total_steps: int):
    sched = optax.cosine_decay_schedule(hp.lr, max(1, total_steps), alpha=hp.end_lr_frac)
    return optax.adamw(sched, weight_decay=hp.weight_decay)


def head_loss(w, data: HeadData, idx_b, pos_b, *, hp: ARSHParams, tau=None):
    """Mean loss of one batch. idx_b: [B] problem indices; pos_b: [B] index of the sampled positive.
    tau: optional (traced) temperature overriding hp.tau."""
    tau = hp.tau if tau is None else tau
    u, ucf, agree = data.u_nd[idx_b], data.ucf_nmd[idx_b], data.agree_nm[idx_b]
    z, zcf = linear_head(w, u), linear_head(w, ucf)                     # [B, k], [B, M, k]
    valid = jnp.any(agree, axis=1)
    if hp.loss == "eq5":
        zpos = jnp.take_along_axis(zcf, pos_b[:, None, None], axis=1)[:, 0]
        _, loss = ars_loss(z, zpos, zcf, ~agree, valid, tau=tau)
    elif hp.loss == "supcon":
        B, M = agree.shape
        zz = jnp.concatenate([z[:, None], zcf], axis=1).reshape(B * (1 + M), -1)
        ids = jnp.repeat(jnp.arange(B), 1 + M)
        lab = jnp.concatenate([jnp.ones((B, 1), bool), agree], axis=1).reshape(-1)
        _, loss = supcon_loss(zz, ids, lab, jnp.ones((B * (1 + M),), bool), tau=tau)
    else:
        raise ValueError(f"loss: expected 'eq5' or 'supcon', got {hp.loss!r}")
    return loss + hp.reg * jnp.sum(w * w)


def make_trainer(data: HeadData, hp: ARSHParams, tau=None) -> Trainer:
    """Trainer(init(key) -> TrainState (params = W [k, d]), step(state, None) -> (state, metrics)) of pure functions.
    tau: optional (possibly traced) temperature overriding hp.tau (one compiled program for a tau grid)."""
    n, d = data.u_nd.shape
    if not 1 <= hp.k <= d:
        raise ValueError(f"k: expected 1 <= k <= d = {d}, got {hp.k}")
    if tau is None and not hp.tau > 0:
        raise ValueError(f"tau: expected > 0, got {hp.tau}")
    total = hp.epochs * steps_per_epoch(n, hp.batch_size)
    opt = _optimizer(hp, total)
    valid = jnp.any(data.agree_nm, axis=1)
    p_anchor = jnp.where(valid, 1.0, 0.0)
    p_anchor = jnp.where(jnp.sum(p_anchor) > 0, p_anchor / jnp.maximum(jnp.sum(p_anchor), 1.0), 1.0 / n)

    def init(key):
        k_init, k_run = jax.random.split(key)
        w = init_head(k_init, d, hp.k)
        return TrainState(w, opt.init(w), jnp.zeros((), jnp.int32), key=k_run)

    def step(state, batch=None):
        key, k_idx, k_pos = jax.random.split(state.key, 3)
        if hp.loss == "eq5":   # anchors with >= 1 positive, one positive drawn uniformly among them
            idx = jax.random.choice(k_idx, n, (hp.batch_size,), p=p_anchor)
        else:                  # SupCon: any problem (rows without a positive are masked in the loss)
            idx = jax.random.choice(k_idx, n, (hp.batch_size,))
        idx = sharding.constrain_batch(idx)   # split over a mesh's data axis when one is set; else a no-op
        logits = jnp.where(data.agree_nm[idx], 0.0, -jnp.inf)
        logits = jnp.where(jnp.any(data.agree_nm[idx], 1, keepdims=True), logits, 0.0)
        pos = jax.random.categorical(k_pos, logits, axis=1)
        loss, g = jax.value_and_grad(head_loss)(state.params, data, idx, pos, hp=hp, tau=tau)
        upd, opt_state = opt.update(g, state.opt_state, state.params)
        w = optax.apply_updates(state.params, upd)
        return TrainState(w, opt_state, state.step + 1, key=key), {"loss": loss}

    return Trainer(init, step)


def fit_head(key: jax.Array, data: HeadData, hp: ARSHParams, *, checkpoints=None):
    """Trains g for hp.epochs epochs (one jitted scan). Returns (W at each checkpoint epoch [C, k, d],
    per-step loss [S]). checkpoints: increasing epochs <= hp.epochs (default: (hp.epochs,))."""
    checkpoints = tuple(int(e) for e in (checkpoints or (hp.epochs,)))
    if any(e < 1 or e > hp.epochs for e in checkpoints) or list(checkpoints) != sorted(checkpoints):
        raise ValueError(f"checkpoints: expected increasing epochs in [1, {hp.epochs}], got {checkpoints}")
    if not hp.tau > 0:
        raise ValueError(f"tau: expected > 0, got {hp.tau}")
    data = HeadData(*(jnp.asarray(x) for x in data))
    # tau is traced (hp.tau is replaced by a placeholder in the static key): one compile per (k, epochs, ...)
    return _fit(key, data, hp._replace(tau=1.0), checkpoints, jnp.float32(hp.tau))


def _fit_impl(key, data, hp, checkpoints, tau):
    trainer = make_trainer(data, hp, tau=tau)
    spe = steps_per_epoch(data.u_nd.shape[0], hp.batch_size)
    state = trainer.init(key)
    ws, losses, prev = [], [], 0
    for e in checkpoints:
        state, m = jax.lax.scan(lambda s, _: trainer.step(s, None), state, None, length=(e - prev) * spe)
        ws.append(state.params)
        losses.append(m["loss"])
        prev = e
    return jnp.stack(ws), jnp.concatenate(losses)


_fit = jax.jit(_fit_impl, static_argnames=("hp", "checkpoints"))


def project(w_kd, u) -> np.ndarray:
    """numpy convenience: g(u) for any leading shape."""
    return np.asarray(linear_head(jnp.asarray(w_kd), jnp.asarray(u, jnp.float32)))
