"""experiments/ars.py: configs load (quick and full), the candidate list parses, and (slow) the summary
builder turns per-seed analyses of synthetic data into claims with code-computed verdicts."""

import numpy as np
import pytest

from jaxlab.core.config import load_config

import experiments.ars as X


@pytest.mark.parametrize("size", ["quick", "full"])
def test_config_loads_and_is_consistent(size):
    c = load_config("experiments/configs/ars.py", size)
    assert len(c.seeds) >= 3
    cands = X._candidates(c.task.candidates)
    assert all(isinstance(f, str) and d >= 1 for f, d in cands) and len(cands) >= 2
    assert len(c.cf.rho_grid) >= 3 and sorted(c.cf.rho_grid) == list(c.cf.rho_grid)
    lm_c = load_config(c.lm.config, c.lm.size)
    assert max(c.head.k_grid) <= lm_c.model.d_model and 0 <= c.cf.mid_layer < lm_c.model.num_layers
    n_train = c.data.n_problems - round(c.data.test_frac * c.data.n_problems) - c.data.n_val
    assert n_train >= 100
    hps = X._hps(c)
    assert len(hps) == len(c.head.k_grid) * len(c.head.tau_grid)


@pytest.mark.slow
def test_build_summary_on_synthetic_records(tmp_path):
    from tests.ars.test_evaluate import _bundle
    from jaxlab.ars import evaluate as E
    from jaxlab.ars.losses import ARSHParams
    rng = np.random.default_rng(0)
    b, cf_main, cf_pos = _bundle(rng)
    cf_main[3.0] = cf_main[2.0]
    recs = [E.analyse_seed(b, cf_main, lambda rho, rows: cf_pos, s, hps=[ARSHParams(k=4, tau=0.2, epochs=4, batch_size=32)],
                           epochs_grid=[4], opts=E.DetOpts(n_low_labels=30, ccs_restarts=2, halo_kmax=3),
                           test_frac=0.25, n_val=30) for s in (0, 1, 2)]
    task = {"family": "addsub", "digits": 2, "accs": [{"family": "addsub", "digits": 2, "acc": 0.5}]}
    s = X.build_summary(recs, [0, 1, 2], task, {"acc": float(b.y.mean())}, str(tmp_path))
    ids = {c["id"] for c in s["claims"]}
    assert {"shaped_beats_raw", "shaped_beats_controls", "boundary_beats_positions", "chosen_rho_beats_extremes",
            "disagreement_grows_with_rho", "raw_probe_above_chance"} <= ids
    assert all(c["verdict"] in ("reproduced", "not reproduced", "mixed", "untestable here") for c in s["claims"])
    assert (tmp_path / "figures" / "detectors.png").exists() and s["headline"]
