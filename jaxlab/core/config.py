"""Experiment configs: `ml_collections` files with `get_config("quick"|"full")`.

Experiments load them through absl `config_flags` (see `jaxlab.core.app`), so `--config.lr=3e-4`
works; `load_config` is the same thing for code (the reproduce driver, tests). Configs are locked:
an unknown key or a value of the wrong type is a `ConfigError` that names the key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from typing import Any

import ml_collections

SIZES = ("quick", "full")


class ConfigError(ValueError):
    """A config file, size, key or value is wrong; the message names it."""


def check_size(size: str) -> str:
    """Validates a config size; call it first thing in every `get_config`."""
    if size not in SIZES:
        raise ConfigError(f"config size: expected one of {SIZES}, got {size!r}")
    return size


def resolve_path(path: str) -> str:
    """A config path as given (relative to the working directory) or, failing that, relative to the
    source checkout jaxlab was installed from, so notebooks and scripts work from any directory."""
    if os.path.isfile(path) or os.path.isabs(path):
        return path
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidate = os.path.join(checkout, path)
    return candidate if os.path.isfile(candidate) else path


def _import_file(path: str):
    path = resolve_path(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    name = "jaxlab_config_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config(size)")
    return module


def config_module_attr(path: str, name: str):
    """A module-level constant of a config file (e.g. the condition table beside `get_config`)."""
    module = _import_file(path)
    if not hasattr(module, name):
        raise ConfigError(f"config file {path!r} has no {name}")
    return getattr(module, name)


def _lookup(config: ml_collections.ConfigDict, key: str):
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            raise ConfigError(f"unknown config key {key!r} (no {'.'.join(parts[:i + 1])!r} in the config)")
        node = node[part]
    return node


def check_keys(config: ml_collections.ConfigDict, keys) -> None:
    """Raises ConfigError naming the first key of `keys` (dotted paths) that the config does not have."""
    for key in keys:
        _lookup(config, key)


def _coerce(key: str, old: Any, new: Any) -> Any:
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
        if isinstance(new, str) and new.lower() in ("true", "false", "1", "0"):
            return new.lower() in ("true", "1")
        raise ConfigError(f"config key {key!r}: expected bool, got {new!r}")
    if isinstance(old, int) and not isinstance(old, bool):
        if isinstance(new, bool) or not isinstance(new, (int, str)):
            raise ConfigError(f"config key {key!r}: expected int, got {new!r}")
        try:
            return int(new)
        except ValueError:
            raise ConfigError(f"config key {key!r}: expected int, got {new!r}") from None
    if isinstance(old, float):
        if isinstance(new, bool):
            raise ConfigError(f"config key {key!r}: expected float, got {new!r}")
        try:
            return float(new)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}: expected float, got {new!r}") from None
    if isinstance(old, str):
        if not isinstance(new, str):
            raise ConfigError(f"config key {key!r}: expected str, got {new!r}")
        return new
    if isinstance(old, (tuple, list)):
        return type(old)(_coerce_sequence(key, old, new))
    return new


def _coerce_sequence(key: str, old, new) -> list:
    """A list/tuple override: "0,1,2", "(0, 1, 2)", "[0.1, 0.2]" or a sequence; elements take the
    type of the old elements (int, float, str) when the old value has any."""
    want = f"a comma-separated {type(old).__name__} like 0,1,2 or (0, 1, 2)"
    if isinstance(new, str):
        text = new.strip()
        if text.startswith(("(", "[")):
            import ast
            try:
                new = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ConfigError(f"config key {key!r}: expected {want}, got {new!r}") from None
            if not isinstance(new, (tuple, list)):
                new = [new]
        else:
            new = [part.strip() for part in text.split(",") if part.strip()] if text else []
    if not isinstance(new, (tuple, list)):
        raise ConfigError(f"config key {key!r}: expected {want}, got {new!r}")
    kinds = {type(v) for v in old}
    if len(kinds) == 1 and not isinstance(old[0], (list, tuple, dict)):
        return [_coerce(f"{key}[{i}]", old[0], v) for i, v in enumerate(new)]
    return list(new)


def _is_count(name: str) -> bool:
    return (name.startswith(("num_", "n_")) or name.endswith(("_size", "steps", "epochs", "_every", "_batch"))
            or name in ("chunk", "steps", "epochs", "batch", "batch_size", "minibatches", "group_size"))


def validate_value(key: str, old: Any, new: Any) -> None:
    """Range checks on an overridden value, by the key's name (one `ConfigError` naming the key):
    seeds non-empty and unique; learning rates finite and > 0; counts (num_*, n_*, *_size, *steps,
    *epochs, *_every, *_batch, chunk, batch; or any key under such a section, e.g. epochs.gmm) >= 1 when their
    default is >= 1; every float finite when its default is.
    A default of None (an unset `config_dict.placeholder`) counts as a finite count."""
    import math
    parts = key.split(".")
    name = parts[-1]
    if len(parts) > 1 and _is_count(parts[-2]) and not _is_count(name):
        name = parts[-2]             # a dict of counts, e.g. epochs.gmm: the parent names the kind
    if name == "seeds":
        seeds = list(new)
        if not seeds:
            raise ConfigError(f"config key {key!r}: expected at least one seed")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"config key {key!r}: expected unique seeds, got {seeds}")
        if any(not isinstance(x, int) or x < 0 for x in seeds):
            raise ConfigError(f"config key {key!r}: expected non-negative integer seeds, got {seeds}")
        return
    values = list(new) if isinstance(new, (list, tuple)) else [new]
    defaults = list(old) if isinstance(old, (list, tuple)) else [old]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v) and all(
                d is None or (isinstance(d, (int, float)) and math.isfinite(d)) for d in defaults):
            raise ConfigError(f"config key {key!r}: expected a finite number, got {v}")
        if (name in ("lr", "learning_rate") or name.endswith("_lr")) and not v > 0:
            raise ConfigError(f"config key {key!r}: expected a learning rate > 0, got {v}")
        if _is_count(name) and all(d is None or (isinstance(d, (int, float)) and d >= 1) for d in defaults) \
                and v < 1:
            raise ConfigError(f"config key {key!r}: expected a count >= 1, got {v}")
    if isinstance(new, (list, tuple)) and defaults and not values and _is_count(name):
        raise ConfigError(f"config key {key!r}: expected at least one value")


def load_config(path: str, size: str = "quick", overrides: dict[str, Any] | None = None
                ) -> ml_collections.ConfigDict:
    """Loads `get_config(size)` from a config file, applies dotted overrides and locks the result.

    Args:
      path: a Python file defining `get_config(size)`.
      size: "quick" or "full".
      overrides: {"a.b": value}; values may be strings (parsed to the existing type).
    Raises:
      ConfigError naming the file, size, key or value that is wrong.
    """
    check_size(size)
    module = _import_file(path)
    try:
        config = module.get_config(size)
    except ConfigError:
        raise
    except Exception as e:  # A bug in a config file still gets a one-line error naming the file.
        raise ConfigError(f"config file {path!r}: get_config({size!r}) failed: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"config file {path!r}: get_config must return a ConfigDict")
    config = ml_collections.ConfigDict(config)  # type-safe copy
    for key, value in (overrides or {}).items():
        old = _lookup(config, key)
        parent, leaf = (key.rsplit(".", 1) if "." in key else ("", key))
        node = config if not parent else _lookup(config, parent)
        if old is None:   # an unset typed placeholder: coerce to its declared type
            try:
                field_type = node.get_ref(leaf).get_type()
            except Exception:
                field_type = None
            if field_type in (bool, int, float, str) and value is not None:
                value = _coerce(key, field_type(), value)
        else:
            value = _coerce(key, old, value)
        validate_value(key, old, value)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:   # ml_collections' own type check (e.g. a typed placeholder)
            raise ConfigError(f"config key {key!r}: {e}") from None
    config.lock()
    return config


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def config_hash(config: ml_collections.ConfigDict | dict) -> str:
    """Stable 12-hex digest of the config (sorted JSON)."""
    d = config_to_dict(config) if isinstance(config, ml_collections.ConfigDict) else config
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
