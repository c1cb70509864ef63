"""The main job: keeps going past a failure, marks it FAILED, exits non-zero, skips up-to-date runs."""

import json
import os
import subprocess
import sys


def _reproduce(*args, extra=True):
    env = dict(os.environ)
    if extra:
        env["JAXLAB_REGISTRY_EXTRA"] = "tests.core.toy_registry"
    return subprocess.run([sys.executable, "-m", "jaxlab.reproduce", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_runs_toy_keeps_going_after_failure_and_skips_when_up_to_date(tmp_path):
    wd = str(tmp_path / "quick")
    proc = _reproduce("--suite=quick", "--only=toy_broken,toy", f"--workdir={wd}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "toy_broken: FAILED" in proc.stdout and "toy: done" in proc.stdout
    report = open(os.path.join(wd, "REPORT.md")).read()
    assert "| toy_broken | Toy that crashes | **FAILED** |" in report
    assert "deliberate failure" in report
    assert "| toy | Toy regression | done | learns: reproduced |" in report
    assert "| picce |" in report  # the real papers are listed too (implemented or not)
    first = json.load(open(os.path.join(wd, "toy", "summary.json")))
    again = _reproduce("--suite=quick", "--only=toy", f"--workdir={wd}")
    assert again.returncode == 0 and "toy: up to date" in again.stdout
    assert json.load(open(os.path.join(wd, "toy", "summary.json")))["wall_time_s"] == first["wall_time_s"]
    forced = _reproduce("--suite=quick", "--only=toy", f"--workdir={wd}", "--force")
    assert forced.returncode == 0 and "toy: done" in forced.stdout


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    for args, needle in [(["--only=no_such_paper"], "unknown experiment 'no_such_paper'"),
                         (["--suite=huge"], "--suite"),
                         (["--only=toy", "--workdir=/proc/jaxlab_nope"], "not writable")]:
        proc = _reproduce(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
