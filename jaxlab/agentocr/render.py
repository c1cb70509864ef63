"""Deterministic history renderer, segment optical cache and post-assembly compression (AgentOCR §3, Eqs. 3-7).

One environment step is one segment, ``"[Observation]: o [Action]: a"`` with internal newlines removed and
``strip()``-ed. A segment is word-wrapped at a fixed page width and drawn with Pillow's bundled *bitmap*
font (6x11 px glyphs, pixel-exact across machines), black on white with the two tags in blue / red.
The history image is the vertical stack of the segment images; compression (Lanczos, floor of one 28 px
patch per side) is applied ONCE to the assembled image (resizing segments separately would break byte
identity because the floors round differently, spec §10.3).

Three ways to produce the same image (the cache baselines of Table 3):
  * ``SegmentCache.render``   one cache per environment, key = blake2b(fingerprint(psi) + stripped text)
  * ``render_history_nocache``  re-render the whole history as one text block every step
  * ``NaiveAppendCache.render`` render only the appended suffix and concatenate to a growing image
All three return byte-identical uint8 [H, W, 3] arrays (tested).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import NamedTuple, Sequence

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

PATCH = 28                      # pixels per visual token side (Qwen2.5-VL effective patch)
TAGS = ("[Observation]:", "[Action]:")


class RenderSettings(NamedTuple):
    """psi: everything that determines the pixels of a segment (all of it enters the cache key).

    width: page width in pixels (segments are rendered at exactly this width).
    font: "bitmap" (Pillow's bundled 6x11 ImageFont, pixel-exact) or "truetype10" (bundled TrueType, size 10).
    line_px: pixels per text line (line spacing ~1.1 for the 11 px bitmap glyphs).
    fg / bg / obs_tag / act_tag: RGB colours of text, background and the two tags.
    """
    width: int = 192
    font: str = "bitmap"
    line_px: int = 12
    fg: tuple = (0, 0, 0)
    bg: tuple = (255, 255, 255)
    obs_tag: tuple = (0, 0, 255)
    act_tag: tuple = (255, 0, 0)


FONTS = ("bitmap", "truetype10")
_FONT_CACHE: dict = {}


def _font(name: str):
    if name not in FONTS:
        raise ValueError(f"settings.font: expected one of {FONTS}, got {name!r}")
    if name not in _FONT_CACHE:
        _FONT_CACHE[name] = (ImageFont.load_default_imagefont() if name == "bitmap"
                             else ImageFont.load_default(size=10))
    return _FONT_CACHE[name]


def check_settings(settings: RenderSettings) -> RenderSettings:
    _font(settings.font)
    if int(settings.width) < 2 * PATCH or int(settings.width) != settings.width:
        raise ValueError(f"settings.width: expected an integer >= {2 * PATCH} px, got {settings.width}")
    if settings.line_px < 8:
        raise ValueError(f"settings.line_px: expected >= 8, got {settings.line_px}")
    for name in ("fg", "bg", "obs_tag", "act_tag"):
        col = tuple(getattr(settings, name))
        if len(col) != 3 or not all(0 <= int(v) <= 255 for v in col):
            raise ValueError(f"settings.{name}: expected an RGB triple in [0, 255], got {col}")
    return settings


def fingerprint(settings: RenderSettings) -> bytes:
    """Stable bytes of psi: Pillow version, font id and every setting (JSON, sorted keys)."""
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings._asdict().items()}
    d["pillow"] = PIL.__version__
    d["font_id"] = f"pillow-default-{settings.font}"
    return json.dumps(d, sort_keys=True).encode()


def segment_key(settings: RenderSettings, text: str) -> str:
    """Cache key k(l) = blake2b(fingerprint(psi) || 0x00 || strip(l)); identical across processes."""
    return _key_with(_key_prefix(settings), text)


def _key_prefix(settings: RenderSettings):
    """blake2b state after fingerprint(psi) || 0x00 (computed once per cache, copied per key)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(fingerprint(settings))
    h.update(b"\x00")
    return h


def _key_with(prefix, text: str) -> str:
    h = prefix.copy()
    h.update(normalize_segment(text).encode("utf-8"))
    return h.hexdigest()


def normalize_segment(text: str) -> str:
    """Internal newlines become spaces; leading/trailing whitespace stripped (the same for key and render)."""
    return str(text).replace("\r", " ").replace("\n", " ").strip()


def make_segment(observation: str, action: str) -> str:
    """One step's segment text: ``[Observation]: o [Action]: a`` (one line, stripped)."""
    return normalize_segment(f"{TAGS[0]} {observation} {TAGS[1]} {action}")


def wrap(text: str, chars: int) -> list[str]:
    """Greedy word wrap at `chars` characters per line; words longer than a line are hard-broken."""
    if chars < 1:
        raise ValueError(f"chars: expected >= 1, got {chars}")
    lines, cur = [], ""
    for word in text.split():
        while len(word) > chars:
            if cur:
                lines.append(cur)
                cur = ""
            lines.append(word[:chars])
            word = word[chars:]
        if not cur:
            cur = word
        elif len(cur) + 1 + len(word) <= chars:
            cur = cur + " " + word
        else:
            lines.append(cur)
            cur = word
    if cur or not lines:
        lines.append(cur)
    return lines


def chars_per_line(settings: RenderSettings) -> int:
    """Characters per line (the widest glyph decides for the TrueType font)."""
    f = _font(settings.font)
    w = max(f.getlength(ch) for ch in "MW@m0")
    return max(1, int(settings.width // w))


def _draw_lines(draw, lines, y0, settings, font):
    for i, line in enumerate(lines):
        y = y0 + i * settings.line_px
        x_spans, pos = [], 0
        while pos < len(line):  # coloured tag spans, plain text elsewhere
            nxt = [(line.find(t, pos), t) for t in TAGS if line.find(t, pos) >= 0]
            if not nxt:
                x_spans.append((pos, line[pos:], settings.fg))
                break
            j, tag = min(nxt)
            if j > pos:
                x_spans.append((pos, line[pos:j], settings.fg))
            x_spans.append((j, tag, settings.obs_tag if tag == TAGS[0] else settings.act_tag))
            pos = j + len(tag)
        for start, txt, col in x_spans:
            draw.text((font.getlength(line[:start]), y), txt, font=font, fill=tuple(col))


def render_segment(text: str, settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """Renders one segment at the fixed page width. Returns uint8 [n_lines * line_px, width, 3]."""
    check_settings(settings)
    font = _font(settings.font)
    lines = wrap(normalize_segment(text), chars_per_line(settings))
    img = Image.new("RGB", (settings.width, len(lines) * settings.line_px), tuple(settings.bg))
    _draw_lines(ImageDraw.Draw(img), lines, 0, settings, font)
    return np.asarray(img, dtype=np.uint8)


def stack(images: Sequence[np.ndarray], settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """Vertical stack of segment images. Empty history -> uint8 [0, width, 3]. Raises on a wrong width."""
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"images[{i}]: expected uint8 [H, W, 3], got {im.dtype} {im.shape}")
        if im.shape[1] != settings.width:
            raise ValueError(f"images[{i}]: history wider than the page: width {im.shape[1]} != "
                             f"settings.width {settings.width}")
    if not images:
        return np.zeros((0, settings.width, 3), np.uint8)
    return np.concatenate(list(images), axis=0)


def render_history_nocache(segments: Sequence[str], settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """No-cache baseline: renders the whole history as one text block (one canvas, all lines). [H, W, 3]."""
    check_settings(settings)
    font = _font(settings.font)
    cpl = chars_per_line(settings)
    seg_lines = [wrap(normalize_segment(s), cpl) for s in segments]
    n = sum(len(ls) for ls in seg_lines)
    img = Image.new("RGB", (settings.width, n * settings.line_px), tuple(settings.bg))
    draw, row = ImageDraw.Draw(img), 0
    for ls in seg_lines:
        _draw_lines(draw, ls, row * settings.line_px, settings, font)
        row += len(ls)
    return np.asarray(img, dtype=np.uint8)


class SegmentCache:
    """Per-environment segment optical cache C(e) = {k(l) -> image(l)}; empty it with `reset()`.

    Counters: `hits`, `misses`, `render_calls` (renders == misses), `nbytes` (bytes of cached images).
    """

    def __init__(self, settings: RenderSettings = RenderSettings()):
        self.settings = check_settings(settings)
        self._prefix = _key_prefix(self.settings)
        self._store: dict[str, np.ndarray] = {}
        self.hits = self.misses = self.render_calls = 0

    def reset(self):
        self._store.clear()
        self.hits = self.misses = self.render_calls = 0

    def __len__(self):
        return len(self._store)

    def keys(self):
        return set(self._store)

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for v in self._store.values()))

    def get(self, text: str) -> np.ndarray:
        k = _key_with(self._prefix, text)
        im = self._store.get(k)
        if im is None:
            self.misses += 1
            self.render_calls += 1
            im = render_segment(text, self.settings)
            im.setflags(write=False)
            self._store[k] = im
        else:
            self.hits += 1
        return im

    def render(self, segments: Sequence[str]) -> np.ndarray:
        """I_t = vstack of cached segment images, in order. Returns uint8 [H, W, 3]."""
        return stack([self.get(s) for s in segments], self.settings)


class NaiveAppendCache:
    """Naive-append baseline: keeps one growing image and renders only the appended suffix (valid only for
    append-only histories: a history that is not an extension of the last one raises ValueError)."""

    def __init__(self, settings: RenderSettings = RenderSettings()):
        self.settings = check_settings(settings)
        self.reset()

    def reset(self):
        self._segments: list[str] = []
        self._image = np.zeros((0, self.settings.width, 3), np.uint8)
        self.render_calls = 0

    @property
    def nbytes(self) -> int:
        return int(self._image.nbytes)

    def render(self, segments: Sequence[str]) -> np.ndarray:
        segments = list(segments)
        n = len(self._segments)
        if segments[:n] != self._segments:
            raise ValueError("segments: naive append needs an append-only history (prefix changed)")
        new = [render_segment(s, self.settings) for s in segments[n:]]
        self.render_calls += len(new)
        if new:
            self._image = np.concatenate([self._image] + new, axis=0)
        self._segments = segments
        return self._image


def compressed_size(height: int, width: int, c: float) -> tuple[int, int]:
    """(H', W') = (max(28, floor(H / sqrt c)), max(28, floor(W / sqrt c))); c = 1 keeps the size."""
    c = check_c(c)
    if c == 1.0:
        return int(height), int(width)
    s = math.sqrt(c)
    return max(PATCH, int(math.floor(height / s))), max(PATCH, int(math.floor(width / s)))


def check_c(c) -> float:
    c = float(c)
    if not math.isfinite(c) or c < 1.0:
        raise ValueError(f"c: expected a finite compression factor >= 1, got {c}")
    return c


def compress(image: np.ndarray, c: float) -> np.ndarray:
    """Resizes the ASSEMBLED history image by 1/sqrt(c) per side (Lanczos, one-patch floor, Eq. 7).

    image: uint8 [H, W, 3]. c = 1 returns the same array object. An empty history stays empty.
    """
    c = check_c(c)
    if c == 1.0 or image.shape[0] == 0:
        return image
    h, w = compressed_size(image.shape[0], image.shape[1], c)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def visual_tokens(height: int, width: int) -> int:
    """Visual tokens of an image = ceil(H/28) * ceil(W/28) (0 for an empty history)."""
    if height <= 0 or width <= 0:
        return 0
    return int(math.ceil(height / PATCH) * math.ceil(width / PATCH))
