"""A toy resumable experiment (linear regression) exercising the core harness end to end.

It is the smallest example of the house pattern: `make_train(config) -> train(key)` with a jitted
`lax.scan` over steps, orbax checkpoints every chunk, resume on rerun, metrics JSONL, summary.json.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import plots
from jaxlab.core.app import launch
from jaxlab.core.checkpoint import Checkpointer
from jaxlab.core.metrics import MetricsWriter
from jaxlab.core.summary import claim


class SimulatedCrash(RuntimeError):
    pass


def init_state(config, key):
    """(weights [D], optimizer state, PRNG key, step) — the whole resumable state."""
    w = jnp.zeros(config.dim)
    return (w, optax.sgd(config.lr).init(w), key, jnp.int32(0))


def make_train(config, ckpt_dir: str | None = None):
    opt = optax.sgd(config.lr)
    w_true = jnp.arange(1.0, config.dim + 1.0)

    def loss_fn(w, key):
        x = jax.random.normal(key, (config.batch, config.dim))
        y = x @ w_true
        return jnp.mean((x @ w - y) ** 2)

    def step(state, _):
        w, opt_state, key, t = state
        loss, g = jax.value_and_grad(loss_fn)(w, jax.random.fold_in(key, t))
        updates, opt_state = opt.update(g, opt_state, w)
        return (optax.apply_updates(w, updates), opt_state, key, t + 1), loss

    @jax.jit
    def chunk(state):
        return jax.lax.scan(step, state, None, length=config.chunk)

    def train(key, seed: int = 0):
        state = init_state(config, key)
        ckpt = Checkpointer(ckpt_dir, save_every=config.chunk, keep=2,
                            metadata={"seed": seed}) if ckpt_dir else None
        if ckpt is not None and ckpt.latest_step() is not None:
            _, state = ckpt.restore(state)
        losses = []
        while int(state[3]) < config.steps:
            state, loss = chunk(state)
            losses.append(np.asarray(loss))
            t = int(state[3])
            if ckpt is not None:
                ckpt.maybe_save(t, state)
                ckpt.wait()
            if config.sleep_per_chunk:
                time.sleep(config.sleep_per_chunk)
            if config.fail_at_step >= 0 and t >= config.fail_at_step:
                raise SimulatedCrash(f"simulated crash after step {t}")
        if ckpt is not None:
            ckpt.close()
        return state, (np.concatenate(losses) if losses else np.zeros(0))

    return train


def run(config, workdir: str) -> dict:
    train = make_train(config, None)
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
    del train
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
