"""experiments/robust_trading.py: the GAN and trader loops resume from per-chunk checkpoints stamped with the
config hash (a killed run ends where an uninterrupted one does; another config is refused)."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import robust_trading as E


def _chunk(state, i):
    new = {"w": state["w"] * 0.5 + i, "n": state["n"] + 1}
    return new, {"loss": jnp.asarray([float(i), 2.0 * i])}


def _cfg(lr=0.1):
    return ml_collections.ConfigDict({"lr": lr, "seeds": [0, 1]})


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    s0 = {"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}
    ref, ref_hist = E.resumable_chunks(str(tmp_path / "a"), _cfg(), s0, 5, _chunk)
    seen = []

    def dies_at_3(state, i):
        if i == 3:
            raise KeyboardInterrupt
        return _chunk(state, i)
    with pytest.raises(KeyboardInterrupt):
        E.resumable_chunks(str(tmp_path / "b"), _cfg(), s0, 5, dies_at_3)
    starts = []
    out, hist = E.resumable_chunks(str(tmp_path / "b"), _cfg(), s0, 5, _chunk,
                                   on_chunk=lambda i, m: seen.append(i), on_start=starts.append)
    assert starts == [3] and seen == [3, 4]                   # only the missing chunks are computed
    np.testing.assert_array_equal(out["w"], ref["w"])
    assert int(out["n"]) == 5 and hist == ref_hist and hist[4] == {"loss": [4.0, 8.0]}
    # a finished run is read back without recomputing anything
    again, _ = E.resumable_chunks(str(tmp_path / "b"), _cfg(), s0, 5, lambda s, i: pytest.fail("recomputed"))
    np.testing.assert_array_equal(again["w"], ref["w"])


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    s0 = {"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}
    E.resumable_chunks(str(tmp_path / "c"), _cfg(0.1), s0, 2, _chunk)
    with pytest.raises(ValueError, match="another config"):
        E.resumable_chunks(str(tmp_path / "c"), _cfg(0.2), s0, 2, _chunk)


def test_without_a_checkpoint_dir_every_chunk_runs():
    s0 = {"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}
    out, hist = E.resumable_chunks(None, _cfg(), s0, 3, _chunk)
    assert int(out["n"]) == 3 and len(hist) == 3
