"""One training contract for every paper: `Trainer(init, step)` of pure functions, run by `run(...)`.

    trainer = Trainer(init=lambda key: ..., step=bind(update, hp=hparams))
    state, history = run(trainer, key, steps=1000, chunk=100, eval_fn=..., ckpt_dir=workdir + "/ckpt")

* `init(key) -> state`: any pytree (a `flax.struct.dataclass` TrainState); the state carries its own
  PRNG key, so `step` needs no key argument.
* `step(state, batch) -> (state, metrics)`: pure and jit-able; `batch` is None unless a host
  `collect(state, step_index) -> batch` provides one (a Python environment, the LM text verifier).
  `metrics` is a dict of scalars (or [S] arrays under `vmap_seeds`).

Without `collect`, each chunk of `chunk` steps is ONE jitted `lax.scan`. With `collect`, the host step
and the jitted update alternate. After every chunk: the metrics are checked for non-finite values
(`NonFiniteError` names the first step and quantity, before anything is saved), `eval_fn(state)` runs,
`log_fn(step, record)` receives the chunk means plus the eval, progress is printed, and with `ckpt_dir`
the state and the history are checkpointed together (orbax, async), so the same call resumes.

Jitted functions are keyed by their static arguments: wrap hyperparameters with `bind(fn, hp=...)`
(hashable by value, not identity), so rebuilding a trainer with equal hyperparameters reuses
`jax.jit`'s own compile cache instead of a hand-keyed module-level cache. jax holds those cache
entries weakly: the reuse lasts while one equal trainer object is alive, so a builder called once per
unit of a study is memoised (`finance.train.dataflow_trainer` is an `lru_cache`).

Multi-device: pass `mesh` (a `jax.sharding.Mesh` with a "data" axis). The state is replicated, a
collected batch is split along its leading axis, and inside the step `sharding.constrain_batch`
splits arrays the step generates itself; XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from typing import Any, Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import sharding as sharding_lib

PyTree = Any


class Trainer(NamedTuple):
    """`init(key) -> state` and `step(state, batch) -> (state, metrics)`, both pure."""
    init: Callable[[jax.Array], PyTree]
    step: Callable[[PyTree, Any], tuple[PyTree, dict]]


@flax.struct.dataclass
class TrainState:
    """The one training state of every trainer (a pytree; `vmap_seeds` adds a leading [S] axis to each leaf).

    params: the trained parameters (a dict of networks when a trainer trains several: {"pi": ..., "v": ...}).
    opt_state: the optax state of `params` (the same nesting).
    step: updates done, int32 [].
    key: the PRNG key the step draws from (fold_in(key, step) or split and carried), or None.
    extra: the trainer's own carried pytree (an EMA of the parameters, the stale policies of off-policy
      rollouts, an environment state, a Lagrange multiplier), or None.
    """
    params: Any
    opt_state: Any
    step: jax.Array
    key: Any = None
    extra: Any = None


class NonFiniteError(ValueError):
    """Training produced a NaN or infinite metric; the message names the step and the quantity."""


class Static:
    """A value (e.g. warm-start parameters) given to `bind` as a keyword: hashed and compared by the identity
    of the value, so a trainer's `init` can close over arrays without hashing them, and two trainers built
    around the same arrays share one `jax.jit` cache entry. Read it back as `.value`."""

    def __init__(self, value):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Static) and other.value is self.value


class bind:  # noqa: N801  (reads like functools.partial)
    """`functools.partial` that hashes and compares by value: `bind(update, hp=hp)`.

    Keyword values must be hashable (NamedTuples of numbers, tuples, strings). Two trainers built with
    equal hyperparameters then share one `jax.jit` cache entry.
    """

    def __init__(self, fn: Callable, /, **kwargs: Any):
        self.fn, self.kwargs = fn, kwargs
        self._key = (fn, tuple(sorted(kwargs.items())))
        hash(self._key)  # fail early on an unhashable hyperparameter

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **self.kwargs, **kwargs)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other) -> bool:
        return isinstance(other, bind) and self._key == other._key

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"bind({getattr(self.fn, '__name__', self.fn)}, {args})"


def chunk_step_key(key, step, *, chunk: int, total: Optional[int] = None):
    """The key of update ``step`` (0-based, traced ok) under the chunked schedule: updates run in chunks of
    ``chunk`` and update i of chunk c draws split(fold_in(key, c), n_c)[i], where n_c = ``chunk`` except for a
    shorter last chunk when ``total`` (the number of updates) is given and not a multiple of ``chunk``.
    A trainer keeps the minibatches of a loop that split one key per chunk this way. (With JAX's partitionable
    threefry, the default here, split(k, n)[i] does not depend on n; `total` keeps the schedule exact without it.)"""
    c, i = step // chunk, step % chunk
    kc = jax.random.fold_in(key, c)
    if total is None or total % chunk == 0:
        return jax.random.split(kc, chunk)[i]
    last, n_last = (total - 1) // chunk, total % chunk
    return jax.lax.cond(c == last, lambda: jax.random.split(kc, n_last)[i], lambda: jax.random.split(kc, chunk)[i])


def _vmapped_init(keys, *, init):
    return jax.vmap(init)(keys)


def _vmapped_step(state, batch, *, step):
    return jax.vmap(step, in_axes=(0, None))(state, batch)


def vmap_seeds(trainer: Trainer) -> Trainer:
    """The same trainer over a leading seed axis: `init(keys [S, 2])`, every state leaf gains [S, ...].

    The batch (if any) is shared by all seeds; metrics become [S] arrays. One compile for all seeds.
    """
    return Trainer(init=bind(_vmapped_init, init=trainer.init), step=bind(_vmapped_step, step=trainer.step))


@functools.partial(jax.jit, static_argnames=("step", "length"))
def scan_steps(state: PyTree, data: PyTree = None, *, step: Callable, length: int) -> tuple[PyTree, dict]:
    """`length` steps of `step(state, data)` as one `lax.scan`; metrics stacked on a leading [length] axis.

    `data` (None, or a pytree of arrays such as a whole training set) is a jit argument, not a
    compile-time constant, and every step sees the same value."""
    def body(s, _):
        return step(s, data)
    return jax.lax.scan(body, state, None, length=length)


@functools.partial(jax.jit, static_argnames=("init",))
def jit_init(key, *, init):
    """`init(key)` jitted (`init` static: a `bind` or a module-level function), so trainers built with equal
    hyperparameters (and `Static` values) share one compile of their init, as `jit_step` does for the step."""
    return init(key)


@functools.partial(jax.jit, static_argnames=("step",))
def jit_step(state, batch, *, step):
    """`step(state, batch)` jitted (`step` static: a `bind` or a module-level function): one collected update,
    compiled as `run` compiles it."""
    return step(state, batch)


def check_finite(metrics: dict, first_step: int) -> None:
    """Raises NonFiniteError naming the first step (1-based) and metric that is NaN or infinite.

    Args:
      metrics: {name: array [n, ...]} for the n steps that end a chunk starting at `first_step`.
    """
    bad = None
    for name, value in metrics.items():
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
            continue
        finite = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1) if arr.ndim else np.isfinite(arr)
        if not np.all(finite):
            i = int(np.argmin(finite)) if arr.ndim else 0
            if bad is None or i < bad[0]:
                bad = (i, name)
    if bad is not None:
        raise NonFiniteError(f"training produced a non-finite {bad[1]!r} at step {first_step + bad[0]}; "
                             f"stopping before any checkpoint of it is written")


def check_params_finite(params, *, step: int, what: str = "parameters") -> None:
    """Raises NonFiniteError naming `step` and the first leaf of the pytree `params` that holds a NaN or inf."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    finite = jax.device_get([jnp.isfinite(x).all() for _, x in leaves])
    for (path, _), ok in zip(leaves, finite):
        if not bool(ok):
            raise NonFiniteError(f"training produced non-finite {what} ({jax.tree_util.keystr(path)}) at step "
                                 f"{step}; stopping before any checkpoint or cache entry of it is written")


def _mean_record(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        arr = np.asarray(v, dtype=np.float64)
        out[k] = float(arr.mean()) if arr.size else math.nan
    return out


def _history_append(history: dict, start: int, metrics: dict, n: int) -> None:
    history["step"].extend(range(start + 1, start + n + 1))
    for k, v in metrics.items():
        history.setdefault(k, []).extend(np.asarray(v).tolist())


def _restore(ckpt, state_target):
    step, state = ckpt.restore(state_target)
    meta = ckpt.restore_metadata(step)
    history = meta.get("history") or {"step": [], "eval": []}
    history.setdefault("stopped_early", False)
    return int(step), state, history


def _mesh_context(mesh):
    return jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext()


def run(trainer: Trainer, key: jax.Array, *, steps: int, chunk: int,
        collect: Optional[Callable[[PyTree, int], Any]] = None,
        eval_fn: Optional[Callable[[PyTree], dict]] = None,
        ckpt_dir: Optional[str] = None, log_fn: Optional[Callable[[int, dict], None]] = None,
        progress: bool | str = True, mesh=None, keep: int = 2, writer=None,
        tags: Optional[dict] = None, data: PyTree = None, eval_every: Optional[int] = None,
        stop_fn: Optional[Callable[[dict], bool]] = None,
        check_state: Optional[Callable[[PyTree, int], None]] = None, eval_at_start: bool = False,
        step_log_fn: Optional[Callable[[int, dict], None]] = None) -> tuple[PyTree, dict]:
    """Runs `steps` updates in chunks of `chunk`; returns (final state, history).

    Args:
      trainer: `Trainer(init, step)`.
      key: PRNG key for `init` (ignored when resuming from a checkpoint).
      steps: total number of updates (>= 0).
      chunk: updates between host syncs (evaluation, logging, checkpoint), >= 1.
      collect: optional host step `collect(state, step_index) -> batch` run before every update.
      eval_fn: optional `eval_fn(state) -> dict of floats`, after every chunk.
      ckpt_dir: orbax checkpoints of (state, history) after every chunk; resumed when present.
      log_fn: optional `log_fn(step, record)` with the chunk's metric means and the eval.
      progress: True, False or a description string for the progress line.
      mesh: optional Mesh with a "data" axis (state replicated; a collected batch's leaves split on their
        leading axis where it divides over the devices, the rest replicated: `sharding.shard_rows`).
      keep: checkpoints kept.
      writer: optional `core.metrics.MetricsWriter`; each chunk's record is written with `tags` (e.g.
        {"seed": 0}); on resume, that run's records past the restored step are truncated first, so
        metrics.jsonl never holds a step twice.
      tags: fields identifying this run in the metrics file.
      data: optional pytree (e.g. a whole training set) passed as the batch of every step when there
        is no `collect` (a jit argument of the chunk, replicated under `mesh`, never a constant).
      eval_every: run `eval_fn` only after chunks ending at a multiple of it, and after the last one
        (default: after every chunk).
      stop_fn: optional `stop_fn(eval record) -> bool`; True stops training after that chunk (early
        stopping on a target). The history then holds `stopped_early: True`, and a resumed run does
        not train on.
      check_state: optional `check_state(state, step)` after every chunk, before the checkpoint
        (e.g. `lambda s, i: check_params_finite(s.params, step=i)`); raise to stop.
      eval_at_start: also run `eval_fn` on the initial state (recorded as step 0) when not resuming.
      step_log_fn: optional `step_log_fn(step, metrics of that step)` for every step of a chunk, after
        the chunk (a log line per update rather than per chunk).
    Returns:
      state and history {"step": [...], metric: [per step], "eval": [{"step": s, ...}],
      "stopped_early": bool}.
    Raises:
      ValueError for steps < 0 or chunk < 1; NonFiniteError when a metric goes NaN/inf.
    """
    _check_run_args(steps, chunk, eval_every)
    ckpt = None
    with _mesh_context(mesh):
        state = jit_init(key, init=trainer.init)
        if mesh is not None:
            state = sharding_lib.replicate(state, mesh)
            data = None if data is None else sharding_lib.replicate(data, mesh)
        done, history = 0, {"step": [], "eval": [], "stopped_early": False}
        if ckpt_dir is not None:
            from jaxlab.core.checkpoint import Checkpointer
            ckpt = Checkpointer(ckpt_dir, save_every=1, keep=keep)
            if ckpt.latest_step() is not None:
                done, state, history = _restore(ckpt, state)
        total = done if history.get("stopped_early") else steps
        if eval_at_start and eval_fn is not None and done == 0 and not history["eval"]:
            history["eval"].append({"step": 0, **{k: float(v) for k, v in eval_fn(state).items()}})
        if writer is not None:
            writer.truncate_after(done, **(tags or {}))
        desc = progress if isinstance(progress, str) else "train"
        bar = metrics_lib.Progress(total, desc=desc) if progress else None
        if bar is not None and done:
            bar.update(min(done, total))
        hooks = _Hooks(collect, eval_fn, eval_every, stop_fn, check_state, ckpt, writer, tags or {}, log_fn, bar,
                       step_log_fn)
        try:
            state = _chunks(trainer.step, state, data, history, done, total, chunk, mesh, hooks)
        finally:
            if bar is not None:
                bar.close()
            if ckpt is not None:
                ckpt.close()
    return state, history


def _check_run_args(steps, chunk, eval_every) -> None:
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk: expected an integer >= 1, got {chunk!r}")
    if eval_every is not None and (not isinstance(eval_every, (int, np.integer)) or eval_every < 1):
        raise ValueError(f"eval_every: expected an integer >= 1 or None, got {eval_every!r}")


class _Hooks(NamedTuple):
    """The host-side parts of `run` between chunks."""
    collect: Optional[Callable]
    eval_fn: Optional[Callable]
    eval_every: Optional[int]
    stop_fn: Optional[Callable]
    check_state: Optional[Callable]
    ckpt: Any
    writer: Any
    tags: dict
    log_fn: Optional[Callable]
    bar: Any
    step_log_fn: Optional[Callable]


def _chunks(step, state, data, history: dict, done: int, total: int, chunk: int, mesh, h: _Hooks):
    """The chunk loop of `run` from `done` to `total` updates (fewer when `stop_fn` stops it) -> state."""
    while done < total:
        n = min(chunk, total - done)
        if h.collect is None:
            state, metrics = scan_steps(state, data, step=step, length=n)
        else:
            state, metrics = _collected_chunk(step, state, h.collect, done, n, mesh)
        metrics = jax.device_get(metrics)
        check_finite(metrics, done + 1)
        if h.check_state is not None:
            h.check_state(state, done + n)
        _history_append(history, done, metrics, n)
        if h.step_log_fn is not None:
            for i in range(n):
                h.step_log_fn(done + i + 1, jax.tree.map(lambda v: np.asarray(v)[i], metrics))
        done += n
        record = _mean_record(metrics)
        if h.eval_fn is not None and (h.eval_every is None or done % h.eval_every == 0 or done >= total):
            ev = {k: float(v) for k, v in h.eval_fn(state).items()}
            history["eval"].append({"step": done, **ev})
            record.update({f"eval/{k}": v for k, v in ev.items()})
            if h.stop_fn is not None and h.stop_fn(ev):
                history["stopped_early"] = done < total
                total = done
        if h.ckpt is not None:
            h.ckpt.maybe_save(done, state, force=True, meta={"history": history})
        if h.writer is not None:
            h.writer.write(done, **h.tags, **record)
        if h.log_fn is not None:
            h.log_fn(done, record)
        if h.bar is not None:
            if total != h.bar.total:
                h.bar.total = max(total, 1)
            h.bar.update(n, **{k: v for k, v in list(record.items())[:3]})
    return state


def _collected_chunk(step, state, collect, start, n, mesh):
    out = []
    for i in range(n):
        batch = collect(state, start + i)
        if mesh is not None:
            batch = sharding_lib.shard_rows(batch, mesh)
        state, m = jit_step(state, batch, step=step)
        out.append(m)
    return state, jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *out)


def resumable_chunks(ckpt_dir, stamp: str, state, n_chunks: int, run_chunk, on_chunk=None, on_start=None):
    """Host-driven chunks with resume, for loops that are not one `Trainer` (e.g. a chunk that is a whole
    jitted scan over arms x seeds). Runs chunks i = 0..n_chunks-1 of run_chunk(state, i) -> (state, metrics
    of arrays), checkpointing (state, history) after each one in ckpt_dir (None: no checkpoints), stamped
    with `stamp` (the hash of the config that produced them: `core.config.config_hash(config)`). A rerun resumes
    after the last saved chunk; a checkpoint with another stamp is refused with one clear error.
    on_start(first chunk index of this call) runs first (e.g. to drop log records past the restored chunk);
    on_chunk(i, metrics) runs only for chunks computed in this call. -> (state, [metrics per chunk] as lists)."""
    if not isinstance(stamp, str):
        raise TypeError(f"stamp: expected the config's hash as a str (core.config.config_hash(config)), got "
                        f"{type(stamp).__name__}")
    if ckpt_dir is None:
        if on_start is not None:
            on_start(0)
        hist = []
        for i in range(n_chunks):
            state, m = run_chunk(state, i)
            hist.append({k: np.asarray(v).tolist() for k, v in m.items()})
            if on_chunk is not None:
                on_chunk(i, m)
        return state, hist
    from jaxlab.core.checkpoint import Checkpointer
    ck = Checkpointer(ckpt_dir, save_every=1, keep=1, metadata={"config_hash": stamp})
    start, hist = 0, []
    try:
        if ck.latest_step() is not None:
            meta = ck.restore_metadata()
            if meta.get("config_hash") != stamp:
                raise ValueError(f"workdir: {ckpt_dir} holds a checkpoint of another config ({meta.get('config_hash')} "
                                 f"!= {stamp}); use a new --workdir or delete that folder")
            start, state = ck.restore(state)
            hist = list(meta["hist"])
        if on_start is not None:
            on_start(start)
        for i in range(start, n_chunks):
            state, m = run_chunk(state, i)
            hist.append({k: np.asarray(v).tolist() for k, v in m.items()})
            if on_chunk is not None:
                on_chunk(i, m)
            ck.maybe_save(i + 1, state, force=True, meta={"hist": hist})
    finally:
        ck.close()
    return state, hist
