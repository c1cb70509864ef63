import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxlab.core import config as config_lib
from jaxlab.core.checkpoint import Checkpointer, CheckpointError
from tests.core import toy_experiment

TOY = "tests/core/toy_config.py"


def _final_w(config, ckpt_dir=None):
    state, _ = toy_experiment.make_train(config, ckpt_dir)(jax.random.key(0))
    return np.asarray(state[0]), int(state[3])


def test_resume_after_exception_is_bitwise_equal(tmp_path):
    reference, _ = _final_w(config_lib.load_config(TOY, "quick"))
    crashing = config_lib.load_config(TOY, "quick", {"fail_at_step": 15})
    with pytest.raises(toy_experiment.SimulatedCrash):
        _final_w(crashing, str(tmp_path / "ckpt"))
    assert Checkpointer(str(tmp_path / "ckpt"), save_every=5).latest_step() == 15
    resumed, steps = _final_w(config_lib.load_config(TOY, "quick"), str(tmp_path / "ckpt"))
    assert steps == 40
    np.testing.assert_array_equal(resumed, reference)


def test_resume_after_sigkill_is_bitwise_equal(tmp_path):
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "tests.core.toy_experiment", f"--config={TOY}:quick", "--config.seeds=(0,)",
           f"--workdir={workdir}"]
    proc = subprocess.Popen(cmd + ["--config.sleep_per_chunk=0.4"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = workdir / "ckpt" / "seed0"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            steps = [int(d) for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
            if steps and max(steps) >= 10:
                break
            assert proc.poll() is None, "toy run ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (workdir / "summary.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    config = config_lib.load_config(TOY, "quick")
    reference, _ = _final_w(config)
    state = toy_experiment.init_state(config, jax.random.key(0))
    ck = Checkpointer(str(ckpt_dir), save_every=5)
    step, restored = ck.restore(state)
    assert step == 40
    np.testing.assert_array_equal(np.asarray(restored[0]), reference)


def test_corrupt_checkpoint_is_reported_and_left_untouched(tmp_path):
    config = config_lib.load_config(TOY, "quick", {"steps": 10})
    ckpt_dir = tmp_path / "ckpt"
    _final_w(config, str(ckpt_dir))
    victim = None
    for root, _, files in os.walk(ckpt_dir / "10"):
        for f in files:
            victim = os.path.join(root, f)
            with open(victim, "w") as fh:
                fh.write("corrupt")
    before = {p: open(os.path.join(r, p), "rb").read() for r, _, fs in os.walk(ckpt_dir) for p in fs}
    with pytest.raises(CheckpointError, match="corrupt"):
        _final_w(config_lib.load_config(TOY, "quick"), str(ckpt_dir))
    after = {p: open(os.path.join(r, p), "rb").read() for r, _, fs in os.walk(ckpt_dir) for p in fs}
    assert before == after and victim is not None


def test_directory_with_foreign_files_is_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="refusing"):
        Checkpointer(str(tmp_path / "ckpt"), save_every=1)
    assert (tmp_path / "ckpt" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="save_every"):
        Checkpointer(str(tmp_path / "other"), save_every=0)


def test_full_disk_stops_before_writing_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple
    ck = Checkpointer(str(tmp_path / "ckpt"), save_every=1)
    state = {"w": np.arange(1000, dtype=np.float32)}
    assert ck.maybe_save(1, state)
    ck.wait()
    before = sorted(os.listdir(tmp_path / "ckpt"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10 << 20, 10 << 20, 100 << 10))   # 100 KiB free
    with pytest.raises(OSError) as info:
        ck.maybe_save(2, state)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "ckpt")
    assert "4099 KiB" in str(info.value)          # (4000 bytes of arrays + the 4 MiB margin) >> 10
    assert sorted(os.listdir(tmp_path / "ckpt")) == before
    assert ck.restore(state)[0] == 1
