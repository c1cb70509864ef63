"""Running one experiment: absl flags + config -> run(config, workdir) -> summary.json.

Every `experiments/<paper>.py` ends with

    if __name__ == "__main__":
        launch("<paper>", run)

which gives `--config=experiments/configs/<paper>.py:quick` (absl `config_flags`, so
`--config.lr=3e-4` overrides a key) and `--workdir`. Problems a user can cause (an unknown config key,
a wrong type, a missing config file, an unwritable workdir, a corrupt checkpoint, bad input) print one
line `error: ...` and exit with status 2; set JAXLAB_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging as std_logging
import os
import re
import resource
import sys
import threading
import time
import traceback
from typing import Any, Callable

import ml_collections

from jaxlab.core import config as config_lib
from jaxlab.core import metrics as metrics_lib
from jaxlab.core.versions import versions

RunFn = Callable[[ml_collections.ConfigDict, str], dict]

# Errors that are the user's to fix get one line and exit code 2.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError)
# OS errors that the machine, not the code, causes: disk full, quota, read-only file system, no permission.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class WorkdirError(ValueError):
    """The workdir cannot be created or written."""


def fail(message: str, code: int = 2) -> None:
    """Prints `error: message` as one line on stderr and exits with `code`."""
    message = " ".join(str(message).split())
    print(f"error: {message}", file=sys.stderr)
    if not os.environ.get("JAXLAB_DEBUG"):
        # leftovers of the failed operation (e.g. orbax read coroutines of a mismatched checkpoint) must not
        # print "Exception ignored" tracebacks at exit after the one error line
        sys.unraisablehook = lambda *_: None
        # nor may writer threads that the failure orphaned (orbax's asyncio loops after a full disk)
        threading.excepthook = lambda *_: None
        std_logging.getLogger("asyncio").disabled = True
    sys.exit(code)


def ensure_workdir(workdir: str) -> str:
    """Creates `workdir` and checks that it is writable; raises WorkdirError naming it otherwise."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_probe_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir!r} is not writable ({e.strerror or e})") from None
    return workdir


def validate_summary(summary: Any, paper: str) -> dict:
    """Checks the shape of what run() returned (claims with verdicts, tables, figures)."""
    if not isinstance(summary, dict):
        raise TypeError(f"{paper}: run() must return a dict, got {type(summary).__name__}")
    for key in ("seeds", "claims"):
        if key not in summary:
            raise TypeError(f"{paper}: run() summary lacks {key!r}")
    for c in summary["claims"]:
        if "verdict" not in c or "id" not in c:
            raise TypeError(f"{paper}: every claim needs 'id' and 'verdict' (use jaxlab.core.summary.claim)")
    summary.setdefault("tables", {})
    summary.setdefault("figures", [])
    summary.setdefault("headline", "")
    return summary


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children (a load-independent cost)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def fast_compile(enabled: bool):
    """With `enabled`, XLA compiles with most optimisations off (`jax_disable_most_optimizations`) inside
    the block. For compile-bound runs (quick sizes: many small programs, few steps each) this about halves
    the compile CPU; the programs compute the same math up to float reassociation."""
    import jax
    prev = jax.config.read("jax_disable_most_optimizations")
    if enabled:
        jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", prev)


def run_experiment(paper: str, run_fn: RunFn, config: ml_collections.ConfigDict, workdir: str,
                   suite: str) -> dict:
    """Runs one experiment and writes `workdir/summary.json` (atomically) and `workdir/config.json`.

    A config key `fast_compile=True` (set in quick configs that are compile-bound) runs it under
    `fast_compile`. The summary records wall and CPU seconds."""
    ensure_workdir(workdir)
    lock_workdir(workdir)
    metrics_lib.write_json_atomic(os.path.join(workdir, "config.json"), config_lib.config_to_dict(config))
    start, cpu0 = time.perf_counter(), cpu_seconds()
    with fast_compile(bool(config.get("fast_compile", False))):
        summary = validate_summary(run_fn(config, workdir), paper)
    wall = time.perf_counter() - start
    out = {"paper": paper, "suite": suite, "config_hash": config_lib.config_hash(config),
           "wall_time_s": round(wall, 2), "cpu_time_s": round(cpu_seconds() - cpu0, 1), "versions": versions()}
    out.update({k: v for k, v in summary.items() if k not in out})
    metrics_lib.write_json_atomic(os.path.join(workdir, "summary.json"), out)
    return out


_OVERRIDE_ARG = re.compile(r"^--config\.([A-Za-z0-9_.]+)(=(.*))?$", re.S)


def split_config_args(argv: list[str], default: str) -> tuple[str, str, dict, list[str]]:
    """Separates `--config=<file>[:size]` and `--config.<key>=<value>` from the other flags.

    Returns (config path, size, {key: value string}, remaining argv for absl). `--config <file>` (space
    form) works too; an override without `=value` is a ConfigError naming it.
    """
    spec, overrides, rest = default, {}, [argv[0]] if argv else ["experiment"]
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--config":
            if i + 1 >= len(args):
                raise config_lib.ConfigError("--config: expected a config file, e.g. --config=path.py:quick")
            spec, i = args[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            spec = arg[len("--config="):]
        elif arg.startswith("--config."):
            m = _OVERRIDE_ARG.match(arg)
            if m is None or m.group(2) is None:
                raise config_lib.ConfigError(f"{arg}: expected --config.<key>=<value>")
            overrides[m.group(1)] = m.group(3)
        else:
            rest.append(arg)
        i += 1
    path, _, size = spec.partition(":")
    return path, size or "quick", overrides, rest


_lock_handles: dict[str, Any] = {}


def lock_workdir(workdir: str) -> None:
    """Takes an exclusive lock on `workdir/.lock` for this process; a second run on the same workdir
    gets a WorkdirError naming it (and the pid holding it) instead of two runs writing one folder."""
    import fcntl
    path = os.path.join(workdir, ".lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise WorkdirError(f"workdir {workdir!r} is in use by another run (pid {holder}); wait for it to "
                           f"finish or pick another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _lock_handles[os.path.abspath(workdir)] = f


def _raise_interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind, keep checkpoints
    raise KeyboardInterrupt(f"signal {signum}")


def usage(paper: str, default: str) -> str:
    """The --help text: the experiment's docstring, its flags and every config key with its default."""
    main_doc = (sys.modules.get("__main__").__doc__ or "").strip()
    lines = [f"python -m experiments.{paper} [--config=FILE[:quick|full]] [--config.KEY=VALUE ...] [--workdir=DIR]",
             "", main_doc, "", "flags:",
             f"  --config=FILE[:SIZE]      config file and size (default {default})",
             "  --config.<key>=<value>    override one key; lists as --config.seeds=0,1,2 or '(0, 1, 2)'",
             f"  --workdir=DIR             outputs (default results/adhoc/{paper}); the same command resumes,",
             "                            a new workdir starts fresh", ""]
    try:
        path, _, size = default.partition(":")
        flat = config_lib.config_to_dict(config_lib.load_config(path, size or "quick"))
        lines.append(f"config keys ({default}):")
        lines += [f"  --config.{k}={v}" for k, v in _flatten(flat)]
    except config_lib.ConfigError as e:
        lines.append(f"(config keys unavailable: {e})")
    return "\n".join(lines)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def launch(paper: str, run_fn: RunFn, argv: list[str] | None = None) -> None:
    """absl entry point for `python -m experiments.<paper>` (see the module docstring)."""
    import signal

    from absl import app, flags

    default = f"experiments/configs/{paper}.py:quick"
    flags.DEFINE_string("config", default, "config file and size, e.g. experiments/configs/"
                        f"{paper}.py:full; override any key with --config.<key>=<value> (lists: "
                        "--config.seeds=0,1,2)")
    workdir_flag = flags.DEFINE_string("workdir", os.path.join("results", "adhoc", paper),
                                       "where metrics.jsonl, summary.json and figures/ go; rerunning the "
                                       "same command resumes; a new workdir starts fresh")
    state: dict[str, Any] = {}

    def parse(argv_: list[str]) -> list[str]:
        if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv_[1:]):
            print(usage(paper, default))
            sys.exit(0)
        try:
            path, size, overrides, rest = split_config_args(argv_, default)
            rest = flags.FLAGS(rest)
            state["config"] = config_lib.load_config(path, size, overrides)
            state["suite"] = size
        except config_lib.ConfigError as e:
            fail(str(e))
        except flags.Error as e:
            fail(f"bad flag: {e}")
        return rest

    def main(_):
        if not os.environ.get("JAXLAB_DEBUG"):
            from absl import logging
            logging.set_verbosity(logging.WARNING)
            # orbax's writer threads log their failure with a traceback before the main thread re-raises it
            # (disk full, read-only folder); the main thread's one error line is enough
            std_logging.getLogger("absl").addFilter(lambda record: "orbax" not in record.pathname)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        # Ctrl-C must stop the run even when the parent started us with SIGINT ignored (an ignored
        # disposition is inherited across exec, e.g. from pytest-xdist workers or `cmd &` in sh).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            summary = run_experiment(paper, run_fn, state["config"], workdir_flag.value, state["suite"])
        except KeyboardInterrupt:
            fail(f"{paper}: interrupted; completed checkpoints and cell records are kept in "
                 f"{workdir_flag.value!r}; run the same command to resume", code=130)
        except USER_ERRORS as e:
            if os.environ.get("JAXLAB_DEBUG"):
                traceback.print_exc()
            fail(f"{type(e).__name__}: {e}")
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            fail(f"{paper}: {e.strerror} ({e.filename or 'a file in the workdir'}); completed checkpoints and "
                 f"cell records in {workdir_flag.value!r} are kept; free space or fix the folder, then run the "
                 f"same command to resume")
        verdicts = ", ".join(f"{c['id']}={c['verdict']}" for c in summary["claims"])
        print(f"{paper}: done in {summary['wall_time_s']:.1f}s; {verdicts}; "
              f"summary at {os.path.join(workdir_flag.value, 'summary.json')}")

    app.run(main, argv=argv, flags_parser=parse)
