"""The experiment entry point: one-line errors with exit code 2, deterministic summaries."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

TOY = "tests/core/toy_config.py"


def _launch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tests.core.toy_experiment", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    ([f"--config={TOY}:quick", "--config.nope=1"], "unknown config key 'nope'"),
    ([f"--config={TOY}:quick", "--config.steps=abc"], "config key 'steps': expected int"),
    (["--config.steps"], "expected --config.<key>=<value>"),
    ([f"--config={TOY}:quick", "--config.seeds=0,0"], "expected unique seeds"),
    ([f"--config={TOY}:quick", "--config.seeds="], "expected at least one seed"),
    ([f"--config={TOY}:quick", "--config.steps=0"], "expected a count >= 1"),
    ([f"--config={TOY}:quick", "--config.lr=nan"], "expected a finite number"),
    ([f"--config={TOY}:quick", "--config.lr=-0.1"], "learning rate > 0"),
    ([f"--config={TOY}:quick", "--config.seeds=a,b"], "config key 'seeds[0]': expected int"),
    ([f"--config={TOY}:huge"], "config size"),
    (["--config=tests/core/missing.py:quick"], "does not exist"),
    ([f"--config={TOY}:quick", "--workdir=/proc/jaxlab_cannot_write"], "not writable"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, needle):
    proc = _launch(*args)
    assert proc.returncode == 2, proc.stderr[-1000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]


@pytest.mark.parametrize("module", ["experiments.picce", "experiments.kpo"])
def test_real_experiment_bad_override_without_config_flag_is_one_line(module, tmp_path):
    """With the default --config (none given), an unknown key is still one line and exit 2."""
    proc = subprocess.run([sys.executable, "-m", module, "--config.nope=1", f"--workdir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: unknown config key 'nope' (no 'nope' in the config)"], proc.stderr[-2000:]
    assert not os.path.exists(tmp_path / "summary.json")


def test_list_overrides_both_forms_and_help(tmp_path):
    """The comma form end to end (the tuple and list forms are parsed by the same code: test_config)."""
    proc = _launch(f"--config={TOY}:quick", "--config.seeds=0,2", "--config.steps=10", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.load(open(tmp_path / "summary.json"))["seeds"] == [0, 2]
    helped = subprocess.run([sys.executable, "-m", "experiments.picce", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert helped.returncode == 0 and "--config.<key>=<value>" in helped.stdout
    assert "--workdir" in helped.stdout and "--config.lr_grid=" in helped.stdout   # every key with its default


def test_second_run_on_a_busy_workdir_is_one_line(tmp_path):
    slow = subprocess.Popen([sys.executable, "-m", "tests.core.toy_experiment", f"--config={TOY}:quick",
                             "--config.sleep_per_chunk=0.5", f"--workdir={tmp_path}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / ".lock").exists() or not (tmp_path / ".lock").read_text().strip():
            assert time.time() < deadline and slow.poll() is None
            time.sleep(0.05)
        proc = _launch(f"--config={TOY}:quick", f"--workdir={tmp_path}")
    finally:
        slow.kill()
        slow.wait()
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "in use by another run" in lines[0], proc.stderr


def test_sigint_keeps_checkpoints_and_the_same_command_resumes(tmp_path):
    cmd = [sys.executable, "-m", "tests.core.toy_experiment", f"--config={TOY}:quick", "--config.seeds=0",
           f"--workdir={tmp_path}"]
    proc = subprocess.Popen(cmd + ["--config.sleep_per_chunk=0.4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "ckpt" / "seed0"
    deadline = time.time() + 120
    while not (ckpt.exists() and any(d.isdigit() for d in os.listdir(ckpt))):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "run the same command to resume" in lines[0], err
    assert not (tmp_path / "summary.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = _launch(f"--config={TOY}:quick", "--config.seeds=0", f"--workdir={tmp_path / 'fresh'}")
    a = json.load(open(tmp_path / "summary.json"))
    b = json.load(open(tmp_path / "fresh" / "summary.json"))
    assert fresh.returncode == 0 and a["claims"][0]["ours"]["values"] == b["claims"][0]["ours"]["values"]


def test_corrupt_checkpoint_gives_exit_code_2(tmp_path):
    ckpt = tmp_path / "ckpt" / "seed0"
    ckpt.mkdir(parents=True)
    (ckpt / "junk.bin").write_bytes(b"\x00\x01")
    proc = _launch(f"--config={TOY}:quick", f"--workdir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: CheckpointError") and "seed0" in proc.stderr
    assert (ckpt / "junk.bin").read_bytes() == b"\x00\x01"


def test_same_seed_twice_gives_identical_summary_numbers(tmp_path):
    out = []
    for name in ("a", "b"):
        proc = _launch(f"--config={TOY}:quick", f"--workdir={tmp_path / name}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        s = json.loads((tmp_path / name / "summary.json").read_text())
        out.append(s)
    assert out[0]["claims"] == out[1]["claims"]
    assert out[0]["tables"] == out[1]["tables"]
    assert out[0]["config_hash"] == out[1]["config_hash"]
    assert out[0]["claims"][0]["verdict"] == "reproduced"
    assert out[0]["versions"]["jax"]
    assert os.path.exists(tmp_path / "a" / "figures" / "loss.png")
    rows = [json.loads(line) for line in open(tmp_path / "a" / "metrics.jsonl")]
    assert [r["seed"] for r in rows] == [0, 1, 2]
