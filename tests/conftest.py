"""The one root conftest: JAX flags for the whole suite, and a CPU-time account of every test.

JAX flags:
- XLA optimisations: `JAXLAB_TEST_XLA=fast` runs the suite with most XLA optimisations off
  (`JAX_DISABLE_MOST_OPTIMIZATIONS=1`, also for subprocesses and notebook kernels): the suite is dominated by
  compiles of small programs, and with most optimisations off a compile costs about half the CPU. A test
  that executes enough to lose by it is marked `@pytest.mark.xla_optimized` and runs with the optimisations
  on. `make test` sets `fast` (measured: 49 -> 33 CPU-s on two compile-bound tests, 1,137 CPU-s for the whole
  suite); `JAXLAB_TEST_XLA=optimized` (the default outside make) leaves XLA alone. An explicit `JAX_DISABLE_MOST_OPTIMIZATIONS`
  from the user is respected either way. `fast` also compiles CPU fusions with XLA's older elemental emitters
  (`jaxlab.core.testing.FAST_COMPILE_XLA_FLAG`, `--xla_cpu_use_fusion_emitters=false`, appended to XLA_FLAGS
  unless XLA_FLAGS already sets it): on this
  compile-bound suite they compile about 40% faster (measured on the finance + l2d tests: 416 -> 267 CPU-s). The
  flag is process-wide, so `xla_optimized` tests keep it too.
- `jax_threefry_partitionable=True` (the default of current JAX; pinned so keys do not depend on it).

CPU time: wall times on a shared 2-core machine say little, so each test's CPU seconds (the worker
process and its reaped children, e.g. notebook kernels and experiment subprocesses) are recorded, and
the 20 costliest are printed at the end of the session. `JAXLAB_TEST_CPU_LOG=<path>` also writes all
of them as JSON lines.
"""

import json
import os

_XLA_MODE = os.environ.get("JAXLAB_TEST_XLA", "optimized")
if _XLA_MODE not in ("fast", "optimized"):
    raise ValueError(f"JAXLAB_TEST_XLA: expected 'fast' or 'optimized', got {_XLA_MODE!r}")
if _XLA_MODE == "fast":
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")     # before jax is imported (workers too)
    from jaxlab.core.testing import FAST_COMPILE_XLA_FLAG     # no jax import there
    if FAST_COMPILE_XLA_FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):   # XLA reads it at backend start
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_XLA_FLAG).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from jaxlab.core.app import cpu_seconds  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    out = yield
    if call.when == "teardown":   # the call phase's cost so far (setup + call) travels with the report
        out.get_result().user_properties.append(("cpu_s", cpu_seconds() - item._jaxlab_t0))


_REPORTS = {}   # nodeid -> CPU seconds (filled on the controller from the workers' reports)


# The tests that each spend a minute or more of CPU in notebook kernels or 8-device subprocesses, started first:
# xdist's worksteal hands each worker a contiguous half of the collection and steals from the ends of the queues,
# so these (collected late or in one module fixture) would otherwise run alone at the end of the session.
_FIRST = ("tests/test_colabs.py::test_notebook_runs_in_smoke_mode", "tests/core/test_paper_steps_sharded.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))     # stable: the same order on every worker


def pytest_runtest_setup(item):
    item._jaxlab_t0 = cpu_seconds()


@pytest.fixture(autouse=True)
def _xla_optimized_when_marked(request, monkeypatch):
    """Under JAXLAB_TEST_XLA=fast, a test marked xla_optimized runs with the optimisations on (in-process
    and for its subprocesses)."""
    if _XLA_MODE != "fast" or request.node.get_closest_marker("xla_optimized") is None:
        yield
        return
    monkeypatch.delenv("JAX_DISABLE_MOST_OPTIMIZATIONS", raising=False)
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)


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
