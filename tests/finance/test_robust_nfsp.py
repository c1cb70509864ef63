"""NFSP pieces: reservoir uniformity, exploitability closed forms, self-play on matching pennies / RPS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxlab.finance import nfsp as N


def test_reservoir_inclusion_is_uniform_chi2():
    cap, n, reps = 10, 50, 2000

    def one(key):
        res = N.reservoir_init(cap, jnp.zeros((), jnp.int32))

        def body(r, inp):
            i, k = inp
            return N.reservoir_add(r, i, k), None
        res, _ = jax.lax.scan(body, res, (jnp.arange(n, dtype=jnp.int32), jax.random.split(key, n)))
        return res.data
    held = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), reps)))
    counts = np.bincount(held.reshape(-1), minlength=n)
    assert counts.sum() == reps * cap
    assert stats.chisquare(counts).pvalue > 1e-3
    # every item once -> the first `cap` items fill the buffer in order
    assert (held[:, :].min() >= 0) and held.shape == (reps, cap)


def test_reservoir_invalid_items_are_skipped():
    res = N.reservoir_init(4, jnp.zeros(()))
    res = N.reservoir_add(res, jnp.ones(()), jax.random.PRNGKey(0), valid=False)
    assert int(res.count) == 0 and float(res.data.sum()) == 0.0
    with pytest.raises(ValueError, match="capacity"):
        N.reservoir_init(0, jnp.zeros(()))


def test_exploitability_closed_forms():
    mp, rps = N.MATCHING_PENNIES, N.ROCK_PAPER_SCISSORS
    assert float(N.exploitability(mp, jnp.ones(2) / 2, jnp.ones(2) / 2)) == pytest.approx(0.0, abs=1e-7)
    assert float(N.exploitability(mp, jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]))) == pytest.approx(1.0)
    assert float(N.exploitability(rps, jnp.ones(3) / 3, jnp.ones(3) / 3)) == pytest.approx(0.0, abs=1e-7)
    assert float(N.exploitability(rps, jnp.array([1.0, 0, 0]), jnp.array([1.0, 0, 0]))) == pytest.approx(1.0)


@pytest.mark.parametrize("game", ["matching_pennies", "rps"])
def test_nfsp_average_policy_exploitability_falls_while_best_response_cycles(game):
    A = {"matching_pennies": N.MATCHING_PENNIES, "rps": N.ROCK_PAPER_SCISSORS}[game]
    _, h = jax.jit(lambda k: N.nfsp_matrix_game(A, k, iters=20000))(jax.random.PRNGKey(0))
    e = np.asarray(h["exploitability"])
    assert e[0] > 0.5
    assert e[-1] < 0.1
    switches = int((np.diff(np.asarray(h["br_action"])) != 0).sum())
    assert switches >= 5                                  # the best response cycles
    assert float(np.asarray(h["br_exploitability"]).mean()) > 0.5


def test_game_trainer_under_loop_run_with_a_resume_matches_nfsp_matrix_game(tmp_path):
    """`nfsp_matrix_game` is `game_trainer`'s step scanned: `loop.run` in chunks of 250 plays (killed after 500,
    resumed from its checkpoint to 1000) ends in the same state, and its per-play history holds the logged values."""
    from jaxlab.core import loop
    A, key = N.ROCK_PAPER_SCISSORS, jax.random.PRNGKey(0)
    st_ref, h = jax.jit(lambda k: N.nfsp_matrix_game(A, k, iters=1000, log_every=250))(key)
    trainer = N.game_trainer(N.GameNFSPHParams(), num_actions=A.shape, iters=1000)
    data, ckpt = jnp.asarray(A, jnp.float32), str(tmp_path / "ckpt")
    loop.run(trainer, key, steps=500, chunk=250, data=data, ckpt_dir=ckpt, progress=False)
    st, hist = loop.run(trainer, key, steps=1000, chunk=250, data=data, ckpt_dir=ckpt, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(st), jax.tree_util.tree_leaves(st_ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(hist["exploitability"], np.float32)[249::250],
                                  np.asarray(h["exploitability"])[1:])
    assert hist["br_action"][249::250] == np.asarray(h["br_action"]).tolist()
