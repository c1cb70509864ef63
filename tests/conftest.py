"""The one root conftest: JAX flags for the whole suite, and a CPU-time account of every test.

JAX flags:
- Opt-in `JAX_DISABLE_MOST_OPTIMIZATIONS=1` (exported by the user): the suite is dominated by XLA
  compiles of small programs, and with most optimisations off a compile costs about half the CPU
  (measured on `tests/rl/test_train.py::test_on_policy_update_is_identical_for_every_method`: 93 CPU-s
  -> 54 CPU-s). Not the default yet: one whole-suite run under it is still to be checked.
- `jax_threefry_partitionable=True` (the default of current JAX; pinned so keys do not depend on it).

CPU time: wall times on a shared 2-core machine say little, so each test's CPU seconds (the worker
process and its reaped children, e.g. notebook kernels and experiment subprocesses) are recorded, and
the 20 costliest are printed at the end of the session. `JAXLAB_TEST_CPU_LOG=<path>` also writes all
of them as JSON lines.
"""

import json
import os

import jax
import pytest

from jaxlab.core.app import cpu_seconds

jax.config.update("jax_threefry_partitionable", True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    out = yield
    if call.when == "teardown":   # the call phase's cost so far (setup + call) travels with the report
        out.get_result().user_properties.append(("cpu_s", cpu_seconds() - item._jaxlab_t0))


_REPORTS = {}   # nodeid -> CPU seconds (filled on the controller from the workers' reports)


def pytest_runtest_setup(item):
    item._jaxlab_t0 = cpu_seconds()


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        for k, v in report.user_properties:
            if k == "cpu_s":
                _REPORTS[report.nodeid] = v


def pytest_terminal_summary(terminalreporter):
    if not _REPORTS:
        return
    total = sum(_REPORTS.values())
    top = sorted(_REPORTS.items(), key=lambda kv: -kv[1])[:20]
    tr = terminalreporter
    tr.write_sep("=", f"CPU time: {total:.0f} CPU-s in {len(_REPORTS)} tests (20 costliest)")
    for nodeid, s in top:
        tr.write_line(f"{s:8.1f} CPU-s  {nodeid}")
    path = os.environ.get("JAXLAB_TEST_CPU_LOG")
    if path:
        with open(path + ".tmp", "w") as f:
            for nodeid, s in sorted(_REPORTS.items(), key=lambda kv: -kv[1]):
                f.write(json.dumps({"test": nodeid, "cpu_s": round(s, 2)}) + "\n")
        os.replace(path + ".tmp", path)
