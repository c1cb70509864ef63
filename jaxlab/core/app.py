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

import os
import re
import sys
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


class WorkdirError(ValueError):
    """The workdir cannot be created or written."""


def fail(message: str, code: int = 2) -> None:
    """Prints `error: message` as one line on stderr and exits with `code`."""
    message = " ".join(str(message).split())
    print(f"error: {message}", file=sys.stderr)
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


def run_experiment(paper: str, run_fn: RunFn, config: ml_collections.ConfigDict, workdir: str,
                   suite: str) -> dict:
    """Runs one experiment and writes `workdir/summary.json` (atomically) and `workdir/config.json`."""
    ensure_workdir(workdir)
    metrics_lib.write_json_atomic(os.path.join(workdir, "config.json"), config_lib.config_to_dict(config))
    start = time.perf_counter()
    summary = validate_summary(run_fn(config, workdir), paper)
    wall = time.perf_counter() - start
    out = {"paper": paper, "suite": suite, "config_hash": config_lib.config_hash(config),
           "wall_time_s": round(wall, 2), "versions": versions()}
    out.update({k: v for k, v in summary.items() if k not in out})
    metrics_lib.write_json_atomic(os.path.join(workdir, "summary.json"), out)
    return out


_CONFIG_ARG = re.compile(r"^--config=(.+)$")
_OVERRIDE_ARG = re.compile(r"^--config\.([A-Za-z0-9_.]+)(?:=.*)?$")


def _preflight(argv: list[str], default: str) -> tuple[str, str]:
    """Checks the config file, size and override keys before absl applies them (clear errors)."""
    spec = default
    for arg in argv[1:]:
        m = _CONFIG_ARG.match(arg)
        if m:
            spec = m.group(1)
    path, _, size = spec.partition(":")
    size = size or "quick"
    base = config_lib.load_config(path, size)
    keys = [m.group(1) for m in map(_OVERRIDE_ARG.match, argv[1:]) if m]
    config_lib.check_keys(base, keys)
    return path, size


def launch(paper: str, run_fn: RunFn, argv: list[str] | None = None) -> None:
    """absl entry point for `python -m experiments.<paper>` (see the module docstring)."""
    from absl import app, flags
    from ml_collections import config_flags

    default = f"experiments/configs/{paper}.py:quick"
    config_flag = config_flags.DEFINE_config_file(
        "config", default=default, help_string="config file and size, e.g. path.py:quick", lock_config=True)
    workdir_flag = flags.DEFINE_string("workdir", os.path.join("results", "adhoc", paper),
                                       "where metrics.jsonl, summary.json and figures/ go")
    state: dict[str, str] = {}

    def parse(argv_: list[str]) -> list[str]:
        try:
            _, state["suite"] = _preflight(argv_, default)
            rest = flags.FLAGS(argv_)
            config_flag.value  # noqa: B018 (forces the lazy load so errors surface here)
        except config_lib.ConfigError as e:
            fail(str(e))
        except flags.Error as e:
            fail(f"bad flag: {e}")
        except (AttributeError, KeyError) as e:
            fail(f"unknown config key: {e}")
        return rest

    def main(_):
        if not os.environ.get("JAXLAB_DEBUG"):
            from absl import logging
            logging.set_verbosity(logging.WARNING)
        try:
            summary = run_experiment(paper, run_fn, config_flag.value, workdir_flag.value, state["suite"])
        except USER_ERRORS as e:
            if os.environ.get("JAXLAB_DEBUG"):
                traceback.print_exc()
            fail(f"{type(e).__name__}: {e}")
        verdicts = ", ".join(f"{c['id']}={c['verdict']}" for c in summary["claims"])
        print(f"{paper}: done in {summary['wall_time_s']:.1f}s; {verdicts}; "
              f"summary at {os.path.join(workdir_flag.value, 'summary.json')}")

    app.run(main, argv=argv, flags_parser=parse)
