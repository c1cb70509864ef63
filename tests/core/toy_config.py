"""Config of the toy experiment used by the core tests."""

import os

import ml_collections

from jaxlab.core.config import check_size


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    check_size(size)
    c = ml_collections.ConfigDict()
    c.seeds = (0, 1, 2)
    c.steps = 40 if size == "quick" else 400
    c.chunk = 5              # steps per jitted lax.scan chunk (and per checkpoint)
    c.lr = 0.05
    c.batch = 16
    c.dim = 4
    c.fail_at_step = -1      # simulate a crash after this step (tests only)
    c.sleep_per_chunk = float(os.environ.get("JAXLAB_TOY_SLEEP", 0.0))  # slows the loop so a test can kill it
    return c
