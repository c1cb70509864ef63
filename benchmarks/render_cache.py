"""Benchmark: AgentOCR's history renderer — segment optical cache vs no cache vs naive append (Table 3).

    .venv/bin/python benchmarks/render_cache.py --size=tiny|full [--out=results/bench/render_cache.json]

Workload: ShelfWorld rollouts of 50 steps (shelf variant, horizon 50, a seeded random policy over the
admissible list that never takes the goal-completing `put`, so every rollout lasts the full 50 steps; its
histories repeat "Nothing happens." / "go to ..." lines the way ALFWorld's do). At step t each method
produces the history image of the t-1 finished steps plus the newest one (t segments):

* `segment_cache`: `SegmentCache.render` (one cache per rollout, reset at its start) — renders misses only;
* `no_cache`: `render_history_nocache` — redraws the whole history every step;
* `naive_append`: `NaiveAppendCache.render` — renders the appended segment onto a growing image.

Parity first: at every step of every rollout the three images are byte-identical (else AssertionError).
Timing: one warm-up pass, then 3 repeats of the whole rollout set; per step the best (minimum) of the 3
repeats of the summed time over rollouts, divided by the number of rollouts = ms per step at step t; both
wall time (`ms_per_step`) and the thread's CPU time (`cpu_ms_per_step`, less sensitive to other processes
on a shared machine) are recorded.
Reported per (font, method): mean ms per step over t = 1..50, least-squares growth slope (ms per step per
step), speedup of the segment cache over each baseline (ratio of mean ms per step), cache bytes at the
last step and their per-step slope — memory is the bytes HELD ACROSS ALL ENVIRONMENTS (rollouts) at
once: the cached segment images for the segment cache, the accumulated image for naive append (spec
§10.8) — and the segment cache's hit rate. These are benchmark figures, never tests or claims: they
depend on the rasteriser (the bitmap font is cheap), the repetition and the horizon (spec §10.1).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import numpy as np  # noqa: E402

from jaxlab.agentocr import env as E  # noqa: E402
from jaxlab.agentocr import render as R  # noqa: E402
from jaxlab.core.bench import cli, record  # noqa: E402

SIZES = {
    "tiny": dict(steps=10, rollouts=2, repeats=1, fonts=("bitmap",)),
    "full": dict(steps=50, rollouts=8, repeats=3, fonts=("bitmap", "truetype10")),
}
METHODS = ("segment_cache", "no_cache", "naive_append")


def rollout_segments(seed: int, steps: int) -> list[str]:
    """Segments of one `steps`-long random rollout in ShelfWorld (the success action is never taken)."""
    env = E.ShelfWorld(E.EnvParams(variant="shelf", horizon=steps))
    env.reset(seed)
    rng = np.random.default_rng(seed)
    while not env.done:
        adm = [a for a in env.admissible() if a != f"put {env.goal_obj} in {env.target}"]
        env.step(adm[int(rng.integers(len(adm)))])
    return env.segments()


def _slope(y: np.ndarray) -> float:
    """Least-squares slope of y over x = 1..len(y)."""
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    return float(np.polyfit(x, np.asarray(y, np.float64), 1)[0])


def _pass(method: str, histories: list[list[str]], settings: R.RenderSettings):
    """One pass over all rollouts with one method. -> (wall seconds per step [T] summed over rollouts,
    thread CPU seconds likewise, bytes held across all rollouts after each step [T], images of the last pass per rollout and step,
    (hits, misses))."""
    T = len(histories[0])
    secs, cpu, held = np.zeros(T), np.zeros(T), np.zeros(T)
    states = [R.SegmentCache(settings) if method == "segment_cache" else
              R.NaiveAppendCache(settings) if method == "naive_append" else None for _ in histories]
    images = [[None] * T for _ in histories]
    for t in range(T):
        for i, segs in enumerate(histories):
            st = states[i]
            c0, t0 = time.thread_time(), time.perf_counter()
            if method == "no_cache":
                img = R.render_history_nocache(segs[:t + 1], settings)
            else:
                img = st.render(segs[:t + 1])
            secs[t] += time.perf_counter() - t0
            cpu[t] += time.thread_time() - c0
            images[i][t] = img
        held[t] = sum(st.nbytes for st in states) if method != "no_cache" else 0
    hm = (sum(s.hits for s in states), sum(s.misses for s in states)) if method == "segment_cache" else (0, 0)
    return secs, cpu, held, images, hm


def run(size: str, out: str | None) -> dict:
    spec = SIZES[size]
    histories = [rollout_segments(1000 + r, spec["steps"]) for r in range(spec["rollouts"])]
    n_seg = sum(len(h) for h in histories)
    unique = sum(len(set(R.normalize_segment(s) for s in h)) for h in histories)
    rows = []
    for font in spec["fonts"]:
        settings = R.RenderSettings(font=font)
        res = {}
        for m in METHODS:                                    # warm-up pass (fonts, Pillow paths, numpy)
            res[m] = _pass(m, histories, settings)
        for i in range(len(histories)):                      # parity: byte-identical at every step
            for t in range(spec["steps"]):
                ref = res["no_cache"][3][i][t]
                for m in ("segment_cache", "naive_append"):
                    if not np.array_equal(res[m][3][i][t], ref):
                        raise AssertionError(f"parity failed: {m} != no_cache, font {font}, rollout {i}, step {t}")
        best = {m: np.full(spec["steps"], np.inf) for m in METHODS}
        best_cpu = {m: np.full(spec["steps"], np.inf) for m in METHODS}
        for _ in range(spec["repeats"]):                     # round robin so load changes hit all alike
            for m in METHODS:
                secs, cpu, held, _, hm = _pass(m, histories, settings)
                best[m] = np.minimum(best[m], secs)
                best_cpu[m] = np.minimum(best_cpu[m], cpu)
                res[m] = (secs, cpu, held, None, hm)
        ms = {m: 1e3 * best[m] / len(histories) for m in METHODS}
        cms = {m: 1e3 * best_cpu[m] / len(histories) for m in METHODS}
        for m in METHODS:
            held = res[m][2]
            hits, misses = res[m][4]
            row = {"font": font, "method": m, "steps": spec["steps"], "rollouts": len(histories),
                   "ms_per_step": float(ms[m].mean()), "ms_per_step_first": float(ms[m][0]),
                   "ms_per_step_last": float(ms[m][-1]), "growth_ms_per_step": _slope(ms[m]),
                   "speedup_of_segment_cache": float(ms[m].mean() / ms["segment_cache"].mean()),
                   "cpu_ms_per_step": float(cms[m].mean()), "cpu_growth_ms_per_step": _slope(cms[m]),
                   "cpu_speedup_of_segment_cache": float(cms[m].mean() / cms["segment_cache"].mean()),
                   "bytes_held_last": int(held[-1]), "bytes_held_peak": int(held.max()),
                   "bytes_growth_per_step": _slope(held)}
            if m == "segment_cache":
                row.update(hit_rate=hits / max(1, hits + misses), hits=int(hits), render_calls=int(misses))
                row["memory_saving_vs_naive"] = float(1.0 - held.max() / res["naive_append"][2].max())
            rows.append(row)
            print(f"{font:10s} {m:14s} {row['ms_per_step']:8.3f} ms/step  growth {row['growth_ms_per_step']:+.4f} "
                  f"ms/step/step  segment cache x{row['speedup_of_segment_cache']:6.2f} faster  "
                  f"(CPU {row['cpu_ms_per_step']:7.3f} ms/step, x{row['cpu_speedup_of_segment_cache']:6.2f})  "
                  f"held {row['bytes_held_peak'] / 1e6:6.2f} MB" +
                  (f"  hit rate {row['hit_rate']:.3f}" if m == "segment_cache" else ""), flush=True)
    return record("render_cache", size, rows, out, workload={
        "env": "ShelfWorld shelf variant, random policy without the success action", "steps": spec["steps"],
        "rollouts": spec["rollouts"], "segments": n_seg, "unique_segments": unique,
        "repeated_fraction": 1.0 - unique / n_seg, "width_px": R.RenderSettings().width,
        "timing": "warm-up pass, then best of 3 repeats per step (summed over rollouts / rollouts); wall and "
                  "thread CPU time",
        "memory": "bytes held across all rollouts at once (segment images cached / naive accumulated image)"})


def main(argv=None):
    return cli("render_cache", run, SIZES, __doc__, argv)


if __name__ == "__main__":
    main()
