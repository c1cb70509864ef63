"""experiments/robust_trading.py: the GAN and trader loops resume from per-chunk checkpoints stamped with the
config hash (a killed run ends where an uninterrupted one does; another config is refused)."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxlab.core import loop
from jaxlab.core.config import config_hash


def _chunk(state, i):
    new = {"w": state["w"] * 0.5 + i, "n": state["n"] + 1}
    return new, {"loss": jnp.asarray([float(i), 2.0 * i])}


def _cfg(lr=0.1):
    return ml_collections.ConfigDict({"lr": lr, "seeds": [0, 1]})


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    s0 = {"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}
    ref, ref_hist = loop.resumable_chunks(str(tmp_path / "a"), config_hash(_cfg()), s0, 5, _chunk)
    seen = []

    def dies_at_3(state, i):
        if i == 3:
            raise KeyboardInterrupt
        return _chunk(state, i)
    with pytest.raises(KeyboardInterrupt):
        loop.resumable_chunks(str(tmp_path / "b"), config_hash(_cfg()), s0, 5, dies_at_3)
    starts = []
    out, hist = loop.resumable_chunks(str(tmp_path / "b"), config_hash(_cfg()), s0, 5, _chunk,
                                   on_chunk=lambda i, m: seen.append(i), on_start=starts.append)
    assert starts == [3] and seen == [3, 4]                   # only the missing chunks are computed
    np.testing.assert_array_equal(out["w"], ref["w"])
    assert int(out["n"]) == 5 and hist == ref_hist and hist[4] == {"loss": [4.0, 8.0]}
    # a finished run is read back without recomputing anything
    again, _ = loop.resumable_chunks(str(tmp_path / "b"), config_hash(_cfg()), s0, 5, lambda s, i: pytest.fail("recomputed"))
    np.testing.assert_array_equal(again["w"], ref["w"])


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    s0 = {"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}
    loop.resumable_chunks(str(tmp_path / "c"), config_hash(_cfg(0.1)), s0, 2, _chunk)
    with pytest.raises(ValueError, match="another config"):
        loop.resumable_chunks(str(tmp_path / "c"), config_hash(_cfg(0.2)), s0, 2, _chunk)


def test_without_a_checkpoint_dir_every_chunk_runs():
    s0 = {"w": jnp.ones(3), "n": jnp.zeros((), jnp.int32)}
    out, hist = loop.resumable_chunks(None, config_hash(_cfg()), s0, 3, _chunk)
    assert int(out["n"]) == 3 and len(hist) == 3


def test_worlds_splits_and_claim_ids():
    from experiments import robust_trading as E
    from experiments.configs.robust_trading import get_config
    c = get_config("full")
    assert c.worlds == ["synthetic", "sp500"] and "dqn_advobs" in c.arms
    w, n_train, n_val_end = E.load_world(c, "sp500")
    d = w.panel.dates
    assert (str(d[n_train - 1]), str(d[n_val_end - 1]), str(d[n_val_end])) == ("2006-12-29", "2007-12-31", "2008-01-02")
    with pytest.raises(ValueError, match="worlds"):
        E.load_world(c, "moon")
    # claims: ids prefixed outside the synthetic world; no ground-truth GAN claim on real data
    seeds = [0, 1, 2]
    arms = list(c.arms)
    met = {"sharpe_252": 0.0, "mdd": 0.1}
    res = {sp: {(s, a): dict(met, sharpe_252=float(s + (a == "ours"))) for s in seeds for a in arms}
           for sp in ("test", "stress")}
    robust = {(s, a, e): 0.0 for s in seeds for a in arms for e in (0.0, 0.3)}
    c.seeds = seeds
    wr = {"name": "sp500", "res": res, "robust": robust, "true_ratio": None, "cond": [(1.0, 1.0)] * 3}
    ids = [x["id"] for x in E.world_claims(c, wr)]
    assert all(i.startswith("sp500_") for i in ids) and "sp500_stress_macro_volatility" not in ids
    assert {"sp500_stress_sharpe", "sp500_stress_sharpe_vs_robust_baselines", "sp500_ablations_stress_sharpe"} <= set(ids)
    by = {x["id"]: x for x in E.world_claims(c, wr)}
    assert by["sp500_stress_sharpe"]["verdict"] == "reproduced"          # ours = dqn + 1 on every seed (paired)
    assert [b["method"] for b in by["sp500_stress_sharpe_vs_robust_baselines"]["baselines"]] == ["dqn_noise", "dqn_advobs"]
    wr.update(name="synthetic", true_ratio=3.0)
    assert "stress_macro_volatility" in [x["id"] for x in E.world_claims(c, wr)]
