"""The task protocol and the shared scene plumbing (`jaxlab.core.scene`)."""

import types

import jax.numpy as jnp
import pytest

from jaxlab.core import scene


def test_task_modules_follow_the_protocol_and_a_missing_function_is_named():
    from jaxlab.fusion import cabinet, pour
    scene.check_task_module(pour)
    scene.check_task_module(cabinet)
    broken = types.SimpleNamespace(reset=lambda k, p: 0, step=lambda s, a, p: s)
    with pytest.raises(ValueError, match=r"\['observe'\]"):
        scene.check_task_module(broken)


def test_physics_substeps_applies_the_step_n_times_with_the_same_control():
    calls = []

    def fake_step(sys, x, ctrl):
        calls.append(1)                       # traced once by fori_loop
        return x * sys + ctrl

    out = scene.physics_substeps(2.0, jnp.float32(1.0), jnp.float32(1.0), 3, pipeline_step=fake_step)
    assert float(out) == ((1 * 2 + 1) * 2 + 1) * 2 + 1     # 15: three substeps, not two or four
    assert float(scene.physics_substeps(2.0, jnp.float32(1.0), 1.0, 0, pipeline_step=fake_step)) == 1.0


def test_load_system_is_loaded_once_per_scene():
    from jaxlab.fusion import cabinet
    p = cabinet.CabinetParams()
    assert cabinet._system(p) is cabinet._system(p._replace(click_gain=0.1))   # same MJCF: one System
    assert cabinet._system(p).q_size() == 2
