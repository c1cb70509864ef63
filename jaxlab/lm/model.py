"""A tiny decoder-only transformer (Flax linen): pre-norm, RoPE, GELU MLP, untied LM head.

The forward pass is a pure function of `(params, tokens)`. PAD tokens (id `cfg.pad_id`) are not
tokens: they are never attended to and do not advance positions, so a left-padded prompt gives
exactly the logits of the unpadded one (positions are `cumsum(tokens != PAD) - 1`).

Hidden states (`return_hidden=True`):
  blocks  [L, B, T, D]  every block's output (the residual stream after block l)
  head    [B, T, D]     the state that enters the LM head (after the final LayerNorm);
                         logits = head @ W_out  with W_out = params["head"]["kernel"]  [D, V]

Intervention: `delta [B, D]` is added at buffer position `delta_pos [B]` of layer `delta_layer`
(0..L-1: a block output; L or -1: the head input). At the head, the next-token logits at p change by
exactly `delta @ W_out` and nothing else changes; at block l < L the change propagates to later
layers and later positions (through keys/values) but never to positions < p.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Static model configuration (hashable; pass as a static argument)."""
    vocab_size: int = 90
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    d_ff: int = 512
    max_len: int = 128
    rope_base: float = 10_000.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(f"num_heads: d_model={self.d_model} must split into heads of even "
                             f"size, got num_heads={self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


class LayerCache(NamedTuple):
    k: jax.Array  # [B, H, S, Dh]
    v: jax.Array  # [B, H, S, Dh]


class Hidden(NamedTuple):
    blocks: jax.Array  # [L, B, T, D]
    head: jax.Array    # [B, T, D]


def rope(x_bthd: jax.Array, pos_bt: jax.Array, base: float) -> jax.Array:
    """Rotary embedding (half-split convention) of x [B, T, H, Dh] at integer positions [B, T]."""
    half = x_bthd.shape[-1] // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    ang = pos_bt[..., None].astype(jnp.float32) * freq                  # [B, T, half]
    cos, sin = jnp.cos(ang)[:, :, None, :], jnp.sin(ang)[:, :, None, :]
    x1, x2 = x_bthd[..., :half], x_bthd[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


_init = nn.initializers.normal(0.02)
NEG_INF = -1e9  # finite 'minus infinity' for banned tokens (keeps gradients NaN-free)


class Block(nn.Module):
    cfg: LMConfig

    @nn.compact
    def __call__(self, x, pos_bt, mask_bqk, cache: Optional[LayerCache], write_index):
        cfg = self.cfg
        H, Dh = cfg.num_heads, cfg.head_dim
        h = nn.LayerNorm(name="ln1")(x)
        qkv = nn.DenseGeneral((3, H, Dh), use_bias=False, kernel_init=_init, name="qkv")(h)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = rope(q, pos_bt, cfg.rope_base), rope(k, pos_bt, cfg.rope_base)
        # heads-major [B, H, T, Dh]: the cache is read by attention without a transpose
        q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
        if cache is not None:
            k = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), (0, 0, write_index, 0))
            v = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), (0, 0, write_index, 0))
            cache = LayerCache(k, v)
        s = jnp.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(Dh)
        s = jnp.where(mask_bqk[:, None], s, -1e30)
        p = jax.nn.softmax(s, axis=-1)
        o = jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", p, v), 1, 2)
        x = x + nn.DenseGeneral(cfg.d_model, axis=(-2, -1), use_bias=False, kernel_init=_init,
                                name="attn_out")(o)
        h = nn.LayerNorm(name="ln2")(x)
        h = nn.gelu(nn.Dense(cfg.d_ff, kernel_init=_init, name="mlp_in")(h))
        x = x + nn.Dense(cfg.d_model, kernel_init=_init, name="mlp_out")(h)
        return x, cache


class TinyLM(nn.Module):
    """The module; use the pure functions `init`, `apply`, `logprobs` below rather than this."""
    cfg: LMConfig

    @nn.compact
    def __call__(self, tokens_bt, pos_bt, mask_bqk, cache=None, write_index=0,
                 delta_bd=None, delta_pos_b=None, delta_layer: int = -1):
        cfg = self.cfg
        L = cfg.num_layers
        dl = L if delta_layer < 0 else delta_layer
        x = nn.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_init, name="embed")(tokens_bt)
        if delta_bd is not None:
            onehot_bt1 = jax.nn.one_hot(delta_pos_b, tokens_bt.shape[1], dtype=x.dtype)[..., None]
            add_btd = onehot_bt1 * delta_bd[:, None, :].astype(x.dtype)
        blocks, new_cache = [], []
        for l in range(L):
            x, c = Block(cfg, name=f"block_{l}")(x, pos_bt, mask_bqk,
                                                  None if cache is None else cache[l], write_index)
            if delta_bd is not None and dl == l:
                x = x + add_btd
            blocks.append(x)
            new_cache.append(c)
        h = nn.LayerNorm(name="ln_f")(x)
        if delta_bd is not None and dl == L:
            h = h + add_btd
        logits = nn.Dense(cfg.vocab_size, use_bias=False, kernel_init=_init, name="head")(h)
        return logits, Hidden(jnp.stack(blocks), h), (None if cache is None else tuple(new_cache))


def init(key: jax.Array, cfg: LMConfig) -> dict:
    """Random parameters (a plain nested dict; ~12 L d^2 + 2 V d entries)."""
    tok = jnp.zeros((1, 4), jnp.int32)
    pos = jnp.zeros((1, 4), jnp.int32)
    mask = jnp.ones((1, 4, 4), bool)
    return TinyLM(cfg).init(key, tok, pos, mask)["params"]


def num_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def positions_and_mask(tokens_bt: jax.Array, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """positions [B, T] = cumsum(valid) - 1 (>= 0); attention mask [B, T, T] = causal & valid key."""
    valid = tokens_bt != pad_id
    pos = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    T = tokens_bt.shape[1]
    causal = jnp.tril(jnp.ones((T, T), bool))
    return pos, causal[None] & valid[:, None, :]


def _check_delta(cfg, tokens_bt, delta, delta_pos, delta_layer):
    if delta is None:
        return
    if delta_pos is None:
        raise ValueError("delta_pos: required when delta is given ([B] buffer positions)")
    if delta.shape != (tokens_bt.shape[0], cfg.d_model):
        raise ValueError(f"delta: expected shape {(tokens_bt.shape[0], cfg.d_model)}, got {delta.shape}")
    if not -1 <= delta_layer <= cfg.num_layers:
        raise ValueError(f"delta_layer: expected -1..{cfg.num_layers}, got {delta_layer}")


def apply(params, tokens_bt: jax.Array, *, cfg: LMConfig, return_hidden: bool = False,
          delta: Optional[jax.Array] = None, delta_pos: Optional[jax.Array] = None,
          delta_layer: int = -1):
    """Teacher-forced forward pass.

    Args:
      params: from `init`.
      tokens_bt: [B, T] int token ids; PAD marks padding (left or right).
      return_hidden: also return `Hidden(blocks [L,B,T,D], head [B,T,D])`.
      delta, delta_pos, delta_layer: optional additive intervention `delta [B, D]` at buffer
        position `delta_pos [B]` of layer `delta_layer` (0..L-1 block output, L or -1 head input).
    Returns:
      logits [B, T, V] (raw; the next-token distribution at t is over token t+1),
      or (logits, Hidden) if return_hidden.
    """
    if tokens_bt.ndim != 2:
        raise ValueError(f"tokens_bt: expected rank 2 [B, T], got shape {tokens_bt.shape}")
    _check_delta(cfg, tokens_bt, delta, delta_pos, delta_layer)
    pos, mask = positions_and_mask(tokens_bt, cfg.pad_id)
    logits, hidden, _ = TinyLM(cfg).apply({"params": params}, tokens_bt, pos, mask,
                                          delta_bd=delta, delta_pos_b=delta_pos,
                                          delta_layer=delta_layer)
    return (logits, hidden) if return_hidden else logits


def output_log_softmax(logits: jax.Array, cfg: LMConfig) -> jax.Array:
    """Log-probs of the model's output distribution: log_softmax with PAD and BOS excluded.

    PAD and BOS can never be generated; the sampler and `logprobs` share this distribution.
    """
    banned = jnp.zeros((logits.shape[-1],), bool).at[cfg.pad_id].set(True).at[cfg.bos_id].set(True)
    return jax.nn.log_softmax(jnp.where(banned, NEG_INF, logits.astype(jnp.float32)), axis=-1)


def logprobs(params, tokens_bt: jax.Array, mask_bt: jax.Array, *, cfg: LMConfig) -> jax.Array:
    """Teacher-forced per-token log-probs, aligned with tokens.

    logp[b, t] = log p(tokens[b, t] | tokens[b, <t]) for t >= 1 where mask[b, t], else 0.
    Args: tokens_bt [B, T] int; mask_bt [B, T] (bool or 0/1), typically the response mask.
    Returns: logp_bt [B, T] float32.
    """
    if tokens_bt.shape != mask_bt.shape:
        raise ValueError(f"mask_bt: expected shape {tokens_bt.shape}, got {mask_bt.shape}")
    logits = apply(params, tokens_bt, cfg=cfg)
    lp = output_log_softmax(logits[:, :-1], cfg)
    lp = jnp.take_along_axis(lp, tokens_bt[:, 1:, None], axis=-1)[..., 0]
    lp = jnp.concatenate([jnp.zeros_like(lp[:, :1]), lp], axis=1)
    return jnp.where(mask_bt.astype(bool), lp, 0.0)
