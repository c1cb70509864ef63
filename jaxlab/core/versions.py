"""Versions of the packages that determine numerical results (stored with checkpoints and summaries)."""

import importlib.metadata
import platform

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy", "brax", "mujoco")


def versions() -> dict[str, str]:
    """Returns {package: version} for the numerically relevant installed packages, plus python."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
