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
    assert "| toy_broken | [Toy that crashes](#toy_broken) | **FAILED** |" in report
    assert "deliberate failure" in report
    assert "| toy | [Toy regression](#toy) | done | **reproduced** (1/1 paper claims) | 1/1 reproduced |" in report
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


def test_sigterm_stops_the_experiment_it_started(tmp_path):
    """Killing the main job stops its child (process group): no orphan keeps writing."""
    import signal
    import time
    wd = tmp_path / "quick"
    env = dict(os.environ, JAXLAB_REGISTRY_EXTRA="tests.core.toy_registry", JAXLAB_TOY_SLEEP="2.0")   # >= 16 s left after the lock: a loaded machine still signals in time
    proc = subprocess.Popen([sys.executable, "-m", "jaxlab.reproduce", "--suite=quick", "--only=toy",
                             f"--workdir={wd}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lock = wd / "toy" / ".lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().strip()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    child = int(lock.read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    time.sleep(0.5)
    try:
        os.kill(child, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the experiment outlived the main job"
    assert not (wd / "toy" / "summary.json").exists()
