"""The one task protocol and the shared Brax-MJX scene plumbing of the simulated tasks.

Task protocol (functional, every argument explicit, every function jit/vmap-able):

    state = reset(key, p)           # a fresh episode; p: the task's params NamedTuple (static)
    state = step(state, action, p)  # one control step
    obs   = observe(state, key, p)  # the sensors of the last step (noise drawn from key)

`jaxlab.fusion.pour` and `jaxlab.fusion.cabinet` are task modules in this shape (`check_task_module`).
FARL's FailureBench tasks are Brax `PipelineEnv`s (`reset(rng) -> State`, `step(State, action) -> State`
with the observation inside the State), the shape Brax's PPO and wrappers expect; both kinds load their
MJCF scenes through `load_system` and step physics with `physics_substeps`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol

import jax

PROTOCOL = ("reset", "step", "observe")


class TaskModule(Protocol):
    """A module (or object) with the three task functions."""

    def reset(self, key: jax.Array, p: Any) -> Any: ...

    def step(self, state: Any, action: Any, p: Any) -> Any: ...

    def observe(self, state: Any, key: jax.Array, p: Any) -> Any: ...


def check_task_module(module) -> None:
    """Raises ValueError naming the missing functions when ``module`` does not follow the task protocol."""
    missing = [name for name in PROTOCOL if not callable(getattr(module, name, None))]
    if missing:
        raise ValueError(f"module: {getattr(module, '__name__', module)!r} lacks the task functions {missing}")


@functools.lru_cache(maxsize=None)
def load_system(mjcf_xml: str):
    """The Brax `System` of an MJCF string, loaded once per string (Brax's `mjx` pipelines step it).

    Built under `jax.ensure_compile_time_eval`, so the cached system holds concrete arrays even when it is
    first requested inside a trace (a jitted reset)."""
    from brax.io import mjcf

    with jax.ensure_compile_time_eval():
        return mjcf.loads(mjcf_xml)


def physics_substeps(sys, pipeline_state, ctrl, n: int, *, pipeline_step: Callable | None = None):
    """``n`` physics substeps of the Brax pipeline with a constant control (a `lax.fori_loop`)."""
    if pipeline_step is None:
        from brax.mjx import pipeline
        pipeline_step = pipeline.step
    return jax.lax.fori_loop(0, n, lambda _, x: pipeline_step(sys, x, ctrl), pipeline_state)
