"""Renderer, segment optical cache and compression (spec §8: byte identity, counting, scope, keys, sizes)."""

import math
import subprocess
import sys

import numpy as np
import pytest

from jaxlab.agentocr import render as R

S = R.RenderSettings()


def _random_history(rng, n_steps=12, n_unique=5):
    lines = [R.make_segment(f"You arrive at drawer {i}. On drawer {i} you see a mug, a key {i * 7}.",
                            f"go to shelf {i}") for i in range(n_unique)]
    lines.append(R.make_segment("Nothing happens.", "look"))
    return [lines[int(rng.integers(len(lines)))] for _ in range(n_steps)]


def test_cached_stack_is_byte_identical_to_fresh_render_also_after_compression():
    rng = np.random.default_rng(0)
    for trial in range(4):
        hist = _random_history(rng)
        cache = R.SegmentCache(S)
        for t in range(1, len(hist) + 1):
            cached = cache.render(hist[:t])
            fresh = R.stack([R.render_segment(s, S) for s in hist[:t]], S)
            block = R.render_history_nocache(hist[:t], S)
            assert cached.dtype == np.uint8 and np.array_equal(cached, fresh)
            assert np.array_equal(cached, block)
        for c in (1.2, 1.5, 2.0, 3.0):
            assert np.array_equal(R.compress(cache.render(hist), c), R.compress(R.render_history_nocache(hist, S), c))


def test_naive_append_matches_and_rejects_a_changed_prefix():
    hist = _random_history(np.random.default_rng(1), 8)
    naive = R.NaiveAppendCache(S)
    for t in range(1, 9):
        assert np.array_equal(naive.render(hist[:t]), R.render_history_nocache(hist[:t], S))
    assert naive.render_calls == 8
    with pytest.raises(ValueError, match="append-only"):
        naive.render(["[Observation]: other [Action]: look"] + hist[1:])


def test_render_calls_equal_unique_segments_and_append_only_hits():
    hist = _random_history(np.random.default_rng(2), 20)
    cache = R.SegmentCache(S)
    for t in range(1, 21):
        cache.render(hist[:t])
    assert cache.render_calls == cache.misses == len(set(hist)) == len(cache)
    # append-only history without repeats: step t has t - 1 hits and exactly 1 miss
    uniq = [R.make_segment(f"obs {i}", f"go to shelf {i}") for i in range(10)]
    cache = R.SegmentCache(S)
    for t in range(1, 11):
        h0, m0 = cache.hits, cache.misses
        cache.render(uniq[:t])
        assert (cache.hits - h0, cache.misses - m0) == (t - 1, 1)


def test_cache_scope_reset_and_disjoint_envs():
    a, b = R.SegmentCache(S), R.SegmentCache(S)
    a.render(["[Observation]: x [Action]: look"])
    assert len(a) == 1 and len(b) == 0 and a.keys().isdisjoint(b.keys())
    a.reset()
    assert len(a) == 0 and a.hits == a.misses == 0 and a.nbytes == 0


def test_changing_any_rendering_setting_changes_the_key():
    text = "[Observation]: You arrive at shelf 1. [Action]: look"
    base = R.segment_key(S, text)
    assert base == R.segment_key(S, "  " + text + "\n")   # stripped text
    for change in (dict(width=224), dict(font="truetype10"), dict(line_px=13), dict(fg=(1, 0, 0)),
                   dict(bg=(250, 250, 250)), dict(obs_tag=(0, 0, 200)), dict(act_tag=(200, 0, 0))):
        assert R.segment_key(S._replace(**change), text) != base, change
    cache = R.SegmentCache(S)
    cache.get(text)
    assert cache.keys() == {base}                          # the cache uses exactly this key
    other = R.SegmentCache(S._replace(width=224))
    other._store.update(cache._store)  # even with the old entries present, new settings miss
    other.get(text)
    assert other.misses == 1


def test_key_is_identical_across_processes():
    code = ("from jaxlab.agentocr import render as R; "
            "print(R.segment_key(R.RenderSettings(), '[Observation]: a [Action]: look'))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.strip() for seed in (1, 2)}
    assert outs == {R.segment_key(S, "[Observation]: a [Action]: look")}


def test_tags_are_coloured_and_width_is_fixed():
    img = R.render_segment("[Observation]: a mug [Action]: take mug", S)
    assert img.shape[1] == S.width and img.shape[0] % S.line_px == 0
    px = img.reshape(-1, 3)
    assert ((px[:, 2] == 255) & (px[:, 0] == 0)).any()          # blue tag ink
    assert ((px[:, 0] == 255) & (px[:, 2] == 0)).any()          # red tag ink
    assert (px.sum(1) == 0).any()                                # black text


def test_compression_sizes_tokens_and_identity():
    img = R.render_history_nocache(_random_history(np.random.default_rng(3), 12), S)
    H, W = img.shape[:2]
    assert R.compress(img, 1.0) is img
    prev = None
    t1 = R.visual_tokens(H, W)
    for c in (1.0, 1.2, 1.5, 2.0, 3.0, 5.0):
        out = R.compress(img, c)
        h, w = out.shape[:2]
        assert (h, w) == (max(28, math.floor(H / math.sqrt(c))), max(28, math.floor(W / math.sqrt(c))))
        tok = R.visual_tokens(h, w)
        assert prev is None or tok <= prev
        prev = tok
        # tokens(c) * c ~ tokens(1) within the ceil rounding of each side
        lo = (H / math.sqrt(c) / 28 - 1) * (W / math.sqrt(c) / 28 - 1) * c
        hi = (H / math.sqrt(c) / 28 + 1) * (W / math.sqrt(c) / 28 + 1) * c
        assert lo <= tok * c <= hi
        assert abs(tok * c - t1) <= (1 + math.sqrt(c)) * (H + W) / 28 + c + 1
    assert R.compressed_size(30, 40, 3.0) == (28, 28)           # one-patch floor
    assert R.visual_tokens(28, 192) == 7 and R.visual_tokens(0, 192) == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="wider than the page"):
        R.stack([np.zeros((12, 200, 3), np.uint8)], S)
    with pytest.raises(ValueError, match="c:"):
        R.compress(np.zeros((28, 192, 3), np.uint8), 0.5)
    with pytest.raises(ValueError, match="c:"):
        R.compress(np.zeros((28, 192, 3), np.uint8), float("nan"))
    with pytest.raises(ValueError, match="settings.font"):
        R.render_segment("x", S._replace(font="comic"))


def test_render_cache_benchmark_tiny_checks_parity():
    """The benchmark's tiny size runs its parity check (byte identity of the three methods at every step);
    its timings are never asserted."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "render_cache.py")
    spec = importlib.util.spec_from_file_location("render_cache_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run("tiny", None)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == set(mod.METHODS)
    seg = rows["segment_cache"]
    # 2 rollouts x 10 steps: misses = unique segments, hits = all other lookups
    assert seg["render_calls"] == res["workload"]["unique_segments"]
    assert seg["hits"] + seg["render_calls"] == 2 * sum(range(1, 11))
    assert rows["no_cache"]["bytes_held_last"] == 0 and seg["bytes_held_last"] > 0
