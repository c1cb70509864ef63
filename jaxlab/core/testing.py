"""Helpers for tests: run a snippet in a fresh process with N fake CPU devices."""

from __future__ import annotations

import os
import subprocess
import sys

# The XLA flag `make test` adds (tests/conftest.py, JAXLAB_TEST_XLA=fast): CPU fusions compiled by XLA's older
# emitters, which compile faster; a notebook that executes more than it compiles takes it out again (test_colabs).
FAST_COMPILE_XLA_FLAG = "--xla_cpu_use_fusion_emitters=false"


def run_with_fake_devices(code: str, n: int = 8, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `python -c code` with XLA_FLAGS=--xla_force_host_platform_device_count=n (CPU only).

    The snippet should print its result (e.g. JSON) on stdout; returns the CompletedProcess
    (check `.returncode`, `.stdout`, `.stderr`).
    """
    env = dict(os.environ)
    # On a loaded 2-core machine one of the n device threads can be starved for longer than XLA's default
    # 40 s collective rendezvous timeout, which aborts the process; allow 10 minutes instead.
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
                        " --xla_cpu_collective_call_terminate_timeout_seconds=600"
                        " --xla_cpu_collective_timeout_seconds=600").strip()
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=root)
