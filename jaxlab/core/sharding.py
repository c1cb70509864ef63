"""Meshes and a data-parallel train-step wrapper (jax.sharding; no pmap).

`data_parallel_step(step_fn, mesh)` jits a `step_fn(state, batch) -> (state, metrics)` with the state
replicated and the batch split along its leading axis over the mesh's `data` axis; XLA (GSPMD) inserts
the gradient all-reduce. `shard_map_step` is the explicit alternative: the step sees its local shard
and must average gradients with `jax.lax.pmean(g, axis)` itself (see `pmean_grads`).
Multi-host: call `initialize_distributed()` first on every host (no-op on a single process).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def initialize_distributed() -> None:
    """Calls `jax.distributed.initialize()` when launched as one of several processes.

    Triggered by JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID (or a cluster
    environment JAX auto-detects, e.g. SLURM or TPU pods when JAXLAB_DISTRIBUTED=1).
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ.get("JAX_NUM_PROCESSES", "1")),
            process_id=int(os.environ.get("JAX_PROCESS_ID", "0")))
    elif os.environ.get("JAXLAB_DISTRIBUTED") == "1":
        jax.distributed.initialize()


def make_mesh(n_devices: int | None = None, axis: str = DATA) -> Mesh:
    """A 1-D mesh over the first `n_devices` devices (default: all) with axis name `axis`."""
    available = jax.device_count()
    n = available if n_devices is None else n_devices
    if not 1 <= n <= available:
        raise ValueError(f"n_devices: expected 1..{available} (devices available), got {n_devices}")
    auto = (jax.sharding.AxisType.Auto,)  # GSPMD propagation (not sharding-in-types "Explicit")
    if n == available:
        return jax.make_mesh((n,), (axis,), axis_types=auto)
    return Mesh(np.asarray(jax.devices()[:n]), (axis,), axis_types=auto)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh, axis: str = DATA) -> NamedSharding:
    return NamedSharding(mesh, P(axis))


def _check_batch(batch: Any, mesh: Mesh, axis: str) -> None:
    n = mesh.shape[axis]
    for leaf in jax.tree.leaves(batch):
        if leaf.ndim == 0 or leaf.shape[0] % n:
            raise ValueError(f"batch: every leaf needs a leading axis divisible by {n} devices, got shape {leaf.shape}")


def shard_batch(batch: Any, mesh: Mesh, axis: str = DATA) -> Any:
    """Places a batch pytree with its leading axis split over `axis`."""
    _check_batch(batch, mesh, axis)
    return jax.device_put(batch, data_sharded(mesh, axis))


def shard_rows(tree: Any, mesh: Mesh, axis: str = DATA) -> Any:
    """Places a host-collected batch: every leaf whose leading axis divides over `axis` is split along it, every
    other leaf (scalars, PRNG keys, per-step constants) is replicated. Under `jit` a placement never changes
    the result (arrays keep their global meaning); it only decides where the rows are computed."""
    n = mesh.shape[axis]

    def place(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        rows = x.ndim >= 1 and x.shape[0] % n == 0
        return jax.device_put(x, data_sharded(mesh, axis) if rows else replicated(mesh))
    return jax.tree.map(place, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, replicated(mesh))


def data_parallel_step(step_fn: Callable, mesh: Mesh, axis: str = DATA, donate_state: bool = False) -> Callable:
    """jit(step_fn) with state replicated and batch sharded along `axis`; outputs replicated.

    The step is written for the global batch (means over the whole batch), so its result equals the
    single-device step up to float reduction order.
    """
    rep, dat = replicated(mesh), data_sharded(mesh, axis)
    jitted = jax.jit(step_fn, in_shardings=(rep, dat), out_shardings=rep,
                     donate_argnums=(0,) if donate_state else ())

    def step(state, batch):
        _check_batch(batch, mesh, axis)
        return jitted(state, batch)

    return step


def constrain_batch(tree: Any, axis: str = DATA) -> Any:
    """Inside a jitted step: splits every leaf's leading axis over the current mesh's `axis`.

    A no-op when no mesh with that axis is set (`jax.set_mesh`, as `core.loop.run(mesh=...)` does) or
    when a leading axis does not divide, so the same step runs on one device and on many.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or axis not in mesh.axis_names:
        return tree
    n = mesh.shape[axis]

    def one(x):
        if getattr(x, "ndim", 0) == 0 or x.shape[0] % n:
            return x
        return jax.lax.with_sharding_constraint(x, P(axis))
    return jax.tree.map(one, tree)


def pmean_grads(grads: Any, axis: str = DATA) -> Any:
    """Averages a gradient pytree over the mesh axis (inside shard_map)."""
    return jax.lax.pmean(grads, axis)


def shard_map_step(local_step_fn: Callable, mesh: Mesh, axis: str = DATA) -> Callable:
    """jit(shard_map(local_step_fn)): the step sees its local batch shard and must pmean its gradients."""
    mapped = jax.shard_map(local_step_fn, mesh=mesh, in_specs=(P(), P(axis)), out_specs=P(), check_vma=False)
    return jax.jit(mapped)
