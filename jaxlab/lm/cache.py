"""A cache of trained LM parameters keyed by a hash of the config that determines them.

Later experiments (KPO, Dr. MAS, G-PAC, ARS, AgentOCR) call `load_or_train(sft_spec(config), seed)` with the
same SFT config and get the stored parameters instead of retraining (the functions here take the typed
`train.SFTSpec`; `sft_spec` is the experiment's one conversion of its lm_sft ConfigDict). Location:
`$JAXLAB_CACHE_DIR/models` (default `~/.cache/jaxlab/models`), one folder per (hash, seed):
`lm_<hash>_s<seed>/` holding an orbax checkpoint (`ckpt/`) and `info.json` (written last, so a
folder without it is incomplete and is trained again; training itself resumes from `ckpt/`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Optional

import json

import jax

from jaxlab.core.config import config_hash
from jaxlab.core.metrics import read_json, write_json_atomic
from jaxlab.lm.model import init
from jaxlab.core.loop import check_params_finite
from jaxlab.lm.train import KEY_SECTIONS, KEY_TRAIN_FIELDS, SFTSpec, check_spec, make_train  # noqa: F401


def cache_root() -> str:
    base = os.environ.get("JAXLAB_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxlab"))
    return os.path.join(base, "models")


def rows_digest(rows) -> str:
    """16-hex blake2b digest of (prompt, completion) text rows (order-sensitive)."""
    h = hashlib.blake2b(digest_size=8)
    for pr, co in rows:
        h.update(pr.encode())
        h.update(b"\x00")
        h.update(co.encode())
        h.update(b"\x01")
    return h.hexdigest()


def model_key(spec: SFTSpec, seed: int, *, recipe: Optional[dict] = None) -> str:
    """'lm_<12-hex hash of model/data/optim and early-stopping fields>_s<seed>' (`spec.key_material`).

    recipe: optional JSON-able description of custom SFT data (rows, warm start); it enters the
    hash, so a model SFT'd on custom rows never shares the stock model's key. None keeps the stock
    key unchanged.
    """
    check_spec(spec)
    d = json.loads(spec.key_material)
    if recipe is not None:
        d["recipe"] = recipe
    return f"lm_{config_hash(d)}_s{int(seed)}"


def _recipe(rows, recipe, init_key):
    if rows is None:
        if recipe is not None or init_key is not None:
            raise ValueError("recipe: only used together with rows")
        return None
    if recipe is None:
        raise ValueError("recipe: custom SFT rows need a JSON-able recipe dict for the cache key")
    return {**dict(recipe), "rows_digest": rows_digest(rows), "n_rows": len(rows),
            "init": init_key}


def load(spec: SFTSpec, seed: int, *, root: Optional[str] = None,
         rows=None, recipe: Optional[dict] = None, init_key: Optional[str] = None):
    """Returns (params, info) from the cache, or None if absent or incomplete.

    Raises ValueError naming the folder when the stored parameters are not finite (a model cached before
    training checked for NaN): such an entry is never used."""
    folder = os.path.join(root or cache_root(),
                          model_key(spec, seed, recipe=_recipe(rows, recipe, init_key)))
    if not os.path.exists(os.path.join(folder, "info.json")):
        return None
    from jaxlab.core.checkpoint import Checkpointer
    target = init(jax.random.PRNGKey(0), spec.model)
    ckpt = Checkpointer(os.path.join(folder, "params"), save_every=1, keep=1)
    _, params = ckpt.restore(target)
    ckpt.close()
    try:
        check_params_finite(params, step=0)
    except ValueError:
        raise ValueError(f"model cache entry {folder!r} holds non-finite parameters; delete that folder "
                         f"and run again to retrain it") from None
    return params, read_json(os.path.join(folder, "info.json"))


def load_or_train(spec: SFTSpec, seed: int, *, root: Optional[str] = None,
                  eval_fn: Optional[Callable] = None, log_fn: Optional[Callable] = None,
                  use_cache: bool = True, rows=None, recipe: Optional[dict] = None,
                  init_params=None, init_key: Optional[str] = None, progress: bool | str = True):
    """Loads params for (spec, seed) or trains them with `make_train(spec)` and stores them.

    Custom SFT data: `rows` ((prompt, completion) text pairs) with a JSON-able `recipe` (required)
    and optionally warm-start `init_params` named by `init_key` (e.g. the stock model's cache key).
    The recipe, a digest of the rows and init_key enter the cache key, so such a model is stored
    apart from the stock model of the same config.

    Training prints progress with rate and ETA (`progress`: True, False or a description).
    A NaN/inf loss or parameter stops training with NonFiniteError (a ValueError naming the step and the
    quantity) before anything is checkpointed or cached.

    Returns (params, info) where info has the training history, the cache key and `cached`
    (whether the params came from the cache).
    """
    if init_params is not None and init_key is None:
        raise ValueError("init_key: warm-start init_params need a name (init_key) for the cache key")
    rec = _recipe(rows, recipe, init_key)
    key = model_key(spec, seed, recipe=rec)
    folder = os.path.join(root or cache_root(), key)
    if use_cache:
        hit = load(spec, seed, root=root, rows=rows, recipe=recipe, init_key=init_key)
        if hit is not None:
            params, info = hit
            return params, {**info, "cached": True}
    train = make_train(spec, ckpt_dir=os.path.join(folder, "ckpt") if use_cache else None,
                       eval_fn=eval_fn, log_fn=log_fn, rows=rows, init_params=init_params,
                       progress=f"sft {key}" if progress is True else progress)
    params, hist = train(jax.random.PRNGKey(seed))   # raises NonFiniteError on a NaN loss or NaN params
    check_params_finite(params, step=int(hist["steps_done"]))
    info = {"key": key, "seed": int(seed), "history": hist, "config": json.loads(spec.key_material)}
    if rec is not None:
        info["recipe"] = rec
    if use_cache:
        from jaxlab.core.checkpoint import Checkpointer
        ckpt = Checkpointer(os.path.join(folder, "params"), save_every=1, keep=1)
        ckpt.maybe_save(int(hist["steps_done"]), params, force=True)
        ckpt.close()
        write_json_atomic(os.path.join(folder, "info.json"), info)
    return params, {**info, "cached": False}
