"""The main job: run every registered experiment at one size and write REPORT.md.

    python -m jaxlab.reproduce --suite=quick --workdir=results/quick [--only=picce,kpo] [--force]

Each experiment runs in its own process (`python -m experiments.<name>`), so one crash or hang does
not take the others down; a hard timeout of `timeout_factor` × its budget applies in the quick suite.
An experiment whose `summary.json` already exists for the same config hash is skipped unless --force.
Failures are recorded in `<workdir>/<name>/failed.json` and shown as FAILED in the report; the exit
status is 1 when any experiment failed, 2 for bad arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import app, flags

from jaxlab.core import config as config_lib
from jaxlab.core import registry, report
from jaxlab.core.app import WorkdirError, ensure_workdir, fail
from jaxlab.core.metrics import read_json, write_json_atomic

_SUITE = flags.DEFINE_enum("suite", "quick", ["quick", "full"], "config size of every experiment")
_ONLY = flags.DEFINE_list("only", [], "comma-separated experiment names (default: all implemented)")
_WORKDIR = flags.DEFINE_string("workdir", None, "results directory (default: results/<suite>)")
_FORCE = flags.DEFINE_bool("force", False, "rerun experiments whose summary.json matches the config")
_TIMEOUT_FACTOR = flags.DEFINE_float("timeout_factor", 4.0, "quick suite: kill after this many budgets")
_LIST = flags.DEFINE_bool("list", False, "list the registry and exit")


def select(only: list[str]) -> list[registry.Experiment]:
    """The experiments to run: the named ones (all must exist and be implemented) or all implemented."""
    if not only:
        return registry.implemented()
    chosen = [registry.get(name) for name in only]  # ValueError names an unknown experiment
    missing = [e.name for e in chosen if not e.implemented]
    if missing:
        raise ValueError(f"experiment(s) not implemented yet: {', '.join(missing)}")
    return chosen


def up_to_date(exp_dir: str, config_hash: str) -> bool:
    path = os.path.join(exp_dir, "summary.json")
    if not os.path.exists(path) or os.path.exists(os.path.join(exp_dir, "failed.json")):
        return False
    try:
        return read_json(path).get("config_hash") == config_hash
    except (OSError, ValueError):
        return False


def run_one(exp: registry.Experiment, suite: str, workdir: str, timeout: float | None) -> tuple[bool, float, str]:
    """Runs one experiment in a subprocess; returns (ok, wall seconds, error tail)."""
    exp_dir = os.path.join(workdir, exp.name)
    os.makedirs(exp_dir, exist_ok=True)
    module = exp.runner.partition(":")[0]
    cmd = [sys.executable, "-m", module, f"--config={exp.config}:{suite}", f"--workdir={exp_dir}"]
    start = time.perf_counter()
    log_path = os.path.join(exp_dir, "log.txt")
    with open(log_path, "w") as log:
        # Its own process group: a timeout, Ctrl-C or SIGTERM here stops the experiment and every
        # process it started, so nothing orphaned keeps writing into the workdir.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            rc = None
        except BaseException:
            _stop_group(proc)
            raise
    wall = time.perf_counter() - start
    if rc == 0 and os.path.exists(os.path.join(exp_dir, "summary.json")):
        return True, wall, ""
    with open(log_path) as f:
        tail = "".join(f.readlines()[-30:])
    reason = f"timed out after {timeout:.0f} s" if rc is None else f"exit code {rc}"
    return False, wall, f"{reason}\n{tail}"


def _stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the child's process group (it keeps its last checkpoint), SIGKILL after `grace_s`."""
    import signal
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv) -> None:
    import signal
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _main(argv)
    except KeyboardInterrupt:
        fail("jaxlab.reproduce: interrupted; the running experiment was stopped with its last checkpoint "
             "kept; run the same command to resume", code=130)


def _main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _LIST.value:
        for e in registry.EXPERIMENTS:
            print(f"{e.name:18s} {'implemented' if e.implemented else 'not implemented':16s} {e.title}")
        return
    suite = _SUITE.value
    workdir = _WORKDIR.value or os.path.join("results", suite)
    try:
        experiments = select(_ONLY.value)
        ensure_workdir(workdir)
        hashes = {e.name: config_lib.config_hash(config_lib.load_config(e.config, suite)) for e in experiments}
    except (ValueError, WorkdirError) as e:
        fail(str(e))
    failures = []
    total = len(experiments)
    print(f"jaxlab.reproduce: {total} experiment(s), suite={suite}, workdir={workdir}", flush=True)
    for i, exp in enumerate(experiments, 1):
        exp_dir = os.path.join(workdir, exp.name)
        if not _FORCE.value and up_to_date(exp_dir, hashes[exp.name]):
            print(f"[{i}/{total}] {exp.name}: up to date (config {hashes[exp.name]}), skipped", flush=True)
            continue
        print(f"[{i}/{total}] {exp.name}: running (budget {exp.budget_s:.0f} s) ...", flush=True)
        timeout = exp.budget_s * _TIMEOUT_FACTOR.value if suite == "quick" else None
        ok, wall, err = run_one(exp, suite, workdir, timeout)
        failed_path = os.path.join(exp_dir, "failed.json")
        if ok:
            if os.path.exists(failed_path):
                os.unlink(failed_path)
            s = read_json(os.path.join(exp_dir, "summary.json"))
            print(f"[{i}/{total}] {exp.name}: done in {wall:.0f} s; {report.overall_verdicts(s)}", flush=True)
        else:
            failures.append(exp.name)
            write_json_atomic(failed_path, {"error": err, "wall_time_s": wall})
            print(f"[{i}/{total}] {exp.name}: FAILED after {wall:.0f} s (see {exp_dir}/log.txt)", flush=True)
    path = report.write_report(workdir, suite)
    print(f"report: {path}", flush=True)
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        sys.exit(1)


def _parse(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"bad flag: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
