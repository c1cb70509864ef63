"""Jitted sampling with a KV cache: prefill once, then one token per step in a `lax.scan`.

Prompts are LEFT-padded with PAD ([B, P]); every row starts generating at buffer index P, and
all shapes are fixed by (B, P, G, max_new_tokens), so one compile serves a whole RL run.
`use_cache=False` recomputes the full sequence every step (the reference and the benchmark
baseline); both paths use the same keys and give the same tokens.
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


def _policy(logits_bv, key, *, cfg, temperature, top_p, greedy):
    """Returns (token [B], policy logp [B], model logp [B])."""
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
        tok = jax.random.categorical(key, lp, axis=-1)
        pol = jnp.take_along_axis(lp, tok[:, None], axis=-1)[:, 0]
    mlp = jnp.take_along_axis(model_lp, tok[:, None], axis=-1)[:, 0]
    return tok.astype(jnp.int32), pol, mlp


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "num_samples", "top_p",
                                             "greedy", "use_cache", "delta_layer",
                                             "return_logits"))
def _sample(params, key, prompts_bp, temperature, delta, delta_pos, *, cfg, max_new_tokens,
            num_samples, top_p, greedy, use_cache, delta_layer, return_logits):
    B, P = prompts_bp.shape
    G, N = num_samples, max_new_tokens
    S = P + N
    valid_bp = prompts_bp != cfg.pad_id
    plen_b = valid_bp.sum(axis=1).astype(jnp.int32)
    module = TinyLM(cfg)
    policy = functools.partial(_policy, cfg=cfg, temperature=temperature, top_p=top_p, greedy=greedy)
    rep = lambda x: jnp.repeat(x, G, axis=0)                     # [B, ...] -> [B*G, ...]

    if use_cache:
        pos_bp = jnp.maximum(jnp.cumsum(valid_bp, axis=1) - 1, 0)
        kvalid_bs = jnp.concatenate([valid_bp, jnp.ones((B, N), bool)], axis=1)
        mask = (jnp.arange(S)[None, None, :] <= jnp.arange(P)[None, :, None]) & kvalid_bs[:, None, :]
        logits, _, cache = module.apply({"params": params}, prompts_bp, pos_bp, mask,
                                        init_cache(cfg, B, S), 0, delta_bd=delta,
                                        delta_pos_b=delta_pos, delta_layer=delta_layer)
        cache = jax.tree_util.tree_map(rep, cache)
        kvalid = rep(kvalid_bs)
        first_logits = rep(logits[:, -1])
    else:
        buf0 = jnp.concatenate([rep(prompts_bp), jnp.full((B * G, N), cfg.pad_id, jnp.int32)], 1)
        cache, kvalid, first_logits = buf0, None, None
    plen = rep(plen_b)

    def step(carry, i):
        state, logits_bv, done, key = carry
        key, sub = jax.random.split(key)
        if not use_cache:
            logits_bv = jax.lax.dynamic_index_in_dim(
                apply(params, state, cfg=cfg, delta=None if delta is None else rep(delta),
                      delta_pos=None if delta is None else rep(delta_pos),
                      delta_layer=delta_layer), P - 1 + i, axis=1, keepdims=False)
        tok, pol, mlp = policy(logits_bv, sub)
        used = logits_bv
        live = ~done
        tok = jnp.where(live, tok, cfg.pad_id)
        pol, mlp = jnp.where(live, pol, 0.0), jnp.where(live, mlp, 0.0)
        done = done | (tok == cfg.eos_id)
        if use_cache:
            w = P + i
            mask = ((jnp.arange(S) <= w)[None, :] & kvalid)[:, None, :]     # [BG, 1, S]
            logits, _, state = module.apply({"params": params}, tok[:, None], (plen + i)[:, None],
                                            mask, state, w)
            logits_bv = logits[:, 0]
        else:
            state = jax.lax.dynamic_update_slice(state, tok[:, None], (0, P + i))
        return (state, logits_bv, done, key), (tok, pol, mlp, live,
                                               used if return_logits else None)

    if not use_cache:
        first_logits = jnp.zeros((B * G, cfg.vocab_size), jnp.float32)
    carry = (cache, first_logits, jnp.zeros((B * G,), bool), key)
    # (The forward after the last sampled token is unused; it keeps the scan body uniform.)
    _, (tok, pol, mlp, live, lg) = jax.lax.scan(step, carry, jnp.arange(N))
    shape = lambda x: jnp.swapaxes(x, 0, 1).reshape(B, G, N)
    tok, pol, mlp, live = shape(tok), shape(pol), shape(mlp), shape(live)
    finished = jnp.any(tok == cfg.eos_id, axis=-1)
    if return_logits:
        lg = jnp.swapaxes(lg, 0, 1).reshape(B, G, N, -1)
    return SampleOutput(tok, pol, mlp, live, live.sum(-1).astype(jnp.int32), finished, lg)


def sample(params, key: jax.Array, prompts_bp, *, cfg: LMConfig, max_new_tokens: int,
           num_samples: int = 1, temperature: float = 1.0, top_p: float = 1.0,
           greedy: bool = False, use_cache: bool = True, delta=None,
           delta_layer: int = -1, return_logits: bool = False) -> SampleOutput:
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
    delta_pos = None
    if delta is not None:
        delta = jnp.asarray(delta, jnp.float32)
        delta_pos = jnp.full((prompts_bp.shape[0],), prompts_bp.shape[1] - 1, jnp.int32)
        _check_delta(cfg, prompts_bp, delta, delta_pos, delta_layer)
    return _sample(params, key, prompts_bp, jnp.asarray(temperature, jnp.float32), delta, delta_pos, cfg=cfg,
                   max_new_tokens=int(max_new_tokens), num_samples=int(num_samples),
                   top_p=float(top_p), greedy=bool(greedy), use_cache=bool(use_cache),
                   delta_layer=int(delta_layer), return_logits=bool(return_logits))


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
