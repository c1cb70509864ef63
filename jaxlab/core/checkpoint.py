"""A thin wrapper over orbax `CheckpointManager`: save every N steps, keep K, restore the latest.

The state pytree is saved with `StandardSave`; the config, seed and package versions go beside it as
JSON (`meta`). A directory that exists but cannot be read as checkpoints is reported as a
`CheckpointError` naming it, and is never written over.

    ckpt = Checkpointer(workdir + "/ckpt", save_every=100, keep=2, metadata={"seed": 0})
    if ckpt.latest_step() is not None:
        step, state = ckpt.restore(state)      # `state` gives the tree structure, shapes and dtypes
    ...
    ckpt.maybe_save(step, state)
    ckpt.wait()                                 # before exiting (saves are asynchronous)
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax._src.lax.lax import _convert_element_type  # the one way to make a weakly typed array

from jaxlab.core.metrics import to_builtin
from jaxlab.core.versions import versions


def _is_orbax_tmp(name: str) -> bool:
    return ".orbax-checkpoint-tmp" in name


def _as_target_leaf(target, restored):
    """A restored leaf placed and typed as the fresh `target` leaf it replaces.

    Orbax hands back committed, strongly typed arrays. A fresh state from `jax.jit(init)` is uncommitted
    (and a Python-number leaf weakly typed), and `jax.jit` keys its compiled programs on both: without this, the
    jitted chunk compiled before a resume would compile again after it (measured: 9-11 s for FARL's PPO chunk).
    Leaves whose target is committed (a sharded or device-pinned state) or not a jax array are left as restored.
    """
    if not isinstance(target, jax.Array) or not isinstance(restored, jax.Array) or target.committed:
        return restored
    if jax.dtypes.issubdtype(restored.dtype, jax.dtypes.prng_key):   # typed keys: through their raw data
        data = jax.device_put(np.asarray(jax.random.key_data(restored)))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(restored))
    out = jax.device_put(np.asarray(restored))              # uncommitted, on the default device
    if target.weak_type:
        out = _convert_element_type(out, np.dtype(target.dtype), weak_type=True)
    return out


def _collect_quietly() -> None:
    import gc
    import sys
    hook = sys.unraisablehook
    sys.unraisablehook = lambda *_: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


class CheckpointError(ValueError):
    """A checkpoint directory is missing, corrupt or unreadable; the message names it."""


SPACE_MARGIN_BYTES = 4 << 20   # orbax metadata, manifests and the JSON record on top of the arrays


def _check_free_space(directory: str, state: Any) -> None:
    """Raises OSError(ENOSPC) naming `directory` when the disk cannot hold one more copy of `state`.

    Checked before orbax starts its writer threads: a write that fails inside them leaves tracebacks from
    several threads and a half-written temporary directory; this way the run stops with one line and the
    last complete checkpoint is untouched.
    """
    import jax
    need = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree_util.tree_leaves(state)) + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(directory).free
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device: a checkpoint needs ~{need >> 10} KiB, "
                      f"{free >> 10} KiB free", directory)


class Checkpointer:
    """Periodic asynchronous checkpoints of one pytree plus JSON metadata.

    Args:
      directory: where step directories go (created if missing).
      save_every: save when `step % save_every == 0` (or `force=True`).
      keep: how many recent checkpoints to keep.
      metadata: JSON-able dict stored with every checkpoint (config, seed); versions are added.
    """

    def __init__(self, directory: str, *, save_every: int, keep: int = 2, metadata: dict | None = None):
        if save_every < 1:
            raise ValueError(f"save_every: expected >= 1, got {save_every}")
        if keep < 1:
            raise ValueError(f"keep: expected >= 1, got {keep}")
        self.directory = os.path.abspath(directory)
        self.save_every = save_every
        self.metadata = {**to_builtin(metadata or {}), "versions": versions()}
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"checkpoint directory {directory!r} is a file, not a directory")
        existing = [e for e in os.listdir(self.directory)] if os.path.isdir(self.directory) else []
        # An interrupted asynchronous save leaves `<step>.orbax-checkpoint-tmp*`: incomplete by
        # construction (orbax renames it only when the save finished), so it is removed and the run
        # resumes from the last complete checkpoint (one run per workdir holds the lock).
        for e in [e for e in existing if _is_orbax_tmp(e)]:
            shutil.rmtree(os.path.join(self.directory, e), ignore_errors=True)
        existing = [e for e in existing if not _is_orbax_tmp(e)]
        stray = [e for e in existing if not e.isdigit() and not e.startswith(".")]
        if stray:
            raise CheckpointError(
                f"checkpoint directory {directory!r} holds entries that are not checkpoints "
                f"({', '.join(sorted(stray)[:3])}); refusing to write over it — move it away or pick another workdir")
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True,
                                                     enable_async_checkpointing=True),
                item_names=("state", "meta"))
        except Exception as e:  # orbax raises various types for unreadable directories
            raise CheckpointError(f"checkpoint directory {directory!r} is unreadable: {e}") from e

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, target: Any, step: int | None = None) -> tuple[int, Any]:
        """Restores `step` (default: latest) into the structure of `target`; returns (step, state).

        Each restored leaf is placed and typed as its `target` leaf (uncommitted and weakly typed where the target
        is), so jitted functions compiled for a fresh state are reused for the restored one."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"checkpoint directory {self.directory!r} has no checkpoint to restore")
        failure = None
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                              meta=ocp.args.JsonRestore()))
        except Exception as e:
            failure = CheckpointError(f"checkpoint {step} in {self.directory!r} is corrupt or does not match "
                                      f"the state ({type(e).__name__}); it was left untouched")
            if os.environ.get("JAXLAB_DEBUG"):
                raise failure from e
        if failure is not None:
            # A failed orbax restore leaves un-awaited read coroutines whose errors Python would print as
            # "Exception ignored" tracebacks at exit, after our one-line error: collect them quietly now
            # (outside the `except`, so the orbax exception and its frames are no longer referenced).
            _collect_quietly()
            raise failure
        return step, jax.tree.map(_as_target_leaf, target, restored["state"])

    def restore_metadata(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"checkpoint directory {self.directory!r} has no checkpoint")
        try:
            return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
        except Exception as e:
            raise CheckpointError(f"metadata of checkpoint {step} in {self.directory!r} is unreadable") from e

    def maybe_save(self, step: int, state: Any, *, force: bool = False, meta: dict | None = None) -> bool:
        """Saves when `step % save_every == 0` or `force`; returns whether it saved.

        `meta` (JSON-able) is stored with this checkpoint only, beside the constructor's metadata
        (e.g. the training history up to `step`, so state and history restore together)."""
        if not force and step % self.save_every != 0:
            return False
        if step in self.all_steps():
            return False
        record = {**self.metadata, **to_builtin(meta or {}), "step": step}
        _check_free_space(self.directory, state)
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(record)),
                           force=True)
        return True

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
