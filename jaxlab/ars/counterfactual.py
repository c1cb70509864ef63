"""Counterfactual answers at the trace boundary (ARS §3, greedy form) and teacher-forced embeddings.

Text layout (character tokens, jaxlab.lm):  x = 'Q:47+85= T:'   r = '7+5=12,...;47+85=132 A:'   a = '132<eos>'.
The boundary b is the last token of x ⊕ r (the ':' of the answer marker ' A:'); its LM-head input h predicts
the first answer token. A counterfactual adds delta ~ N(0, (rho RMS(h))^2 I) to h (delta_layer=-1: only the
first answer token's logits change, the KV cache is untouched) or to a block output at b (delta_layer=l:
the change also reaches the cached keys/values of b and thus every later token), then decodes greedily.
Other positions (a fraction of the trace, mid-answer) truncate x ⊕ r ⊕ a there and continue the same way.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import lm
from jaxlab.lm.model import output_log_softmax

MARKER = " A:"
POSITIONS = ("boundary", "trace_0.25", "trace_0.5", "trace_0.75", "mid_answer")


def split_answer(text: str) -> tuple[str, str]:
    """Splits a CoT text at the LAST answer marker: (x ⊕ r up to and including ' A:', answer a).

    The answer has '<eos>' and anything after it removed. Raises ValueError without the marker.
    >>> split_answer("Q:1+2= T:1+2=3 A:3<eos>")
    ('Q:1+2= T:1+2=3 A:', '3')
    """
    if not isinstance(text, str) or MARKER not in text:
        raise ValueError(f"text: expected a prompt containing the answer marker {MARKER!r}, got {text!r}")
    i = text.rindex(MARKER) + len(MARKER)
    return text[:i], text[i:].split("<eos>", 1)[0]


def truncate_at(text: str, position: str) -> str:
    """The prefix of a CoT text (x ⊕ r ⊕ a, prompt 'Q:..= T:' included) where a counterfactual is forced.

    position: "boundary" (through ' A:'), "trace_f" for f in (0, 1) (the prompt plus the first
    ceil(f |r'|) characters of the trace r' between 'T:' and ' A:'), or "mid_answer" (the boundary plus
    the first max(1, |a| // 2) answer characters; for a one-character answer the whole answer).
    """
    prefix, ans = split_answer(text)
    if position == "boundary":
        return prefix
    if position == "mid_answer":
        return prefix + ans[:max(1, len(ans) // 2)]
    if position.startswith("trace_"):
        f = float(position.split("_", 1)[1])
        if not 0.0 < f < 1.0:
            raise ValueError(f"position: trace fraction must be in (0, 1), got {position!r}")
        if "T:" not in prefix:
            raise ValueError(f"text: expected a trace starting with 'T:', got {text!r}")
        start = prefix.index("T:") + 2
        trace = prefix[start:len(prefix) - len(MARKER)]
        return prefix[:start] + trace[:max(1, math.ceil(f * len(trace)))]
    raise ValueError(f"position: expected one of {POSITIONS} (or trace_<f>), got {position!r}")


def perturbation(key: jax.Array, h_bd: jax.Array, *, rho: float, num_draws: int) -> jax.Array:
    """delta [B, M, D] with delta_bm ~ N(0, sigma_b^2 I), sigma_b = rho * RMS(h_b) = rho sqrt(mean_d h_bd^2)."""
    if not rho >= 0:
        raise ValueError(f"rho: expected >= 0, got {rho}")
    if num_draws < 1:
        raise ValueError(f"num_draws: expected >= 1, got {num_draws}")
    sigma_b = rho * jnp.sqrt(jnp.mean(jnp.square(h_bd), axis=-1))
    eps = jax.random.normal(key, (h_bd.shape[0], int(num_draws), h_bd.shape[1]), jnp.float32)
    return sigma_b[:, None, None] * eps


def encode_prefixes(prefixes: Sequence[str], tok: lm.CharTokenizer, length: int) -> np.ndarray:
    """'<bos>' + prefix, LEFT-padded to `length` -> [B, length] int32 (sampler prompts)."""
    ids, _ = tok.encode_batch(["<bos>" + p for p in prefixes], length=length, pad_side="left")
    return ids


def _pad_rows(x: np.ndarray, bs: int) -> tuple[np.ndarray, int]:
    """Pads the rows of x (repeating row 0) to a multiple of bs (at least bs): every batch then has the
    same shape, so a program compiles once per batch size, whatever the number of rows."""
    n = x.shape[0]
    pad = (-n) % bs if n >= bs else bs - n
    if pad:
        x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)], axis=0)
    return x, n


_apply_hidden = jax.jit(lambda params, toks, cfg: lm.apply(params, toks, cfg=cfg, return_hidden=True),
                        static_argnames="cfg")


def boundary_states(params, prompts_bp: np.ndarray, *, cfg: lm.LMConfig, layer: int = -1,
                    batch_size: int = 256) -> np.ndarray:
    """State at the last prompt position: the LM-head input (layer=-1) or block `layer`'s output. [B, D]."""
    bs = int(batch_size)
    x, n = _pad_rows(np.asarray(prompts_bp), bs)
    outs = []
    for s in range(0, x.shape[0], bs):
        _, hid = _apply_hidden(params, jnp.asarray(x[s:s + bs]), cfg)
        outs.append(np.asarray(hid.head[:, -1] if layer in (-1, cfg.num_layers) else hid.blocks[layer, :, -1]))
    return np.concatenate(outs)[:n]


def counterfactuals(params, key: jax.Array, prompts_bp: np.ndarray, *, cfg: lm.LMConfig, rho: float,
                    num_draws: int, max_new_tokens: int, layer: int = -1, batch_size: int = 256,
                    keep_tokens: int | None = None) -> np.ndarray:
    """Greedy counterfactual continuations: [B, M, N] tokens (PAD after EOS).

    prompts_bp: [B, P] left-padded prefixes ending at the intervention position. delta as in
    `perturbation(key, h, rho=rho, num_draws=M)` with h the state at that position in `layer`
    (-1: LM-head input); decoding is greedy, so fixed keys give identical counterfactuals and
    rho = 0 gives the unperturbed greedy continuation.

    Every batch has batch_size rows and the decoder runs N = max_new_tokens steps, so one compiled
    program serves every position, rho and seed with the same (P, N). P + N may exceed cfg.max_len
    (left PAD takes no position): each row then keeps at most cfg.max_len - (its real prompt length)
    tokens (what fits in the model's context) and, with keep_tokens, at most keep_tokens (greedy decoding
    is causal, so this equals decoding only that many steps); the rest is PAD.
    """
    if not rho >= 0:
        raise ValueError(f"rho: expected >= 0, got {rho}")
    prompts_bp = np.asarray(prompts_bp, np.int32)
    B, P = prompts_bp.shape
    run_cfg = cfg if P + max_new_tokens <= cfg.max_len else dataclasses.replace(cfg, max_len=P + max_new_tokens)
    h = boundary_states(params, prompts_bp, cfg=cfg, layer=layer, batch_size=batch_size)
    delta = np.asarray(perturbation(key, jnp.asarray(h), rho=rho, num_draws=num_draws))   # [B, M, D]
    rows = np.repeat(prompts_bp, num_draws, axis=0)
    drows = delta.reshape(B * num_draws, -1)
    bs = int(batch_size)
    rows, n = _pad_rows(rows, bs)
    drows, _ = _pad_rows(drows, bs)
    outs = []
    for s in range(0, rows.shape[0], bs):
        o = lm.sample(params, None, rows[s:s + bs], cfg=run_cfg, max_new_tokens=max_new_tokens, greedy=True,
                      delta=drows[s:s + bs], delta_layer=layer)
        outs.append(np.asarray(o.tokens[:, 0]))
    toks = np.concatenate(outs)[:n].reshape(B, num_draws, max_new_tokens)
    room = cfg.max_len - (prompts_bp != cfg.pad_id).sum(1)                                 # [B]
    if keep_tokens is not None:
        room = np.minimum(room, int(keep_tokens))
    cut = np.arange(max_new_tokens)[None, None, :] >= room[:, None, None]
    return np.where(cut, cfg.pad_id, toks).astype(np.int32)


def _last_logits_and_states(params, prompts_bp: np.ndarray, *, cfg: lm.LMConfig, batch_size: int):
    """LM-head input h [B, D] at the last prompt position (fixed batch shape, see `boundary_states`)."""
    return boundary_states(params, prompts_bp, cfg=cfg, layer=-1, batch_size=batch_size)


def first_tokens(params, h_bd: np.ndarray, delta_bmd: np.ndarray, cfg: lm.LMConfig) -> np.ndarray:
    """Greedy first token under a head-input intervention: argmax over generable tokens of
    (h + delta) W_o (the head has no bias; PAD and BOS are never generated). [B, M] int32."""
    w = np.asarray(params["head"]["kernel"], np.float32)                       # [D, V]
    logits = (np.asarray(h_bd, np.float32)[:, None, :] + np.asarray(delta_bmd, np.float32)) @ w
    logits[..., [cfg.pad_id, cfg.bos_id]] = -np.inf
    return np.argmax(logits, axis=-1).astype(np.int32)


def head_counterfactuals(params, key: jax.Array, prompts_bp: np.ndarray, *, cfg: lm.LMConfig, rho: float,
                         num_draws: int, max_new_tokens: int, batch_size: int = 256,
                         keep_tokens: int | None = None, greedy_tokens: np.ndarray | None = None
                         ) -> np.ndarray:
    """`counterfactuals(..., layer=-1)` computed by forcing the first token (the paper's greedy form).

    With delta at the LM-head input only the first generated token's logits move (by delta W_o) and the
    KV cache is untouched, so a counterfactual is t0 = argmax((h + delta) W_o) followed by the greedy
    continuation of prompt ⊕ t0. Draws that force the same t0 share one decode; t0 = EOS needs none; and
    with greedy_tokens [B, >=1] (the unperturbed greedy continuation of each prompt, e.g. the rest of the
    original text, PAD-padded) a draw whose t0 equals both the unperturbed argmax and greedy_tokens[b, 0]
    reuses it. Same delta draws (key) as `counterfactuals`; same cuts (context end, keep_tokens).
    Returns [B, M, N] tokens (PAD after EOS).
    """
    if not rho >= 0:
        raise ValueError(f"rho: expected >= 0, got {rho}")
    prompts_bp = np.asarray(prompts_bp, np.int32)
    B, P = prompts_bp.shape
    M, N = int(num_draws), int(max_new_tokens)
    h = _last_logits_and_states(params, prompts_bp, cfg=cfg, batch_size=batch_size)
    delta = np.asarray(perturbation(key, jnp.asarray(h), rho=rho, num_draws=M))          # [B, M, D]
    t0 = first_tokens(params, h, delta, cfg)                                           # [B, M]
    t_greedy = first_tokens(params, h, np.zeros_like(delta[:, :1]), cfg)[:, 0]          # [B]
    out = np.full((B, M, N), cfg.pad_id, np.int32)
    out[:, :, 0] = t0
    reuse = np.zeros((B, M), bool)
    if greedy_tokens is not None:
        g = np.full((B, N), cfg.pad_id, np.int32)
        gt = np.asarray(greedy_tokens, np.int32)[:, :N]
        g[:, :gt.shape[1]] = gt
        reuse = (t0 == t_greedy[:, None]) & (t0 == g[:, :1])
        out[reuse] = np.broadcast_to(g[:, None], (B, M, N))[reuse]
    need = ~reuse & (t0 != cfg.eos_id)
    pairs = sorted({(b, int(t)) for b, t in zip(*np.nonzero(need)) for t in [t0[b, t]]})
    if pairs and N > 1:
        rows = np.concatenate([prompts_bp[[b for b, _ in pairs]],
                               np.asarray([[t] for _, t in pairs], np.int32)], axis=1)   # [Q, P + 1]
        n_new = N - 1
        run_cfg = cfg if P + 1 + n_new <= cfg.max_len else dataclasses.replace(cfg, max_len=P + 1 + n_new)
        bs = int(batch_size)
        x, q = _pad_rows(rows, bs)
        conts = np.concatenate([np.asarray(lm.sample(params, None, x[s:s + bs], cfg=run_cfg, max_new_tokens=n_new,
                                                     greedy=True).tokens[:, 0])
                                for s in range(0, x.shape[0], bs)])[:q]
        index = {pt: i for i, pt in enumerate(pairs)}
        for b, m in zip(*np.nonzero(need)):
            out[b, m, 1:] = conts[index[(b, int(t0[b, m]))]]
    room = cfg.max_len - (prompts_bp != cfg.pad_id).sum(1)                                 # [B]
    if keep_tokens is not None:
        room = np.minimum(room, int(keep_tokens))
    cut = np.arange(N)[None, None, :] >= room[:, None, None]
    return np.where(cut, cfg.pad_id, out).astype(np.int32)


def greedy_continuations(params, prompts_bp: np.ndarray, *, cfg: lm.LMConfig, max_new_tokens: int,
                         batch_size: int = 256) -> np.ndarray:
    """Unperturbed greedy continuations [B, N] of left-padded prompts (the reference for rho = 0)."""
    bs = int(batch_size)
    x, n = _pad_rows(np.asarray(prompts_bp, np.int32), bs)
    outs = [np.asarray(lm.sample(params, None, x[s:s + bs], cfg=cfg, max_new_tokens=max_new_tokens,
                                 greedy=True).tokens[:, 0]) for s in range(0, x.shape[0], bs)]
    return np.concatenate(outs)[:n]


class Features(NamedTuple):
    """Teacher-forced features of complete sequences. L layers, B sequences."""
    blocks_lbd: np.ndarray   # [L, B, D] block outputs at the last answer token (EOS excluded)
    head_bd: np.ndarray      # [B, D] LM-head input at that token
    nll_b: np.ndarray        # [B] mean NLL of the answer tokens (answer characters and EOS)


def encode_full(texts: Sequence[str], tok: lm.CharTokenizer, length: int, *, strict: bool = True):
    """Right-padded '<bos>' + text + '<eos>' (text = x ⊕ r ⊕ a, a trailing '<eos>' optional) and indices.

    Returns (ids [B, T], last [B] index of the last answer token (EOS excluded), ans_start [B] index of
    the first answer token). Texts without the marker raise ValueError when strict; otherwise (sampled or
    counterfactual text that never reached an answer) their last token stands in for the answer.
    Rows longer than `length` keep their first length - 1 tokens and end in EOS.
    """
    rows, starts = [], []
    for t in texts:
        if strict or MARKER in t:
            prefix, ans = split_answer(t)
        else:
            body = t.split("<eos>", 1)[0]
            prefix, ans = body[:-1], body[-1:]
        ids_p = tok.encode("<bos>" + prefix)
        r = np.concatenate([ids_p, tok.encode(ans)])[:length - 1]
        rows.append(np.concatenate([r, [tok.eos_id]]).astype(np.int32))
        starts.append(min(len(ids_p), len(r) - 1))
    ids = np.full((len(rows), length), tok.pad_id, np.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    last = np.asarray([len(r) - 2 for r in rows], np.int32)    # the token before EOS
    return ids, last, np.asarray(starts, np.int32)


def _features_batch(params, ids, last, ans_start, cfg):
    logits, hid = lm.apply(params, ids, cfg=cfg, return_hidden=True)
    b = jnp.arange(ids.shape[0])
    lp = output_log_softmax(logits[:, :-1], cfg)
    lp = jnp.take_along_axis(lp, ids[:, 1:, None], axis=-1)[..., 0]          # lp[t] = log p(ids[t+1])
    t = jnp.arange(ids.shape[1] - 1)[None]
    m = (t + 1 >= ans_start[:, None]) & (t + 1 <= last[:, None] + 1)         # answer chars and EOS
    nll = -jnp.sum(jnp.where(m, lp, 0.0), 1) / jnp.maximum(jnp.sum(m, 1), 1)
    return hid.blocks[:, b, last], hid.head[b, last], nll


_features_jit = jax.jit(_features_batch, static_argnames="cfg")


def features(params, texts: Sequence[str], *, cfg: lm.LMConfig, tok: lm.CharTokenizer,
             batch_size: int = 512, verdict: str | None = None, strict: bool = True) -> Features:
    """Teacher-forced features of x ⊕ r ⊕ a for each text (embedding u at the last answer token).

    verdict: None, or a verdict token ('<yes>' / '<no>') appended after the answer in place of EOS
    (CCS contrast pairs): the embedding is then read at the verdict token.
    """
    ids, last, start = encode_full(texts, tok, cfg.max_len, strict=strict)
    if verdict is not None:
        vid = tok.token_id(verdict)
        ids = ids.copy()
        ids[np.arange(len(ids)), last + 1] = vid               # replaces EOS
        last = last + 1
    bs = int(batch_size)                      # fixed batch shape: one compile for any number of texts
    ids, n = _pad_rows(ids, bs)
    last, _ = _pad_rows(last, bs)
    start, _ = _pad_rows(start, bs)
    bl, hd, nl = [], [], []
    for s in range(0, len(ids), bs):
        a, b, c = _features_jit(params, jnp.asarray(ids[s:s + bs]), jnp.asarray(last[s:s + bs]),
                                jnp.asarray(start[s:s + bs]), cfg)
        bl.append(np.asarray(a)); hd.append(np.asarray(b)); nl.append(np.asarray(c))
    return Features(np.concatenate(bl, 1)[:, :n], np.concatenate(hd)[:n], np.concatenate(nl)[:n])


def decode_answers(tok: lm.CharTokenizer, tokens_bmn: np.ndarray) -> list[list[str]]:
    """Decoded continuations (stop at EOS), [B][M] strings."""
    return [[tok.decode(row, stop_at_eos=True) for row in per] for per in np.asarray(tokens_bmn)]
