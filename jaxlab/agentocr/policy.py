"""A tiny Flax "VLM" policy over ShelfWorld and its text-history twin (spec §7 "Policy").

OCR policy: history image (grayscale ink, padded to a fixed canvas) -> 3x3/s2 conv -> 3x3/s2 conv -> 7x7
patches (one token = 28x28 input pixels, Qwen2.5-VL's effective patch) -> Dense(d) + learned 2-D (row,
column) positions; concatenated with word tokens of the task and the CURRENT observation and a CLS token;
a pre-LN transformer trunk. Text policy: the same trunk, fed the history as word tokens instead.

Heads: action = a score per admissible action (each action's words are embedded, attend once to the trunk
outputs, and are scored against the CLS state; padding actions are masked); compression = a categorical
over C_SET; an auxiliary digit read-out (the code's two digits, a BC aid, spec §10.6).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.agentocr import env as aenv
from jaxlab.agentocr import render
from jaxlab.agentocr.losses import C_SET

NEG = -1e9


class PolicyConfig(NamedTuple):
    kind: str = "ocr"            # "ocr" | "text"
    d: int = 64
    layers: int = 2
    heads: int = 4
    mlp: int = 128
    stem: tuple = (8, 16)        # conv stem channels (spec: 16, 32; halved for 2 CPU cores)
    canvas_h: int = 420          # history canvas (multiple of 28); taller histories are cropped (counted)
    canvas_w: int = 196
    text_len: int = 48           # task + current observation word tokens
    hist_len: int = 256          # text-history word tokens (text policy)
    act_len: int = 5             # words per action
    max_actions: int = aenv.MAX_ACTIONS


def check_config(cfg: PolicyConfig) -> PolicyConfig:
    if cfg.kind not in ("ocr", "text"):
        raise ValueError(f"kind: expected 'ocr' or 'text', got {cfg.kind!r}")
    if cfg.canvas_h % render.PATCH or cfg.canvas_w % render.PATCH:
        raise ValueError(f"canvas_h/canvas_w: expected multiples of {render.PATCH}, got {cfg.canvas_h}x{cfg.canvas_w}")
    if cfg.d % cfg.heads:
        raise ValueError(f"d: expected a multiple of heads={cfg.heads}, got {cfg.d}")
    return cfg


class Block(nn.Module):
    d: int
    heads: int
    mlp: int

    @nn.compact
    def __call__(self, x, mask):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.d)(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        return x + nn.Dense(self.d)(nn.gelu(nn.Dense(self.mlp)(h)))


class Policy(nn.Module):
    cfg: PolicyConfig

    def patch_tokens(self, img_bhw):
        """img_bhw: float [B, Hc, Wc] ink in [0, 1] -> tokens [B, R*C, d]."""
        c = self.cfg
        x = img_bhw[..., None]
        for i, ch in enumerate(c.stem):   # stride-2 3x3 convs; the rest of the 28 px is a patch reshape
            x = nn.gelu(nn.Conv(ch, (3, 3), strides=(2, 2), padding="SAME", name=f"stem{i + 1}")(x))
        B, H, W, Ch = x.shape
        p = render.PATCH >> len(c.stem)
        r, cc = H // p, W // p
        x = x.reshape(B, r, p, cc, p, Ch).transpose(0, 1, 3, 2, 4, 5).reshape(B, r, cc, p * p * Ch)
        x = nn.Dense(c.d, name="patch_proj")(x)
        x = x + self.param("row_pos", nn.initializers.normal(0.02), (r, 1, c.d))
        x = x + self.param("col_pos", nn.initializers.normal(0.02), (1, cc, c.d))
        return x.reshape(B, r * cc, c.d)

    @nn.compact
    def __call__(self, batch):
        """batch: text [B, Lt] int, acts [B, A, La] int, act_mask [B, A] bool, and either
        img [B, Hc, Wc] uint8 ink + patch_mask [B, Hc/28 * Wc/28] bool (ocr) or hist [B, Lh] int (text).
        Returns (action logits [B, A], compression logits [B, |C_SET|], digit logits [B, 2, 10])."""
        c = self.cfg
        embed = nn.Embed(len(aenv.VOCAB), c.d, name="embed")
        text = batch["text"]
        B = text.shape[0]
        parts = [jnp.broadcast_to(self.param("cls", nn.initializers.normal(0.02), (1, 1, c.d)), (B, 1, c.d)),
                 embed(text) + self.param("text_pos", nn.initializers.normal(0.02), (text.shape[1], c.d))]
        masks = [jnp.ones((B, 1), bool), text != aenv.PAD]
        if c.kind == "ocr":
            img = batch["img"].astype(jnp.float32) / 255.0
            parts.append(self.patch_tokens(img) + self.param("img_type", nn.initializers.normal(0.02), (c.d,)))
            masks.append(batch["patch_mask"])
        else:
            hist = batch["hist"]
            parts.append(embed(hist) + self.param("hist_pos", nn.initializers.normal(0.02), (hist.shape[1], c.d)))
            masks.append(hist != aenv.PAD)
        x = jnp.concatenate(parts, axis=1)
        m = jnp.concatenate(masks, axis=1)
        attn = m[:, None, None, :]
        for i in range(c.layers):
            x = Block(c.d, c.heads, c.mlp, name=f"block{i}")(x, attn)
        x = nn.LayerNorm(name="ln_f")(x)
        h = x[:, 0]
        # action head: embed each admissible action, one cross-attention over the trunk, score vs CLS
        acts = batch["acts"]
        a = embed(acts) + self.param("act_pos", nn.initializers.normal(0.02), (acts.shape[2], c.d))
        a = a * (acts != aenv.PAD)[..., None]
        a = nn.Dense(c.d, name="act_in")(a.reshape(B, acts.shape[1], -1))
        a = a + nn.MultiHeadDotProductAttention(num_heads=c.heads, qkv_features=c.d, name="act_xattn")(
            nn.LayerNorm(name="act_ln")(a), x, mask=attn)
        a = nn.gelu(nn.Dense(c.d, name="act_mlp")(a))
        logits = jnp.einsum("bad,bd->ba", a, nn.Dense(c.d, name="act_q")(h)) / np.sqrt(c.d)
        logits = logits + nn.Dense(1, name="act_bias")(a)[..., 0]
        logits = jnp.where(batch["act_mask"], logits, NEG)
        c_logits = nn.Dense(len(C_SET), name="c_head")(h)
        digits = nn.Dense(20, name="digit_head")(h).reshape(B, 2, 10)
        return logits, c_logits, digits


# ------------------------------------------------------------------------------------ featurizing
def to_ink(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] (white page) -> uint8 [H, W] ink = 255 - luminance (ITU-R 601, integer)."""
    x = image_rgb.astype(np.int32)
    lum = (299 * x[..., 0] + 587 * x[..., 1] + 114 * x[..., 2]) // 1000
    return (255 - lum).astype(np.uint8)


def place_on_canvas(ink_hw: np.ndarray, cfg: PolicyConfig) -> tuple[np.ndarray, np.ndarray, bool]:
    """Top-left aligned on the [canvas_h, canvas_w] canvas -> (canvas uint8, patch mask bool [R*C], cropped).
    An image taller than the canvas keeps its TOP rows (the oldest steps) and reports cropped=True; an
    image wider than the canvas raises ValueError."""
    h, w = ink_hw.shape
    if w > cfg.canvas_w:
        raise ValueError(f"image: history wider than the page: {w} px > canvas_w {cfg.canvas_w}")
    cropped = h > cfg.canvas_h
    h = min(h, cfg.canvas_h)
    canvas = np.zeros((cfg.canvas_h, cfg.canvas_w), np.uint8)
    canvas[:h, :w] = ink_hw[:h]
    rows, cols = cfg.canvas_h // render.PATCH, cfg.canvas_w // render.PATCH
    mask = np.zeros((rows, cols), bool)
    mask[:-(-h // render.PATCH), :-(-w // render.PATCH)] = True
    if h == 0:
        mask[:] = False
    return canvas, mask.reshape(-1), cropped


def encode_actions(actions: list[str], cfg: PolicyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Admissible list -> (ids int32 [max_actions, act_len], mask bool [max_actions])."""
    if len(actions) > cfg.max_actions:
        raise ValueError(f"actions: expected at most {cfg.max_actions}, got {len(actions)}")
    ids = np.zeros((cfg.max_actions, cfg.act_len), np.int32)
    for i, a in enumerate(actions):
        ids[i], _ = aenv.encode_padded(a, cfg.act_len, keep="first")
    mask = np.zeros((cfg.max_actions,), bool)
    mask[:len(actions)] = True
    return ids, mask


def history_text(segments: list[str]) -> str:
    return " ".join(segments)


def token_counts(segments: list[str], image_hw: tuple[int, int]) -> dict:
    """History tokens counted three ways: characters, word tokens (~BPE), visual tokens of the image seen."""
    text = history_text(segments)
    return {"chars": len(text), "words": len(aenv.words(text)), "visual": render.visual_tokens(*image_hw)}


def featurize(env: aenv.ShelfWorld, cache: render.SegmentCache, c_prev: float, cfg: PolicyConfig) -> tuple[dict, dict]:
    """One observation of the policy at the env's current step: the history (previous steps) as an image
    compressed by the c chosen at the previous step (ocr) or as word tokens (text), plus the task and the
    current observation as text and the admissible actions. Returns (features, info)."""
    segs = env.segments()
    text, _ = aenv.encode_padded(env.task + " " + env.obs, cfg.text_len, keep="first")
    acts, amask = encode_actions(env.admissible(), cfg)
    feats = {"text": text, "acts": acts, "act_mask": amask}
    if cfg.kind == "ocr":
        img = render.compress(cache.render(segs), c_prev)
        canvas, pmask, cropped = place_on_canvas(to_ink(img), cfg)
        feats.update(img=canvas, patch_mask=pmask)
        info = token_counts(segs, img.shape[:2])
        info["cropped"] = cropped
    else:
        hist, dropped = aenv.encode_padded(history_text(segs), cfg.hist_len, keep="first")
        feats["hist"] = hist
        img = render.compress(cache.render(segs), c_prev) if cache is not None else np.zeros((0, 0, 3), np.uint8)
        info = token_counts(segs, img.shape[:2])
        info["cropped"] = dropped > 0
    return feats, info


def stack_feats(feats: list[dict]) -> dict:
    return {k: np.stack([f[k] for f in feats]) for k in feats[0]}


def init_params(cfg: PolicyConfig, key) -> dict:
    """Initial parameters from a dummy batch of 1."""
    check_config(cfg)
    dummy = {"text": np.zeros((1, cfg.text_len), np.int32),
             "acts": np.zeros((1, cfg.max_actions, cfg.act_len), np.int32),
             "act_mask": np.ones((1, cfg.max_actions), bool)}
    if cfg.kind == "ocr":
        dummy["img"] = np.zeros((1, cfg.canvas_h, cfg.canvas_w), np.uint8)
        dummy["patch_mask"] = np.ones((1, (cfg.canvas_h // 28) * (cfg.canvas_w // 28)), bool)
    else:
        dummy["hist"] = np.zeros((1, cfg.hist_len), np.int32)
    return Policy(cfg).init(key, dummy)["params"]
