"""Supervised fine-tuning (SFT) of the tiny LM on gold CoT / direct traces.

`make_train(config) -> train(key) -> (params, metrics)` in the purejaxrl/brax style: the data are
device arrays, each jitted call runs `config.train.chunk` AdamW steps in a `lax.scan`, the batch is
split over the core mesh's `data` axis (GSPMD inserts the gradient all-reduce), and the loop
between chunks checkpoints (orbax, via jaxlab.core.checkpoint) and optionally evaluates greedy
accuracy on a validation set to stop early (config knobs for the RL papers' warm starts).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jaxlab.core import metrics as metrics_lib
from jaxlab.core import sharding
from jaxlab.core.loop import check_finite, check_params_finite
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


def make_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    sched = optax.warmup_cosine_decay_schedule(0.0, o.lr, o.warmup, max(o.steps, o.warmup + 1),
                                               end_value=o.lr * o.end_lr_frac)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip),
                       optax.adamw(sched, b1=0.9, b2=o.b2, weight_decay=o.weight_decay))


def build_train_problems(config) -> list:
    d = config.data
    return tasks.generate_mix(dict(d.weights), d.n_train, seed=d.seed, split="train",
                              digits=dict(d.digits), detail=d.detail)


def _sft_data(config, tok, problems, rows) -> tuple[np.ndarray, np.ndarray]:
    """Token and loss-mask arrays [N, seq_len] of the SFT rows: `rows` ((prompt, completion) pairs) or
    `problems` (default: generated from `config.data`), never both."""
    if rows is not None:
        if problems is not None:
            raise ValueError("rows: give either rows or problems, not both")
        return rows_arrays(rows, tok, seq_len=config.data.seq_len)
    problems = build_train_problems(config) if problems is None else problems
    return sft_arrays(problems, tok, seq_len=config.data.seq_len, direct_frac=config.data.direct_frac,
                      seed=config.data.seed)


def _resume(ckpt, state, hist: dict, total: int):
    """The latest checkpoint's (step, state) and the history up to it (older checkpoints lack it). A run
    that had stopped early before it was killed does not train on. -> (step, state, hist, total)."""
    step, state = ckpt.restore(state)
    saved = ckpt.restore_metadata(step).get("history")
    if saved is not None:
        hist = {"loss": list(saved["loss"]), "step": list(saved["step"]),
                "eval": [tuple(e) for e in saved["eval"]], "stopped_early": bool(saved["stopped_early"])}
        if hist["stopped_early"]:
            total = step
    return step, state, hist, total


def _evaluate_and_stop(eval_fn, params, step: int, total: int, target_acc: float, hist: dict,
                       scalars: dict) -> int:
    """Runs eval_fn(params), records it in hist["eval"] and scalars["val_acc"]; returns the new total
    (this step once the value reaches target_acc > 0, marking the history as stopped early)."""
    val = float(eval_fn(params))
    hist["eval"].append((step, val))
    scalars["val_acc"] = val
    if target_acc > 0 and val >= target_acc:
        hist["stopped_early"] = step < total
        return step
    return total


class _SFTRun(NamedTuple):
    """Everything `make_train`'s train(key) needs: the config, the model config, the optimiser, the jitted
    chunk of SGD steps, the data, the replicated sharding and the optional hooks."""
    config: Any
    cfg: LMConfig
    tx: Any
    run_chunk: Callable
    toks_np: np.ndarray
    mask_np: np.ndarray
    weights_np: Optional[np.ndarray]
    rep: Any
    init_params: Any
    ckpt_dir: Optional[str]
    eval_fn: Optional[Callable]
    log_fn: Optional[Callable]
    progress: bool | str


def _train_sft(run: _SFTRun, key):
    """train(key) of `make_train` -> (params, history)."""
    key_init, key_data = jax.random.split(key)
    params = init(key_init, run.cfg) if run.init_params is None else run.init_params
    state = {"params": params, "opt_state": run.tx.init(params)}
    step, ckpt = 0, None
    hist = {"loss": [], "step": [], "eval": [], "stopped_early": False}
    total, chunk, t = run.config.optim.steps, run.config.train.chunk, run.config.train
    if run.ckpt_dir is not None:
        from jaxlab.core.checkpoint import Checkpointer
        ckpt = Checkpointer(run.ckpt_dir, save_every=chunk, keep=1,
                            metadata={"config": run.config.to_dict()})
        if ckpt.latest_step() is not None:
            step, state, hist, total = _resume(ckpt, state, hist, total)
    state = jax.device_put(state, run.rep)
    toks, mask = jax.device_put((jnp.asarray(run.toks_np), jnp.asarray(run.mask_np)), run.rep)
    if run.weights_np is not None:     # per-token loss weights ride along with the mask
        mask = (mask, jax.device_put(jnp.asarray(run.weights_np), run.rep))
    t0, steps_run = time.perf_counter(), 0
    bar = None
    if run.progress:
        bar = metrics_lib.Progress(total, desc=run.progress if isinstance(run.progress, str) else "sft")
        if step:
            bar.update(min(step, total))
    try:
        while step < total:
            p, o, losses = run.run_chunk(state["params"], state["opt_state"], toks, mask, key_data,
                                     jnp.int32(step))
            losses = np.asarray(jax.device_get(losses))
            check_finite({"loss": losses}, step + 1)
            check_params_finite(p, step=step + chunk)
            state = {"params": p, "opt_state": o}
            step += chunk
            steps_run += chunk
            loss = float(losses.mean())
            hist["loss"].append(loss)
            hist["step"].append(step)
            scalars = {"loss": loss}
            if run.eval_fn is not None and (step % t.eval_every == 0 or step >= total):
                total = _evaluate_and_stop(run.eval_fn, state["params"], step, total, t.target_acc, hist, scalars)
            if run.log_fn is not None:
                run.log_fn(step, **scalars)
            if ckpt is not None:
                ckpt.maybe_save(step, state, force=step >= total,
                                meta={"history": {k: v for k, v in hist.items()}})
            if bar is not None:
                if total != bar.total:
                    bar.total = max(total, 1)
                bar.update(chunk, **scalars)
    finally:
        if bar is not None:
            bar.close()
        if ckpt is not None:
            ckpt.close()
    dt = time.perf_counter() - t0
    hist["steps_done"] = step
    hist["steps_per_s"] = steps_run / dt if steps_run else float("nan")
    return state["params"], hist


def make_train(config: ml_collections.ConfigDict, *, ckpt_dir: Optional[str] = None,
               eval_fn: Optional[Callable] = None, log_fn: Optional[Callable] = None,
               problems=None, rows=None, init_params=None, progress: bool | str = True) -> Callable:
    """Returns `train(key) -> (params, metrics)`.

    Args:
      config: ConfigDict with `model`, `data`, `optim`, `train` (see experiments/configs/lm_sft.py).
        Optional `data.token_weights` ({token: weight}, e.g. {"<yes>": 10, "<no>": 10}): per-token
        loss weights of the targets (`token_weights_array`, `sft_loss(weights_bt=)`); absent or
        empty trains with the plain token mean, exactly as without the knob.
      ckpt_dir: if given, orbax checkpoints every chunk there and resume from the latest.
      eval_fn: optional `eval_fn(params) -> float` (e.g. validation greedy accuracy); called every
        `config.train.eval_every` steps; training stops once it is >= `config.train.target_acc`
        (when target_acc > 0).
      log_fn: optional `log_fn(step, **scalars)` (e.g. MetricsWriter.write).
      problems: training problems (default: generated from `config.data`).
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
    tok = CharTokenizer()
    cfg = model_config(config, tok)
    toks_np, mask_np = _sft_data(config, tok, problems, rows)
    weights_np = token_weights_array(toks_np, mask_np, config.data.get("token_weights", None), tok)
    tx = make_optimizer(config)
    t = config.train
    mesh = sharding.make_mesh(t.n_devices or None)
    rep, dat = sharding.replicated(mesh), NamedSharding(mesh, PartitionSpec(sharding.DATA))
    B, chunk = config.optim.batch_size, t.chunk
    if B % mesh.size:
        raise ValueError(f"optim.batch_size: {B} is not divisible by {mesh.size} devices")

    def sgd_step(carry, key):
        params, opt_state, toks, mask = carry
        idx = jax.random.randint(key, (B,), 0, toks.shape[0])
        bt = jax.lax.with_sharding_constraint(toks[idx], dat)
        if weights_np is None:
            bm = jax.lax.with_sharding_constraint(mask[idx], dat)
            loss, grads = jax.value_and_grad(sft_loss)(params, bt, bm, cfg=cfg)
        else:
            bm, bw = (jax.lax.with_sharding_constraint(x[idx], dat) for x in mask)
            loss, grads = jax.value_and_grad(sft_loss)(params, bt, bm, cfg=cfg, weights_bt=bw)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, toks, mask), loss

    @jax.jit
    def run_chunk(params, opt_state, toks, mask, key, step0):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(step0 + jnp.arange(chunk))
        (params, opt_state, _, _), losses = jax.lax.scan(sgd_step, (params, opt_state, toks, mask),
                                                         keys)
        return params, opt_state, losses

    train = functools.partial(_train_sft, _SFTRun(config, cfg, tx, run_chunk, toks_np, mask_np, weights_np,
                                                  rep, init_params, ckpt_dir, eval_fn, log_fn, progress))
    train.cfg = cfg
    train.tokenizer = tok
    train.data = (toks_np, mask_np)
    train.weights = weights_np
    return train
