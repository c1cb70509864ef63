"""A cache of trained LM parameters keyed by a hash of the config that determines them.

Later experiments (KPO, Dr. MAS, G-PAC, ARS, AgentOCR) call `load_or_train(config, seed)` with the
same SFT config and get the stored parameters instead of retraining. Location:
`$JAXLAB_CACHE_DIR/models` (default `~/.cache/jaxlab/models`), one folder per (hash, seed):
`lm_<hash>_s<seed>/` holding an orbax checkpoint (`ckpt/`) and `info.json` (written last, so a
folder without it is incomplete and is trained again; training itself resumes from `ckpt/`).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import jax
import ml_collections

from jaxlab.core.config import config_hash
from jaxlab.core.metrics import read_json, write_json_atomic
from jaxlab.lm.model import init
from jaxlab.lm.train import make_train, model_config

# Config sections that determine the trained parameters (not evaluation or device count).
KEY_SECTIONS = ("model", "data", "optim")
KEY_TRAIN_FIELDS = ("target_acc", "target_family", "target_mode", "eval_n", "eval_every")


def cache_root() -> str:
    base = os.environ.get("JAXLAB_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxlab"))
    return os.path.join(base, "models")


def model_key(config: ml_collections.ConfigDict, seed: int) -> str:
    """'lm_<12-hex hash of model/data/optim and early-stopping fields>_s<seed>'."""
    d = {k: config[k].to_dict() for k in KEY_SECTIONS}
    d["train"] = {k: config.train[k] for k in KEY_TRAIN_FIELDS}
    return f"lm_{config_hash(d)}_s{int(seed)}"


def load(config: ml_collections.ConfigDict, seed: int, *, root: Optional[str] = None):
    """Returns (params, info) from the cache, or None if absent or incomplete."""
    folder = os.path.join(root or cache_root(), model_key(config, seed))
    if not os.path.exists(os.path.join(folder, "info.json")):
        return None
    from jaxlab.core.checkpoint import Checkpointer
    target = init(jax.random.PRNGKey(0), model_config(config))
    ckpt = Checkpointer(os.path.join(folder, "params"), save_every=1, keep=1)
    _, params = ckpt.restore(target)
    ckpt.close()
    return params, read_json(os.path.join(folder, "info.json"))


def load_or_train(config: ml_collections.ConfigDict, seed: int, *, root: Optional[str] = None,
                  eval_fn: Optional[Callable] = None, log_fn: Optional[Callable] = None,
                  use_cache: bool = True):
    """Loads params for (config, seed) or trains them with `make_train(config)` and stores them.

    Returns (params, info) where info has the training history, the cache key and `cached`
    (whether the params came from the cache).
    """
    key = model_key(config, seed)
    folder = os.path.join(root or cache_root(), key)
    if use_cache:
        hit = load(config, seed, root=root)
        if hit is not None:
            params, info = hit
            return params, {**info, "cached": True}
    train = make_train(config, ckpt_dir=os.path.join(folder, "ckpt") if use_cache else None,
                       eval_fn=eval_fn, log_fn=log_fn)
    params, hist = train(jax.random.PRNGKey(seed))
    info = {"key": key, "seed": int(seed), "history": hist, "config": config.to_dict()}
    if use_cache:
        from jaxlab.core.checkpoint import Checkpointer
        ckpt = Checkpointer(os.path.join(folder, "params"), save_every=1, keep=1)
        ckpt.maybe_save(int(hist["steps_done"]), params, force=True)
        ckpt.close()
        write_json_atomic(os.path.join(folder, "info.json"), info)
    return params, {**info, "cached": False}
