"""Sweep of bad inputs a new user makes (issue 20, "What it must show"): run each one as a subprocess with a
short timeout, classify the outcome, print a markdown table.

    .venv/bin/python tests/tools/bad_input_sweep.py [--jobs=2] [--timeout=150] [--only=SUBSTRING] [--out=FILE]

Outcomes:
  clean      exit 2 (130 for an interrupt), no 'Traceback' on stderr, the last stderr line starts with 'error:'
             (or, for a case that must succeed, e.g. a report over a corrupt summary: exit 0 and its check holds)
  traceback  'Traceback' on stderr
  silent     exit 0 where an error was due (the bad input was accepted)
  hang       still running after the timeout (killed)
  lost       the case's check found results destroyed (a checkpoint, another experiment's summary)
  unclear    any other exit (non-zero without one 'error:' line)

Every case fails (or should fail) at config validation or in the first seconds: no full experiment runs.
Not a pytest module (no test_ prefix): the individual behaviours have their own tests; this is the
end-to-end census the issue asks to re-run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
TOY = "tests/core/toy_config.py"


@dataclass
class Case:
    name: str
    args: list                      # argv after the python executable; "{tmp}" is the case's temp dir
    expect: str = "error"           # "error" (clean error line, exit 2) or "ok" (exit 0 and `check` holds)
    setup: Optional[Callable[[str], None]] = None
    check: Optional[Callable[[str, subprocess.CompletedProcess], Optional[str]]] = None  # -> "lost: why"
    env: dict = field(default_factory=dict)  # values may use "{tmp}"
    teardown: Optional[Callable[[str], None]] = None


def exp(name: str, *overrides: str, config: bool = True) -> list:
    cfg = [f"--config=experiments/configs/{name}.py:quick"] if config else []
    return ["-m", f"experiments.{name}", *cfg, *overrides, "--workdir={tmp}/w"]


def toy(*args: str) -> list:
    return ["-m", "tests.core.toy_experiment", f"--config={TOY}:quick", *args]


# ----------------------------------------------------------------------------- setups and checks
def _digest(folder: str) -> str:
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            h.update(p.encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def _toy_run(tmp: str, *extra: str) -> None:
    subprocess.run([PY, *toy("--config.steps=20", f"--workdir={tmp}/w", *extra)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)


def setup_corrupt_ckpt(tmp: str) -> None:
    """A finished toy run, then every checkpoint file of it overwritten with garbage."""
    _toy_run(tmp)
    os.remove(os.path.join(tmp, "w", "summary.json"))
    for dirpath, _, files in os.walk(os.path.join(tmp, "w", "ckpt")):
        for f in files:
            with open(os.path.join(dirpath, f), "wb") as fh:
                fh.write(b"\x00garbage")
    _save_ckpt_digest(tmp)


def setup_stray_ckpt(tmp: str) -> None:
    """A user's own folder inside the checkpoint directory of seed 0 (ckpt/seed0/notes_by_user/keep.txt)."""
    os.makedirs(os.path.join(tmp, "w", "ckpt", "seed0", "notes_by_user"), exist_ok=True)
    with open(os.path.join(tmp, "w", "ckpt", "seed0", "notes_by_user", "keep.txt"), "w") as fh:
        fh.write("mine")
    _save_ckpt_digest(tmp)


def setup_ckpt_shape_mismatch(tmp: str) -> None:
    _toy_run(tmp, "--config.dim=3")
    os.remove(os.path.join(tmp, "w", "summary.json"))
    _save_ckpt_digest(tmp)


def _save_ckpt_digest(tmp: str) -> None:
    """Records the checkpoint folder's digest, for `check_ckpt_untouched` after the case ran."""
    with open(os.path.join(tmp, "digest"), "w") as fh:
        fh.write(_digest(os.path.join(tmp, "w", "ckpt")))


def check_ckpt_untouched(tmp: str, _proc) -> Optional[str]:
    want = open(os.path.join(tmp, "digest")).read()
    return None if _digest(os.path.join(tmp, "w", "ckpt")) == want else "the checkpoint folder was changed"


def _mount_tmpfs(where: str, size: str, *options: str) -> None:
    """A small RAM file system (root only): the way to make a real full disk or read-only folder."""
    os.makedirs(where, exist_ok=True)
    opts = ",".join((f"size={size}",) + options)
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", where], check=True, capture_output=True)


def unmount_w(tmp: str) -> None:
    subprocess.run(["umount", os.path.join(tmp, "w")], capture_output=True)


def setup_disk_full(tmp: str) -> None:
    """The workdir on a 96 KiB file system: config.json fits, a checkpoint does not."""
    _mount_tmpfs(os.path.join(tmp, "w"), "96k")


def setup_disk_fills(tmp: str) -> None:
    """A finished 20-step run on an 8 MiB file system, which a big file then fills; the rerun asks for 40."""
    _mount_tmpfs(os.path.join(tmp, "w"), "8m")
    _toy_run(tmp)
    free = shutil.disk_usage(os.path.join(tmp, "w")).free
    with open(os.path.join(tmp, "w", "filler.bin"), "wb") as fh:
        fh.write(b"\0" * max(0, free - (64 << 10)))
    _save_ckpt_digest(tmp)


def setup_read_only(tmp: str) -> None:
    """A finished 20-step run whose file system is then remounted read-only; the rerun asks for 40."""
    _mount_tmpfs(os.path.join(tmp, "w"), "8m")
    _toy_run(tmp)
    _save_ckpt_digest(tmp)
    subprocess.run(["mount", "-o", "remount,ro", os.path.join(tmp, "w")], check=True, capture_output=True)


def setup_dataset_cache(kind: str) -> Callable[[str], None]:
    """The digits data set built into {tmp}/data, then one split's array_record file corrupted or removed."""
    def setup(tmp: str) -> None:
        env = {**os.environ, "JAXLAB_DATA_DIR": os.path.join(tmp, "data")}
        subprocess.run([PY, "-c", "from jaxlab.l2d import data; data.load('digits')"], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=300)
        target = None
        for dirpath, _, files in os.walk(os.path.join(tmp, "data")):
            for f in sorted(files):
                if "train.array_record" in f:
                    target = os.path.join(dirpath, f)
        if kind == "missing":
            os.remove(target)
        else:
            with open(target, "r+b") as fh:
                fh.seek(100)
                fh.write(b"\x00garbage" * 50)
    return setup


def setup_workdir_is_file(tmp: str) -> None:
    with open(os.path.join(tmp, "w"), "w") as fh:
        fh.write("a file")


def _summary(paper: str) -> dict:
    return {"paper": paper, "suite": "quick", "config_hash": "x", "seeds": [0], "wall_time_s": 1.0,
            "claims": [{"id": "c", "claim": "c", "metric": "m", "verdict": "reproduced", "block": "paper",
                        "ours": {"method": "a", "values": [1.0], "mean": 1.0, "std": 0.0}, "baselines": []}],
            "tables": {}, "figures": [], "headline": f"{paper} headline"}


def setup_report(kind: str) -> Callable[[str], None]:
    def setup(tmp: str) -> None:
        for paper in ("picce", "kpo"):
            os.makedirs(os.path.join(tmp, "w", paper), exist_ok=True)
            with open(os.path.join(tmp, "w", paper, "summary.json"), "w") as fh:
                json.dump(_summary(paper), fh)
        bad = os.path.join(tmp, "w", "kpo")
        if kind == "summary":
            with open(os.path.join(bad, "summary.json"), "w") as fh:
                fh.write('{"paper": "kpo", "claims": [')          # cut mid-write
        elif kind == "failed":
            with open(os.path.join(bad, "failed.json"), "w") as fh:
                fh.write("not json at all")
        elif kind == "shape":
            with open(os.path.join(bad, "summary.json"), "w") as fh:
                json.dump({"paper": "kpo", "claims": "not a list"}, fh)
    return setup


def check_report(tmp: str, _proc) -> Optional[str]:
    path = os.path.join(tmp, "w", "REPORT.md")
    if not os.path.exists(path):
        return "REPORT.md was not written"
    text = open(path).read()
    if "picce headline" not in text and "picce" not in text.lower():
        return "the intact experiment is missing from REPORT.md"
    if "fail" not in text.lower():
        return "the corrupt experiment is not marked failed"
    return None


def setup_metrics_cut(tmp: str) -> None:
    _toy_run(tmp)
    os.remove(os.path.join(tmp, "w", "summary.json"))
    with open(os.path.join(tmp, "w", "metrics.jsonl"), "a") as fh:
        fh.write('{"step": 99, "loss": 0.')                          # a line cut by a kill


def check_summary_written(tmp: str, _proc) -> Optional[str]:
    return None if os.path.exists(os.path.join(tmp, "w", "summary.json")) else "no summary.json after the rerun"


# ----------------------------------------------------------------------------- the cases
CASES = [
    # --- config keys, types and syntax (toy experiment: the shared CLI)
    Case("toy: unknown key with --config", toy("--config.nope=1", "--workdir={tmp}/w")),
    Case("toy: wrong type (int <- 'abc')", toy("--config.steps=abc", "--workdir={tmp}/w")),
    Case("toy: wrong type (float <- 'fast')", toy("--config.lr=fast", "--workdir={tmp}/w")),
    Case("toy: override without value", toy("--config.steps", "--workdir={tmp}/w")),
    Case("toy: steps=0", toy("--config.steps=0", "--workdir={tmp}/w")),
    Case("toy: steps=-5", toy("--config.steps=-5", "--workdir={tmp}/w")),
    Case("toy: chunk=0", toy("--config.chunk=0", "--workdir={tmp}/w")),
    Case("toy: batch=0", toy("--config.batch=0", "--workdir={tmp}/w")),
    Case("toy: seeds empty", toy("--config.seeds=", "--workdir={tmp}/w")),
    Case("toy: seeds duplicate", toy("--config.seeds=0,0", "--workdir={tmp}/w")),
    Case("toy: seeds negative", toy("--config.seeds=-1", "--workdir={tmp}/w")),
    Case("toy: seeds not ints", toy("--config.seeds=a,b", "--workdir={tmp}/w")),
    Case("toy: bad list syntax '(0,1'", toy("--config.seeds=(0,1", "--workdir={tmp}/w")),
    Case("toy: bad list syntax '[0;1]'", toy("--config.seeds=[0;1]", "--workdir={tmp}/w")),
    Case("toy: lr=nan", toy("--config.lr=nan", "--workdir={tmp}/w")),
    Case("toy: lr=inf", toy("--config.lr=inf", "--workdir={tmp}/w")),
    Case("toy: lr negative", toy("--config.lr=-0.1", "--workdir={tmp}/w")),
    Case("toy: lr=0", toy("--config.lr=0", "--workdir={tmp}/w")),
    Case("toy: unknown size", ["-m", "tests.core.toy_experiment", f"--config={TOY}:huge", "--workdir={tmp}/w"]),
    Case("toy: missing config file", ["-m", "tests.core.toy_experiment", "--config=nope/missing.py:quick",
                                      "--workdir={tmp}/w"]),
    Case("toy: unknown flag", toy("--fast", "--workdir={tmp}/w")),
    # --- workdirs, checkpoints, metrics
    Case("toy: unwritable workdir (/proc)", toy("--workdir=/proc/jaxlab_cannot_write")),
    Case("toy: workdir under a file", toy("--workdir=/dev/null/w")),
    Case("toy: workdir is a file", toy("--workdir={tmp}/w"), setup=setup_workdir_is_file),
    Case("toy: corrupt checkpoint", toy("--config.steps=20", "--workdir={tmp}/w"), setup=setup_corrupt_ckpt,
         check=check_ckpt_untouched),
    Case("toy: shape-mismatched checkpoint", toy("--config.steps=20", "--workdir={tmp}/w"),
         setup=setup_ckpt_shape_mismatch, check=check_ckpt_untouched),
    Case("toy: non-checkpoint files in ckpt/", toy("--config.steps=20", "--workdir={tmp}/w"),
         setup=setup_stray_ckpt, check=check_ckpt_untouched),
    Case("toy: metrics.jsonl cut mid-line, rerun", toy("--config.steps=40", "--workdir={tmp}/w"), expect="ok",
         setup=setup_metrics_cut, check=check_summary_written),
    # --- the machine: full disk, read-only folder, broken dataset cache (tmpfs mounts need root)
    Case("toy: disk full before the first checkpoint", toy("--config.steps=20", "--workdir={tmp}/w"),
         setup=setup_disk_full, teardown=unmount_w),
    Case("toy: disk fills, rerun for more steps", toy("--config.steps=40", "--workdir={tmp}/w"),
         setup=setup_disk_fills, teardown=unmount_w, check=check_ckpt_untouched),
    Case("toy: workdir remounted read-only, rerun", toy("--config.steps=40", "--workdir={tmp}/w"),
         setup=setup_read_only, teardown=unmount_w, check=check_ckpt_untouched),
    Case("picce: corrupt dataset cache", exp("picce", "--config.datasets=digits"),
         setup=setup_dataset_cache("corrupt"), env={"JAXLAB_DATA_DIR": "{tmp}/data"}),
    Case("picce: dataset cache missing a file", exp("picce", "--config.datasets=digits"),
         setup=setup_dataset_cache("missing"), env={"JAXLAB_DATA_DIR": "{tmp}/data"}),
    # --- the real experiments' configs (default --config, i.e. none given, and with --config=)
    Case("kpo: unknown key, no --config", exp("kpo", "--config.nope=1", config=False)),
    Case("picce: unknown key, no --config", exp("picce", "--config.nope=1", config=False)),
    Case("lm_sft: optim.lr=nan", exp("lm_sft", "--config.optim.lr=nan")),
    Case("lm_sft: optim.batch_size=0", exp("lm_sft", "--config.optim.batch_size=0")),
    Case("lm_sft: train.chunk=0", exp("lm_sft", "--config.train.chunk=0")),
    Case("lm_sft: model.d_model=-1", exp("lm_sft", "--config.model.d_model=-1")),
    Case("lm_sft: seeds=0,0", exp("lm_sft", "--config.seeds=0,0")),
    Case("kpo: rl.lr=-1e-4", exp("kpo", "--config.rl.lr=-1e-4")),
    Case("kpo: rl.n_minibatches=0", exp("kpo", "--config.rl.n_minibatches=0")),
    Case("kpo: rl.noise_scale=nan", exp("kpo", "--config.rl.noise_scale=nan")),
    Case("kpo: rl.method set (per-run)", exp("kpo", "--config.rl.method=gspo")),
    Case("kpo: unknown condition", exp("kpo", "--config.conditions=noise,stormy")),
    Case("picce: num_experts=0,2", exp("picce", "--config.num_experts=0,2")),
    Case("picce: lr_grid=0", exp("picce", "--config.lr_grid=0")),
    Case("picce: epochs.gmm=0", exp("picce", "--config.epochs.gmm=0")),
    Case("fusion: train_steps=0", exp("fusion", "--config.train_steps=0")),
    Case("fusion: n_demos=-5", exp("fusion", "--config.n_demos=-5")),
    Case("farl: num_envs=0", exp("farl", "--config.num_envs=0")),
    Case("farl: lr=nan", exp("farl", "--config.lr=nan")),
    Case("finance_dataflow: lookback=0", exp("finance_dataflow", "--config.lookback=0")),
    Case("finance_dataflow: batch_size=0", exp("finance_dataflow", "--config.batch_size=0")),
    Case("robust_trading: num_assets=0", exp("robust_trading", "--config.num_assets=0")),
    Case("robust_trading: gan.lr=-1", exp("robust_trading", "--config.gan.lr=-1")),
    Case("robust_trading: unknown world", exp("robust_trading", "--config.worlds=moon")),
    Case("robust_trading: trader.obs_adv_eps=-1", exp("robust_trading", "--config.trader.obs_adv_eps=-1")),
    Case("drmas: rl.n_prompts=0", exp("drmas", "--config.rl.n_prompts=0")),
    Case("drmas: seeds empty", exp("drmas", "--config.seeds=")),
    Case("ars: head.lr=inf", exp("ars", "--config.head.lr=inf")),
    Case("ars: batch_size=0", exp("ars", "--config.batch_size=0")),
    Case("gpac: n_splits=0", exp("gpac", "--config.n_splits=0")),
    Case("agentocr: bc_steps=0", exp("agentocr", "--config.bc_steps=0")),
    # --- the main job and the report
    Case("reproduce: unknown experiment in --only", ["-m", "jaxlab.reproduce", "--only=nope",
                                                     "--workdir={tmp}/w"]),
    Case("reproduce: unknown suite", ["-m", "jaxlab.reproduce", "--suite=huge", "--workdir={tmp}/w"]),
    Case("reproduce: stray positional argument", ["-m", "jaxlab.reproduce", "picce", "--workdir={tmp}/w"]),
    Case("reproduce: unwritable workdir", ["-m", "jaxlab.reproduce", "--only=picce",
                                           "--workdir=/proc/jaxlab_cannot_write"]),
    Case("report: corrupt summary.json", ["-m", "jaxlab.core.report", "--workdir={tmp}/w"], expect="ok",
         setup=setup_report("summary"), check=check_report),
    Case("report: corrupt failed.json", ["-m", "jaxlab.core.report", "--workdir={tmp}/w"], expect="ok",
         setup=setup_report("failed"), check=check_report),
    Case("report: summary.json of the wrong shape", ["-m", "jaxlab.core.report", "--workdir={tmp}/w"],
         expect="ok", setup=setup_report("shape"), check=check_report),
    Case("report: --run on a missing workdir", ["-m", "jaxlab.core.report", "--run={tmp}/missing"]),
    Case("report: missing results workdir", ["-m", "jaxlab.core.report", "--workdir={tmp}/missing"]),
]


def classify(case: Case, tmp: str, proc, timed_out: bool) -> tuple[str, str]:
    if timed_out:
        return "hang", "timed out"
    err = proc.stderr or ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if "Traceback" in err:
        tb = [ln for ln in lines if ln and not ln.startswith(" ")]
        return "traceback", (tb[-1] if tb else last)[:160]
    if case.check is not None:
        lost = case.check(tmp, proc)
        if lost:
            return "lost", lost
    if case.expect == "ok":
        return ("clean", "exit 0, check holds") if proc.returncode == 0 else \
            ("unclear", f"exit {proc.returncode}: {last[:140]}")
    if proc.returncode == 0:
        return "silent", "exit 0"
    if proc.returncode in (2, 130) and last.startswith("error:"):
        return "clean", last[:160]
    return "unclear", f"exit {proc.returncode}: {last[:140]}"


def run_case(case: Case, timeout: float) -> dict:
    tmp = tempfile.mkdtemp(prefix="jaxlab_sweep_")
    env = {**os.environ, "JAXLAB_CACHE_DIR": os.path.join(tmp, "cache"),
           **{k: v.replace("{tmp}", tmp) for k, v in case.env.items()}}
    env.pop("JAXLAB_DEBUG", None)
    t0 = time.time()
    try:
        if case.setup is not None:
            case.setup(tmp)
        args = [a.replace("{tmp}", tmp) for a in case.args]
        try:
            proc = subprocess.run([PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                  env=env)
            outcome, detail = classify(case, tmp, proc, False)
        except subprocess.TimeoutExpired:
            outcome, detail = classify(case, tmp, None, True)
    except Exception as e:  # a broken setup is reported, not hidden
        outcome, detail = "unclear", f"setup failed: {type(e).__name__}: {e}"[:160]
    finally:
        if case.teardown is not None:
            case.teardown(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"case": case.name, "outcome": outcome, "detail": detail, "seconds": round(time.time() - t0, 1)}


def table(rows: list[dict]) -> str:
    kinds = ("clean", "traceback", "silent", "hang", "lost", "unclear")
    counts = {k: sum(r["outcome"] == k for r in rows) for k in kinds}
    out = ["| tried | clean error | traceback | silent | hang | lost | unclear |",
           "|---:|---:|---:|---:|---:|---:|---:|",
           f"| {len(rows)} | " + " | ".join(str(counts[k]) for k in kinds) + " |", "",
           "| case | outcome | s | detail |", "|---|---|---:|---|"]
    for r in rows:
        detail = r["detail"].replace("|", "\\|")
        out.append(f"| {r['case']} | {r['outcome']} | {r['seconds']} | {detail} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=150.0)
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--out", default="", help="also write the markdown table here")
    a = ap.parse_args()
    cases = [c for c in CASES if a.only in c.name]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        rows = list(pool.map(lambda c: run_case(c, a.timeout), cases))
    text = table(rows)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    bad = sum(r["outcome"] != "clean" for r in rows)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
