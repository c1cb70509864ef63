"""Supervised fine-tuning (SFT) of the tiny LM on gold CoT / direct traces.

The trainer is a `jaxlab.core.loop.Trainer` (`sft_trainer(cfg, hp)`: `init(key) -> loop.TrainState`,
`step(state, data) -> (state, {"loss"})`) with typed hyperparameters (`SFTHParams`, `OptimHParams`), run by
`loop.run`: each jitted chunk is a `lax.scan` of AdamW steps, the whole training set is a jit argument
(`data=`), each step's rows are split over the `data` mesh axis (GSPMD inserts the gradient all-reduce),
and between chunks `loop.run` checkpoints (orbax), evaluates on a cadence and stops early on a target.
`make_train(spec)` is the front door of the experiments and the model cache: it takes the typed `SFTSpec`
(`sft_spec(config)` is the experiment's one conversion of an lm_sft ConfigDict) and returns
`train(key) -> (params, history)`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab.core import loop
from jaxlab.core import sharding
from jaxlab.core.loop import check_params_finite
from jaxlab.lm import tasks
from jaxlab.lm.model import LMConfig, apply, init, output_log_softmax
from jaxlab.lm.tokenizer import CharTokenizer


def model_config(config: ml_collections.ConfigDict, tok: Optional[CharTokenizer] = None) -> LMConfig:
    """LMConfig from `config.model` (vocabulary and special ids from the tokenizer)."""
    tok = tok or CharTokenizer()
    m = config.model
    return LMConfig(vocab_size=tok.vocab_size, d_model=m.d_model, num_layers=m.num_layers,
                    num_heads=m.num_heads, d_ff=m.d_ff, max_len=m.max_len, pad_id=tok.pad_id,
                    bos_id=tok.bos_id, eos_id=tok.eos_id)


def sft_arrays(problems, tok: CharTokenizer, *, seq_len: int, direct_frac: float = 0.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded SFT rows '<bos>' + prompt + completion and their loss masks.

    Each problem is written in direct form with probability `direct_frac`, else with CoT.
    Returns (tokens [N, seq_len] int32, mask [N, seq_len] bool): mask is True on the completion
    tokens (the targets, EOS included).
    """
    if not 0.0 <= direct_frac <= 1.0:
        raise ValueError(f"direct_frac: expected in [0, 1], got {direct_frac}")
    rng = np.random.default_rng([seed, 4242])
    direct = rng.random(len(problems)) < direct_frac
    toks = np.full((len(problems), seq_len), tok.pad_id, np.int32)
    mask = np.zeros((len(problems), seq_len), bool)
    for i, (p, d) in enumerate(zip(problems, direct)):
        mode = "direct" if d else "cot"
        pr = tok.encode("<bos>" + p.prompt(mode))
        co = tok.encode(p.completion(mode))
        n = len(pr) + len(co)
        if n > seq_len:
            raise ValueError(f"seq_len: problem {p.question!r} needs {n} tokens, seq_len={seq_len}")
        toks[i, :len(pr)], toks[i, len(pr):n] = pr, co
        mask[i, len(pr):n] = True
    return toks, mask


def rows_arrays(rows, tok: CharTokenizer, *, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded SFT rows from arbitrary (prompt, completion) text pairs.

    rows: sequence of (prompt, completion) strings; the prompt is written as given (include
    '<bos>' and any role token yourself), the completion is the loss target (end it with '<eos>').
    Returns (tokens [N, seq_len] int32, mask [N, seq_len] bool), mask True on the completion.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows: expected at least one (prompt, completion) pair")
    toks = np.full((len(rows), seq_len), tok.pad_id, np.int32)
    mask = np.zeros((len(rows), seq_len), bool)
    for i, row in enumerate(rows):
        if len(row) != 2:
            raise ValueError(f"rows: expected (prompt, completion) pairs, got {row!r}")
        pr, co = tok.encode(row[0]), tok.encode(row[1])
        n = len(pr) + len(co)
        if n > seq_len:
            raise ValueError(f"seq_len: row {row[0] + row[1]!r} needs {n} tokens, seq_len={seq_len}")
        if len(co) == 0:
            raise ValueError(f"rows: empty completion in row {row!r}")
        toks[i, :len(pr)], toks[i, len(pr):n] = pr, co
        mask[i, len(pr):n] = True
    return toks, mask


def sft_loss(params, tokens_bt: jax.Array, mask_bt: jax.Array, *, cfg: LMConfig,
             weights_bt: Optional[jax.Array] = None) -> jax.Array:
    """Token-mean next-token NLL over masked targets: -sum(mask * log p(x_t|x_<t)) / sum(mask).

    With per-token loss weights w: the weighted mean -sum(mask * w * log p) / sum(mask * w) (a
    weight w on one token counts it like w copies of it). `weights_bt=None` is the plain token mean
    (the same computation as before weights existed).

    tokens_bt [B, T] int, mask_bt [B, T] (True on target tokens), weights_bt [B, T] float >= 0 or None.
    Returns a scalar.
    """
    logits = apply(params, tokens_bt, cfg=cfg)
    lp = output_log_softmax(logits[:, :-1], cfg)
    lp = jnp.take_along_axis(lp, tokens_bt[:, 1:, None], axis=-1)[..., 0]
    m = mask_bt[:, 1:].astype(jnp.float32)
    if weights_bt is None:
        return -(lp * m).sum() / jnp.maximum(m.sum(), 1.0)
    m = m * weights_bt[:, 1:].astype(jnp.float32)
    return -(lp * m).sum() / jnp.where(m.sum() > 0, m.sum(), 1.0)


def token_weights_array(tokens_nt: np.ndarray, mask_nt: np.ndarray, token_weights, tok: CharTokenizer
                        ) -> Optional[np.ndarray]:
    """Per-token SFT loss weights [N, T] float32 from a {token: weight} mapping.

    The knob of `make_train` is `config.data.token_weights` (absent or empty: unweighted; it is part
    of the `data` section, so it enters the model-cache key, and a config without it keeps its key).
    A target token (mask True) whose token is a key of `token_weights` (e.g. '<yes>', a special
    token, or a character) gets that weight; every other position gets 1. Returns None for an empty
    or absent mapping (the unweighted loss).
    """
    if not token_weights:
        return None
    w = np.ones(tokens_nt.shape, np.float32)
    for name, val in dict(token_weights).items():
        val = float(val)
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"token_weights: weight of {name!r} must be finite and >= 0, got {val}")
        w[(tokens_nt == tok.token_id(name)) & mask_nt] = val
    return w


class OptimHParams(NamedTuple):
    """AdamW on a warmup-cosine schedule (peak `lr`, floor `lr * end_lr_frac` at `steps`) after global-norm
    clipping; `batch_size` rows per step. Defaults: experiments/configs/lm_sft.py:full."""
    lr: float = 1e-3
    warmup: int = 100
    steps: int = 2000
    batch_size: int = 64
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    b2: float = 0.98
    end_lr_frac: float = 0.05


class SFTHParams(NamedTuple):
    """Everything the SFT trainer needs besides the model and the data. `chunk` steps per jitted scan;
    `eval_every` steps between validation calls; training stops once validation reaches `target_acc` > 0;
    `n_devices` (0: all) splits each batch over a `data` mesh axis."""
    optim: OptimHParams = OptimHParams()
    chunk: int = 100
    n_devices: int = 0
    eval_every: int = 500
    target_acc: float = 0.0


def sft_hparams(config) -> SFTHParams:
    """The one conversion of an lm_sft ConfigDict (`optim` and `train` sections) into typed hyperparameters."""
    o, t = config.optim, config.train
    return SFTHParams(optim=OptimHParams(**{k: o[k] for k in OptimHParams._fields}), chunk=int(t.chunk),
                      n_devices=int(t.n_devices), eval_every=int(t.eval_every), target_acc=float(t.target_acc))


class SFTDataHParams(NamedTuple):
    """What the SFT rows are made of (an lm_sft config's `data` section, typed): the training mix of
    `tasks.generate_mix` (family weights and digits as (family, value) pairs, `detail`, `n_train`, `seed`), the
    row length, the share of direct-form rows, and per-token loss weights as (token, weight) pairs (empty: the
    plain token mean; `token_weights_array`)."""
    weights: tuple = ()
    digits: tuple = ()
    detail: str = "columns"
    n_train: int = 0
    seq_len: int = 96
    direct_frac: float = 0.0
    seed: int = 0
    token_weights: tuple = ()


# lm_sft config sections that determine the trained parameters (not evaluation or device count): the model
# cache's key (`cache.model_key`) is the hash of these.
KEY_SECTIONS = ("model", "data", "optim")
KEY_TRAIN_FIELDS = ("target_acc", "target_family", "target_mode", "eval_n", "eval_every")


class SFTSpec(NamedTuple):
    """Everything an SFT run's parameters depend on, typed; `sft_spec(config)` is the one conversion of an
    lm_sft ConfigDict. key_material: the sorted JSON of the config sections the model cache keys on
    (`KEY_SECTIONS`, `KEY_TRAIN_FIELDS`), fixed at the conversion, so a key never depends on how the typed
    fields are spelled (the cache keys of the configs before the typed spec are unchanged)."""
    model: LMConfig
    data: SFTDataHParams
    hp: SFTHParams
    key_material: str


def check_spec(spec) -> None:
    """TypeError unless `spec` is an `SFTSpec` (the library takes the typed spec, never a ConfigDict)."""
    if not isinstance(spec, SFTSpec):
        raise TypeError(f"spec: expected an SFTSpec (convert an lm_sft config once with lm.sft_spec), got "
                        f"{type(spec).__name__}")


def sft_spec(config: ml_collections.ConfigDict, tok: Optional[CharTokenizer] = None) -> SFTSpec:
    """The one conversion of an lm_sft ConfigDict (`model`, `data`, `optim`, `train` sections) into an
    `SFTSpec` (the experiment's side of the library boundary)."""
    d = config.data
    tw = d.get("token_weights", None)
    data = SFTDataHParams(weights=tuple(dict(d.weights).items()), digits=tuple(dict(d.digits).items()),
                          detail=d.detail, n_train=int(d.n_train), seq_len=int(d.seq_len),
                          direct_frac=float(d.direct_frac), seed=int(d.seed),
                          token_weights=tuple(dict(tw).items()) if tw else ())
    key = {k: config[k].to_dict() for k in KEY_SECTIONS}
    key["train"] = {k: config.train[k] for k in KEY_TRAIN_FIELDS}
    return SFTSpec(model=model_config(config, tok), data=data, hp=sft_hparams(config),
                   key_material=json.dumps(key, sort_keys=True))


def make_optimizer(optim: OptimHParams) -> optax.GradientTransformation:
    """The SFT optimiser of `optim` (an OptimHParams)."""
    o = optim
    sched = optax.warmup_cosine_decay_schedule(0.0, o.lr, o.warmup, max(o.steps, o.warmup + 1),
                                               end_value=o.lr * o.end_lr_frac)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip),
                       optax.adamw(sched, b1=0.9, b2=o.b2, weight_decay=o.weight_decay))


def build_train_problems(data: SFTDataHParams) -> list:
    """The SFT training problems of `data` (its mix, size and seed)."""
    return tasks.generate_mix(dict(data.weights), data.n_train, seed=data.seed, split="train",
                              digits=dict(data.digits), detail=data.detail)


def _sft_data(data: SFTDataHParams, tok, problems, rows) -> tuple[np.ndarray, np.ndarray]:
    """Token and loss-mask arrays [N, seq_len] of the SFT rows: `rows` ((prompt, completion) pairs) or
    `problems` (default: generated from `data`), never both."""
    if rows is not None:
        if problems is not None:
            raise ValueError("rows: give either rows or problems, not both")
        return rows_arrays(rows, tok, seq_len=data.seq_len)
    problems = build_train_problems(data) if problems is None else problems
    return sft_arrays(problems, tok, seq_len=data.seq_len, direct_frac=data.direct_frac, seed=data.seed)


def _sft_init(key, *, cfg: LMConfig, optim: OptimHParams, init_params: loop.Static):
    key_init, key_data = jax.random.split(key)
    params = init(key_init, cfg) if init_params.value is None else init_params.value
    return loop.TrainState(params, make_optimizer(optim).init(params), jnp.zeros((), jnp.int32), key=key_data)


def _sft_step(state: loop.TrainState, data, *, cfg: LMConfig, optim: OptimHParams):
    """One AdamW step on `optim.batch_size` rows drawn uniformly from data = (tokens [N, T], mask [N, T],
    weights [N, T] or None); step i draws its rows with fold_in(state.key, i); the rows are split over the
    `data` mesh axis when one is set."""
    toks, mask, weights = data
    idx = jax.random.randint(jax.random.fold_in(state.key, state.step), (optim.batch_size,), 0,
                             toks.shape[0])
    bt, bm = sharding.constrain_batch((toks[idx], mask[idx]))
    bw = None if weights is None else sharding.constrain_batch(weights[idx])
    loss, grads = jax.value_and_grad(sft_loss)(state.params, bt, bm, cfg=cfg, weights_bt=bw)
    tx = make_optimizer(optim)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), {"loss": loss}


def sft_trainer(cfg: LMConfig, hp: SFTHParams, *, init_params=None) -> loop.Trainer:
    """`loop.Trainer` of SFT: `init(key) -> loop.TrainState` (fresh `init` or the warm start `init_params`), and
    `step(state, data) -> (state, {"loss"})` with data = (tokens [N, T], mask [N, T], weights or None) from
    `sft_arrays` / `rows_arrays` / `token_weights_array`. Run it with `loop.run(..., data=data)`."""
    return loop.Trainer(init=loop.bind(_sft_init, cfg=cfg, optim=hp.optim, init_params=loop.Static(init_params)),
                        step=loop.bind(_sft_step, cfg=cfg, optim=hp.optim))


def _sft_history(history: dict, chunk: int, steps_run: int, dt: float) -> dict:
    """loop.run's per-step history -> the SFT history: per-chunk float32 mean losses at the chunk ends,
    eval as (step, val_acc) pairs, stopped_early, steps_done and this call's steps per second."""
    steps = list(history["step"])
    done = steps[-1] if steps else 0
    ends = [s for s in steps if s % chunk == 0 or s == done]
    loss = np.asarray(history.get("loss", []), np.float32)
    out, prev = [], 0
    for e in ends:
        out.append(float(loss[prev:e].mean()))
        prev = e
    return {"loss": out, "step": ends, "eval": [(e["step"], e["val_acc"]) for e in history["eval"]],
            "stopped_early": bool(history.get("stopped_early", False)), "steps_done": done,
            "steps_per_s": steps_run / dt if steps_run else float("nan")}


def _sft_log(log_fn, seen: list):
    """loop.run's log_fn(step, record) -> the SFT's log_fn(step, loss=..., val_acc=...); records steps in seen."""
    def log(step, record):
        seen.append(step)
        if log_fn is not None:
            scalars = {"loss": record["loss"]}
            if "eval/val_acc" in record:
                scalars["val_acc"] = record["eval/val_acc"]
            log_fn(step, **scalars)
    return log


class _SFTRun(NamedTuple):
    """Everything `make_train`'s train(key) needs: the model config, the hyperparameters, the warm start,
    the data, the mesh and the optional hooks."""
    cfg: LMConfig
    hp: SFTHParams
    init_params: Any
    data: tuple
    mesh: Any
    ckpt_dir: Optional[str]
    eval_fn: Optional[Callable]
    log_fn: Optional[Callable]
    progress: bool | str


def _train_sft(run: _SFTRun, key):
    """train(key) of `make_train` -> (params, history), on `loop.run`."""
    hp, seen = run.hp, []
    # A fresh model is initialised eagerly, outside jit: XLA's fused normal sampler differs from the
    # op-by-op one in the last bit, and the model cache promises the parameters of the earlier trainer.
    params0 = init(jax.random.split(key)[0], run.cfg) if run.init_params is None else run.init_params
    trainer = sft_trainer(run.cfg, hp, init_params=params0)
    eval_fn = None if run.eval_fn is None else (lambda s: {"val_acc": float(run.eval_fn(s.params))})
    stop_fn = (lambda ev: ev["val_acc"] >= hp.target_acc) if hp.target_acc > 0 else None
    t0 = time.perf_counter()
    state, history = loop.run(
        trainer, key, steps=hp.optim.steps, chunk=hp.chunk, data=run.data, mesh=run.mesh,
        eval_fn=eval_fn, eval_every=hp.eval_every, stop_fn=stop_fn, ckpt_dir=run.ckpt_dir, keep=1,
        check_state=lambda s, i: check_params_finite(s.params, step=i), log_fn=_sft_log(run.log_fn, seen),
        progress=(run.progress if isinstance(run.progress, str) else "sft") if run.progress else False)
    dt = time.perf_counter() - t0
    # chunks start at multiples of hp.chunk, so this call began at the one before its first chunk's end
    steps_run = seen[-1] - (seen[0] - 1) // hp.chunk * hp.chunk if seen else 0
    return state.params, _sft_history(history, hp.chunk, steps_run, dt)


@dataclasses.dataclass(frozen=True, eq=False)   # a callable jax.jit can weak-reference (a NamedTuple cannot)
class SFTTrain:
    """What `make_train` returns: callable as `train(key) -> (params, history)`, with the model config `cfg`,
    the `tokenizer`, the SFT rows `data` = (tokens [N, T], mask [N, T]) and their loss `weights` ([N, T] or
    None)."""
    run: Any            # the `_SFTRun` of the call
    cfg: LMConfig
    tokenizer: CharTokenizer
    data: tuple
    weights: Optional[np.ndarray]

    def __call__(self, key):
        return _train_sft(self.run, key)


def make_train(spec: SFTSpec, *, ckpt_dir: Optional[str] = None,
               eval_fn: Optional[Callable] = None, log_fn: Optional[Callable] = None,
               problems=None, rows=None, init_params=None, progress: bool | str = True) -> SFTTrain:
    """Returns `train(key) -> (params, metrics)`.

    Args:
      spec: the typed run (`sft_spec(config)` converts an lm_sft ConfigDict, experiments/configs/lm_sft.py,
        once; a ConfigDict here is a TypeError). `spec.data.token_weights` ((token, weight) pairs, e.g.
        from `data.token_weights = {"<yes>": 10, "<no>": 10}`): per-token loss weights of the targets
        (`token_weights_array`, `sft_loss(weights_bt=)`); empty trains with the plain token mean.
      ckpt_dir: if given, orbax checkpoints every chunk there and resume from the latest.
      eval_fn: optional `eval_fn(params) -> float` (e.g. validation greedy accuracy); called every
        `spec.hp.eval_every` steps; training stops once it is >= `spec.hp.target_acc`
        (when target_acc > 0).
      log_fn: optional `log_fn(step, **scalars)` (e.g. MetricsWriter.write).
      problems: training problems (default: generated from `spec.data`).
      rows: optional (prompt, completion) text pairs (`rows_arrays`) used INSTEAD of problems
        (e.g. role-token data of a multi-agent system); cache such a model with
        `cache.load_or_train(..., rows=rows, recipe=...)` so it gets its own key.
      init_params: optional warm-start parameters (default: a fresh `init(key)`).
      progress: True, False or a description: a progress line with rate and ETA on stderr
        (`core.metrics.Progress`; a redrawn bar on a terminal, a line every 10 s otherwise).
    Returns:
      train(key) -> (params, {"loss": [n_chunks], "step": [n_chunks], "eval": [(step, value)],
      "steps_done": int, "stopped_early": bool, "steps_per_s": float}). With `ckpt_dir` the history is
      checkpointed with the state, so a resumed run returns the whole history, not only its own chunks.
    Raises:
      NonFiniteError (a ValueError) naming the step and the quantity as soon as a step's loss or the
      parameters are NaN/inf, before that state is checkpointed.
    """
    check_spec(spec)
    tok = CharTokenizer()
    cfg, hp = spec.model, spec.hp
    toks_np, mask_np = _sft_data(spec.data, tok, problems, rows)
    weights_np = token_weights_array(toks_np, mask_np, dict(spec.data.token_weights), tok)
    mesh = sharding.make_mesh(hp.n_devices or None)
    if hp.optim.batch_size % mesh.size:
        raise ValueError(f"optim.batch_size: {hp.optim.batch_size} is not divisible by {mesh.size} devices")
    data = (jnp.asarray(toks_np), jnp.asarray(mask_np), None if weights_np is None else jnp.asarray(weights_np))
    return SFTTrain(run=_SFTRun(cfg, hp, init_params, data, mesh, ckpt_dir, eval_fn, log_fn, progress), cfg=cfg,
                    tokenizer=tok, data=(toks_np, mask_np), weights=weights_np)
