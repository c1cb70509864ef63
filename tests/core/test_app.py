"""The experiment entry point: one-line errors with exit code 2, deterministic summaries."""

import json
import os
import subprocess
import sys

import pytest

TOY = "tests/core/toy_config.py"


def _launch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tests.core.toy_experiment", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    ([f"--config={TOY}:quick", "--config.nope=1"], "unknown config key 'nope'"),
    ([f"--config={TOY}:quick", "--config.steps=abc"], "--config.steps=abc"),
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
