"""A toy resumable experiment (linear regression) exercising the core harness end to end.

It is the smallest example of the house pattern: `make_train(config) -> train(key)` with a jitted
`lax.scan` over steps, orbax checkpoints every chunk, resume on rerun, metrics JSONL, summary.json.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import loop, plots, sharding
from jaxlab.core.app import launch
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim


class SimulatedCrash(RuntimeError):
    pass


class ToyHParams(NamedTuple):
    """Typed hyperparameters at the library boundary (no ConfigDict below the experiment)."""
    lr: float = 0.05
    batch: int = 16
    dim: int = 4


def hparams(config) -> ToyHParams:
    return ToyHParams(lr=float(config.lr), batch=int(config.batch), dim=int(config.dim))


def init_state(config, key):
    """(weights [D], optimizer state, PRNG key, step) — the whole resumable state."""
    w = jnp.zeros(config.dim)
    return (w, optax.sgd(config.lr).init(w), key, jnp.int32(0))


def update(state, batch, *, hp: ToyHParams):
    """One SGD step on a fresh batch of y = x @ [1..D]; batch is None (the data is sampled in the step)."""
    del batch
    w, opt_state, key, t = state
    w_true = jnp.arange(1.0, hp.dim + 1.0)
    x = sharding.constrain_batch(jax.random.normal(jax.random.fold_in(key, t), (hp.batch, hp.dim)))
    loss, g = jax.value_and_grad(lambda w_: jnp.mean((x @ w_ - x @ w_true) ** 2))(w)
    updates, opt_state = optax.sgd(hp.lr).update(g, opt_state, w)
    return (optax.apply_updates(w, updates), opt_state, key, t + 1), {"loss": loss}


def make_trainer(hp: ToyHParams) -> loop.Trainer:
    return loop.Trainer(init=loop.bind(_init, hp=hp), step=loop.bind(update, hp=hp))


def _init(key, *, hp: ToyHParams):
    w = jnp.zeros(hp.dim)
    return (w, optax.sgd(hp.lr).init(w), key, jnp.int32(0))


def make_train(config, ckpt_dir: str | None = None):
    """train(key) -> (state, per-step losses) through `jaxlab.core.loop.run` (chunks, checkpoints)."""
    trainer = make_trainer(hparams(config))

    def after_chunk(step, record):
        if config.sleep_per_chunk:
            time.sleep(config.sleep_per_chunk)
        if config.fail_at_step >= 0 and step >= config.fail_at_step:
            raise SimulatedCrash(f"simulated crash after step {step}")

    def train(key, seed: int = 0):
        state, history = loop.run(trainer, key, steps=int(config.steps), chunk=int(config.chunk),
                                  ckpt_dir=ckpt_dir, log_fn=after_chunk, progress=False)
        return state, np.asarray(history.get("loss", []), dtype=np.float32)

    return train


def run(config, workdir: str) -> dict:
    finals, curves = [], []
    with MetricsWriter(os.path.join(workdir, "metrics.jsonl")) as mw:
        for seed in config.seeds:
            state, losses = make_train(config, os.path.join(workdir, "ckpt", f"seed{seed}"))(
                jax.random.key(seed), seed)
            final = float(jnp.sum((state[0] - jnp.arange(1.0, config.dim + 1.0)) ** 2))
            finals.append(final)
            mw.write(int(state[3]), seed=seed, final_sq_err=final)
            curves.append(losses)
    baseline = [float(jnp.sum(jnp.arange(1.0, config.dim + 1.0) ** 2))] * len(finals)
    c = claim("learns", "SGD recovers the true weights better than the zero predictor", "squared_error",
              ours=("sgd", finals), baselines={"zero": baseline}, higher_is_better=False)
    fig = "figures/loss.png"
    if curves and all(len(c_) for c_ in curves):
        plots.curves(os.path.join(workdir, fig), np.arange(len(curves[0])), {"sgd": np.stack(curves)},
                     xlabel="step", ylabel="loss")
    return {"seeds": list(config.seeds), "claims": [c],
            "tables": {"final": [{"seed": s, "sq_err": f} for s, f in zip(config.seeds, finals)]},
            "figures": [fig], "headline": f"toy: final squared error {np.mean(finals):.2e}"}


if __name__ == "__main__":
    launch("toy", run)
