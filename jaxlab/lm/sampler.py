"""Jitted sampling with a KV cache: prefill once, then one token per step in a `lax.while_loop`.

Prompts are LEFT-padded with PAD ([B, P]); every row starts generating at buffer index P, and
all shapes are fixed by (B, P, G, max_new_tokens), so one compile serves a whole RL run.
`use_cache=False` recomputes the full sequence every step (the reference and the benchmark
baseline); both paths use the same keys and give the same tokens.

Decoding with the cache (issue 19) is a `lax.while_loop` that stops as soon as every row has emitted
EOS. Two options (off by default, so committed results stay bit for bit) make it faster on CPU:
`row_block` decodes the rows in blocks whose KV cache stays in the CPU's cache, and `segments` runs
length segments whose steps attend over the cache slots that can be filled by the segment's end only.
Both keep every drawn token; log-probs move by float32 rounding.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.lm.model import (NEG_INF, LayerCache, LMConfig, TinyLM, apply, output_log_softmax,
                             _check_delta)


class SampleOutput(NamedTuple):
    """What `sample` returns. N = max_new_tokens, G = num_samples.

    tokens:         [B, G, N] int32 generated tokens; PAD after EOS.
    logprobs:       [B, G, N] log-prob of each token under the sampling policy (after temperature
                    and top-p); 0 for greedy decoding and where mask is False.
    model_logprobs: [B, G, N] log-prob under the model itself (temperature 1, no top-p), the same
                    numbers `logprobs(params, tokens, mask)` gives teacher-forced; 0 where masked.
    mask:           [B, G, N] bool, True up to and including the first EOS.
    lengths:        [B, G] int32 number of generated tokens (EOS included).
    finished:       [B, G] bool, whether EOS was produced.
    logits:         [B, G, N, V] raw logits each token was drawn from (only with
                    return_logits=True, else None).
    """
    tokens: jax.Array
    logprobs: jax.Array
    model_logprobs: jax.Array
    mask: jax.Array
    lengths: jax.Array
    finished: jax.Array
    logits: Optional[jax.Array] = None


def init_cache(cfg: LMConfig, batch: int, length: int, dtype=jnp.float32) -> tuple[LayerCache, ...]:
    shape = (batch, cfg.num_heads, length, cfg.head_dim)
    return tuple(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
                 for _ in range(cfg.num_layers))


def _policy(logits_bv, noise_bv, *, cfg, temperature, top_p, greedy):
    """Returns (token [B], policy logp [B], model logp [B]).

    noise_bv: [B, V] standard Gumbel noise (None when greedy); `argmax(lp + noise)` is exactly what
    `jax.random.categorical(key, lp)` computes with `noise = jax.random.gumbel(key, lp.shape)`
    (tests/lm/test_sampler.py checks the equality), so rows can be decoded in blocks that slice one
    step's noise without changing a draw."""
    model_lp = output_log_softmax(logits_bv, cfg)
    if greedy:
        tok = jnp.argmax(model_lp, axis=-1)
        pol = jnp.zeros(tok.shape, jnp.float32)
    else:
        lp = output_log_softmax(logits_bv / temperature, cfg)
        if top_p < 1.0:
            order = jnp.argsort(-lp, axis=-1)
            sorted_p = jnp.exp(jnp.take_along_axis(lp, order, axis=-1))
            before = jnp.cumsum(sorted_p, axis=-1) - sorted_p      # mass strictly above
            keep_sorted = before < top_p                           # always keeps the top token
            keep = jnp.zeros_like(keep_sorted).at[
                jnp.arange(lp.shape[0])[:, None], order].set(keep_sorted)
            lp = jax.nn.log_softmax(jnp.where(keep, lp, NEG_INF), axis=-1)
        tok = jnp.argmax(noise_bv + lp, axis=-1)
        pol = jnp.take_along_axis(lp, tok[:, None], axis=-1)[:, 0]
    mlp = jnp.take_along_axis(model_lp, tok[:, None], axis=-1)[:, 0]
    return tok.astype(jnp.int32), pol, mlp


def _gumbel(key, shape):
    return jax.random.gumbel(key, shape, jnp.float32)


def _block_noise(key, rows: int, vocab: int, start, size: int):
    """Rows [start, start + size) of the [rows, V] Gumbel noise `_gumbel(key, (rows, V))` of one decoding
    step (rows past `rows` are zero: padding). With one block this is the whole noise, as before."""
    noise = _gumbel(key, (rows, vocab))
    if size == rows:
        return noise
    noise = jnp.pad(noise, ((0, size), (0, 0)))
    return jax.lax.dynamic_slice_in_dim(noise, start, size, axis=0)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "num_samples", "top_p",
                                             "greedy", "use_cache", "delta_layer",
                                             "return_logits", "segments", "row_block"))
def _sample(params, key, prompts_bp, temperature, delta, delta_pos, *, cfg, max_new_tokens,
            num_samples, top_p, greedy, use_cache, delta_layer, return_logits, segments, row_block):
    B, P = prompts_bp.shape
    G, N = num_samples, max_new_tokens
    valid_bp = prompts_bp != cfg.pad_id
    plen_b = valid_bp.sum(axis=1).astype(jnp.int32)
    module = TinyLM(cfg)
    policy = functools.partial(_policy, cfg=cfg, temperature=temperature, top_p=top_p, greedy=greedy)
    rep = lambda x: jnp.repeat(x, G, axis=0)                     # [B, ...] -> [B*G, ...]

    if use_cache:
        return _decode_cached(params, key, prompts_bp, valid_bp, plen_b, delta, delta_pos, module=module,
                              policy=policy, rep=rep, cfg=cfg, G=G, N=N, delta_layer=delta_layer,
                              return_logits=return_logits, greedy=greedy, segments=segments,
                              row_block=row_block)
    buf0 = jnp.concatenate([rep(prompts_bp), jnp.full((B * G, N), cfg.pad_id, jnp.int32)], 1)

    def step(carry, i):
        state, done, key = carry
        key, sub = jax.random.split(key)
        logits_bv = jax.lax.dynamic_index_in_dim(
            apply(params, state, cfg=cfg, delta=None if delta is None else rep(delta),
                  delta_pos=None if delta is None else rep(delta_pos),
                  delta_layer=delta_layer), P - 1 + i, axis=1, keepdims=False)
        tok, pol, mlp = policy(logits_bv, None if greedy else _gumbel(sub, logits_bv.shape))
        live = ~done
        tok = jnp.where(live, tok, cfg.pad_id)
        pol, mlp = jnp.where(live, pol, 0.0), jnp.where(live, mlp, 0.0)
        done = done | (tok == cfg.eos_id)
        state = jax.lax.dynamic_update_slice(state, tok[:, None], (0, P + i))
        return (state, done, key), (tok, pol, mlp, live, logits_bv if return_logits else None)

    carry = (buf0, jnp.zeros_like(buf0[:, 0], bool), key)
    _, (tok, pol, mlp, live, lg) = jax.lax.scan(step, carry, jnp.arange(N))
    return _finish(tok, pol, mlp, live, lg, B=B, G=G, N=N, cfg=cfg, return_logits=return_logits)


def _finish(tok, pol, mlp, live, lg, *, B, G, N, cfg, return_logits):
    """[N, B*G] step-major outputs -> SampleOutput with [B, G, N] arrays."""
    shape = lambda x: jnp.swapaxes(x, 0, 1).reshape(B, G, N)
    tok, pol, mlp, live = shape(tok), shape(pol), shape(mlp), shape(live)
    finished = jnp.any(tok == cfg.eos_id, axis=-1)
    if return_logits:
        lg = jnp.swapaxes(lg, 0, 1).reshape(B, G, N, -1)
    return SampleOutput(tok, pol, mlp, live, live.sum(-1).astype(jnp.int32), finished, lg)


DECODE_SEGMENTS = 1   # 1: bit-identical to the single scan; >1 changes log-probs at ~1e-7 relative


def decode_segments(P: int, N: int, max_segments: int | None = None) -> tuple[int, ...]:
    """Step indices where the decoding segments end (the last is N). Segment k attends over the
    first P + ends[k] cache slots only: the slots after them are still empty (issue 19: ~43% of the
    cache bytes at P=16, N=96 were masked slots that every step read).

    Off by default (`DECODE_SEGMENTS = 1`): shorter attention rows change the summation order, so
    log-probs move by ~1e-7 relative (tokens stay identical), and the committed results were sampled
    with one segment. At B=128, P=16, N=96 on the 2-core CPU, 3 segments with `row_block="auto"`
    decoded 1.2x faster than the blocks alone (1.26x today's decoder with XLA's defaults, measured
    interleaved; BUILD_NOTES, session 13)."""
    m = DECODE_SEGMENTS if max_segments is None else max_segments
    n_seg = max(1, min(m, -(-N // 16)))
    return tuple(sorted({-(-N * (k + 1) // n_seg) for k in range(n_seg)}))


ROW_BLOCK_CACHE_BYTES = 8 << 20   # a block's KV cache on CPU: 8 MiB (2 MiB L2 per core, 32 MiB L3)


def default_row_block(cfg: LMConfig, rows: int, length: int, backend: str | None = None) -> int:
    """Rows decoded together with `row_block="auto"`: on CPU, the most rows whose float32 KV cache of `length`
    slots (2 * num_layers * length * d_model floats per row) fits `ROW_BLOCK_CACHE_BYTES`, balanced so
    the blocks are equal; on GPU/TPU, all `rows` (one block).

    Every decoding step reads the whole cache of its block. At B=128, P=16, N=96 (d 128, 4 layers) a
    128-row cache is 59 MB, more than the L3, and each step streams it from memory. With one host
    device per core and single-threaded Eigen (each device 64 rows), blocks of 16 rows (7.3 MB)
    decoded 1.3x faster than one block; with XLA's defaults, where Eigen splits each small matmul
    over both cores, about 1.04x (BUILD_NOTES, session 13). Not the default: a block of fewer rows
    moves log-probs by float32 rounding (~1e-7 of the logits' scale), and the committed results were
    sampled with one block."""
    if (backend or jax.default_backend()) != "cpu":
        return rows
    per_row = 2 * cfg.num_layers * length * cfg.d_model * 4
    r = max(1, min(rows, ROW_BLOCK_CACHE_BYTES // per_row))
    n_blocks = -(-rows // r)
    return -(-rows // n_blocks)


def _decode_cached(params, key, prompts_bp, valid_bp, plen_b, delta, delta_pos, *, module, policy,
                   rep, cfg, G, N, delta_layer, return_logits, greedy, segments, row_block):
    """KV-cache decoding: prefill every row at once, then decode the B*G rows in blocks of
    `row_block` rows one after another (`lax.map`), each block in length segments.

    Each segment is a `lax.while_loop` that also stops once every row of the block has emitted EOS
    (not with return_logits, whose [.., N, V] logits cover every step). Segment k's cache holds
    S_k = P + ends[k] slots (grown by padding between segments), so a step reads only slots that can
    be filled by then. A block's cache is what one step reads in full, so small blocks keep it in the
    CPU's cache (issue 19). Rows never interact and sampled rows slice the step's [B*G, V] noise, so
    every block size draws the same tokens; log-probs move by float32 rounding only (matmuls over fewer
    rows may sum in another order). Steps skipped after every row finished keep the values a finished
    row gets anyway (PAD, log-probs 0, mask False), so tokens and log-probs are the ones the
    full-length scan gave (tests/lm/test_sampler.py checks this against a reference scan).
    """
    B, P = prompts_bp.shape
    BG = B * G
    ends = decode_segments(P, N, segments)
    S0 = P + ends[0]
    pos_bp = jnp.maximum(jnp.cumsum(valid_bp, axis=1) - 1, 0)
    kvalid_bs = jnp.concatenate([valid_bp, jnp.ones((B, N), bool)], axis=1)
    mask = (jnp.arange(S0)[None, None, :] <= jnp.arange(P)[None, :, None]) & kvalid_bs[:, None, :S0]
    logits, _, cache = module.apply({"params": params}, prompts_bp, pos_bp, mask,
                                    init_cache(cfg, B, S0), 0, delta_bd=delta,
                                    delta_pos_b=delta_pos, delta_layer=delta_layer)
    rows = (jax.tree_util.tree_map(rep, cache), rep(logits[:, -1]), rep(kvalid_bs), rep(plen_b))
    decode = functools.partial(_decode_rows, params, key, module=module, policy=policy, cfg=cfg, P=P, N=N,
                               ends=ends, return_logits=return_logits, greedy=greedy, total_rows=BG)
    n_blocks = -(-BG // row_block)                # `sample` keeps 1 <= row_block <= B*G
    if n_blocks == 1:
        outs = decode(rows, 0)
    else:                           # pad to whole blocks with copies of row 0; their outputs are dropped
        R = -(-BG // n_blocks)                    # equal blocks
        pad = n_blocks * R - BG
        blocks = jax.tree_util.tree_map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]).reshape((n_blocks, R) + x.shape[1:]),
            rows)
        outs = jax.lax.map(lambda b: decode(b[0], b[1]), (blocks, jnp.arange(n_blocks) * R))  # [n_blocks, N, R, ..]
        outs = jax.tree_util.tree_map(
            lambda x: jnp.swapaxes(x, 0, 1).reshape((N, n_blocks * R) + x.shape[3:])[:, :BG], outs)
    tok, pol, mlp, live, lg = outs
    return _finish(tok, pol, mlp, live, lg, B=B, G=G, N=N, cfg=cfg, return_logits=return_logits)


def _decode_rows(params, key, rows, start, *, module, policy, cfg, P, N, ends, return_logits, greedy, total_rows):
    """Decodes the R rows that start at row `start` of the B*G, after the prefill. rows = (cache of S_0
    slots, first logits [R, V], key validity [R, P+N], prompt lengths [R]). Step i draws with the i-th
    split of `key` (the same chain for every block) and this block's rows of that step's noise. Returns
    [N, R] step-major outputs (tokens, policy log-probs, model log-probs, live mask, logits [N, R, V] or
    None)."""
    cache, logits_bv, kvalid, plen = rows
    R = logits_bv.shape[0]
    f32 = jnp.float32
    # initial carries are built from the rows (`*_like`), so under `shard_map` they vary over the mesh like
    # the values the loop writes into them (its per-device type check then passes)
    col = lambda v, dtype: jnp.broadcast_to(jnp.full_like(plen, v, dtype), (N, R))
    outs = (col(cfg.pad_id, jnp.int32), col(0, f32), col(0, f32), col(False, bool),
            jnp.broadcast_to(jnp.zeros_like(logits_bv, f32), (N, R, cfg.vocab_size)) if return_logits else None)
    state = (jnp.asarray(0, jnp.int32), logits_bv, jnp.zeros_like(plen, bool), key, outs)
    for end in ends:
        Sk = P + end
        if cache[0].k.shape[2] < Sk:
            grow = Sk - cache[0].k.shape[2]
            cache = jax.tree_util.tree_map(
                lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, grow), (0, 0))), cache)
        kv_k = kvalid[:, :Sk]

        def cond(st, end=end):
            i, _, done, _, _, _ = st
            go = i < end
            return go if return_logits else go & ~jnp.all(done)

        def body(st, Sk=Sk, kv_k=kv_k):
            i, logits_bv, done, key, outs, cache = st
            key, sub = jax.random.split(key)
            noise = None if greedy else _block_noise(sub, total_rows, logits_bv.shape[-1], start, R)
            tok, pol, mlp = policy(logits_bv, noise)
            live = ~done
            tok = jnp.where(live, tok, cfg.pad_id)
            pol, mlp = jnp.where(live, pol, 0.0), jnp.where(live, mlp, 0.0)
            done = done | (tok == cfg.eos_id)
            new = (tok, pol, mlp, live, logits_bv if return_logits else None)
            outs = jax.tree_util.tree_map(
                lambda buf, v: jax.lax.dynamic_update_index_in_dim(buf, v, i, axis=0), outs, new)
            w = P + i
            mask = ((jnp.arange(Sk) <= w)[None, :] & kv_k)[:, None, :]     # [R, 1, Sk]
            logits, _, cache = module.apply({"params": params}, tok[:, None], (plen + i)[:, None],
                                            mask, cache, w)
            return i + 1, logits[:, 0], done, key, outs, cache

        *state, cache = jax.lax.while_loop(cond, body, tuple(state) + (cache,))
    return state[4]


def sample(params, key: jax.Array, prompts_bp, *, cfg: LMConfig, max_new_tokens: int,
           num_samples: int = 1, temperature: float = 1.0, top_p: float = 1.0,
           greedy: bool = False, use_cache: bool = True, delta=None,
           delta_layer: int = -1, return_logits: bool = False, segments: int | None = None,
           row_block: int | str | None = None) -> SampleOutput:
    """Samples continuations of left-padded prompts.

    Args:
      params: model parameters.
      key: PRNG key (may be None when greedy).
      prompts_bp: [B, P] int32 prompts, LEFT-padded with PAD (`CharTokenizer.encode_batch(...,
        pad_side="left")`); each row must hold at least one token.
      max_new_tokens: N, fixed number of decoding steps (compiled once per (B, P, G, N)).
      num_samples: G samples per prompt (prefill once, cache tiled G times).
      temperature: > 0, traced (changing it does not recompile).
      top_p: nucleus mass in (0, 1]; static.
      greedy: argmax decoding (policy log-probs are then 0).
      use_cache: False recomputes the full sequence each step (reference / benchmark baseline).
      delta: optional [B, D] intervention added at the last prompt position (the boundary) at
        layer `delta_layer` during prefill (-1: the LM-head input, which changes only the first
        generated token's logits; 0..L-1: a block output, which also changes the cached keys and
        values of that position and thus every later token).
      return_logits: also return the [B, G, N, V] logits (tests, debugging).
      segments: number of length segments of the cached decoder (default `DECODE_SEGMENTS` = 1);
        more segments read fewer empty cache slots and move log-probs by ~1e-7 relative.
      row_block: rows (of the B*G) decoded together in one block of the cached decoder; blocks run
        one after another. None (default): all rows in one block, today's numbers bit for bit.
        "auto": `default_row_block(...)`, on CPU as many rows as keep a block's KV cache within
        `ROW_BLOCK_CACHE_BYTES` (see there for the measured gain). Any block size draws the
        same tokens; log-probs move by float32 rounding (the dense layers' matmuls see fewer rows).
    Returns:
      SampleOutput with [B, G, N] tokens, logprobs, model_logprobs, mask and [B, G] lengths.
    """
    prompts_bp = jnp.asarray(prompts_bp, jnp.int32)
    if prompts_bp.ndim != 2:
        raise ValueError(f"prompts_bp: expected [B, P], got shape {prompts_bp.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected >= 1, got {max_new_tokens}")
    if num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p: expected in (0, 1], got {top_p}")
    if not greedy and not isinstance(temperature, jax.core.Tracer) and not float(temperature) > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    if not isinstance(prompts_bp, jax.core.Tracer):
        v = np.asarray(prompts_bp) != cfg.pad_id
        if (~v.any(axis=1)).any():
            raise ValueError("prompts_bp: every row needs at least one non-PAD token")
        if (np.diff(v.astype(int), axis=1) < 0).any():
            raise ValueError("prompts_bp: expected LEFT padding (PAD only before the tokens)")
    if prompts_bp.shape[1] + max_new_tokens > cfg.max_len:
        raise ValueError(f"max_new_tokens: prompt length {prompts_bp.shape[1]} + {max_new_tokens} "
                         f"exceeds cfg.max_len={cfg.max_len}")
    if key is None:
        if not greedy:
            raise ValueError("key: a PRNG key is required unless greedy=True")
        key = jax.random.PRNGKey(0)
    if segments is not None and int(segments) < 1:
        raise ValueError(f"segments: expected >= 1, got {segments}")
    rows = prompts_bp.shape[0] * int(num_samples)
    if row_block is None:
        row_block = rows
    elif row_block == "auto":
        row_block = default_row_block(cfg, rows, prompts_bp.shape[1] + max_new_tokens)
    elif isinstance(row_block, str) or int(row_block) < 1:
        raise ValueError(f"row_block: expected None, 'auto' or an integer >= 1, got {row_block!r}")
    row_block = min(int(row_block), rows)
    delta_pos = None
    if delta is not None:
        delta = jnp.asarray(delta, jnp.float32)
        delta_pos = jnp.full((prompts_bp.shape[0],), prompts_bp.shape[1] - 1, jnp.int32)
        _check_delta(cfg, prompts_bp, delta, delta_pos, delta_layer)
    return _sample(params, key, prompts_bp, jnp.asarray(temperature, jnp.float32), delta, delta_pos, cfg=cfg,
                   max_new_tokens=int(max_new_tokens), num_samples=int(num_samples),
                   top_p=float(top_p), greedy=bool(greedy), use_cache=bool(use_cache),
                   delta_layer=int(delta_layer), return_logits=bool(return_logits),
                   segments=DECODE_SEGMENTS if segments is None else int(segments), row_block=row_block)


def sequences(prompts_bp, out: SampleOutput) -> tuple[jax.Array, jax.Array]:
    """Prompt + response as teacher-forcing input.

    Returns (tokens [B*G, P+N], response mask [B*G, P+N]); feed them to `logprobs(params, tokens,
    mask)`, whose values at the response positions equal `out.model_logprobs` (temperature 1).
    """
    B, G, N = out.tokens.shape
    prompts = jnp.repeat(jnp.asarray(prompts_bp, jnp.int32), G, axis=0)
    toks = jnp.concatenate([prompts, out.tokens.reshape(B * G, N)], axis=1)
    mask = jnp.concatenate([jnp.zeros(prompts.shape, bool), out.mask.reshape(B * G, N)], axis=1)
    return toks, mask
