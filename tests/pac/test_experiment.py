"""experiments/gpac.py: claims are computed from the per-seed results (no LM, no jit here)."""

import numpy as np

from experiments import gpac as exp
from experiments.configs.gpac import get_config


def _fake(viol_marg_hard, G=3, S=3):
    per_seed = []
    for s in range(S):
        r = {}
        for m in exp.METHODS:
            viol_g = [0.05, 0.06, 0.07]
            if m in ("marginal", "naive"):
                viol_g = [0.0, 0.0, viol_marg_hard]
            r[m] = {"viol_g": viol_g, "risk_g": [0.01] * G, "routed_g": [0.5] * G, "viol_pooled": 0.08,
                    "risk": 0.02, "routed": 0.5, "saved": 0.4 + 0.01 * s, "net_saved": 0.3,
                    "viol_worst_group": max(viol_g), "viol_worst_cluster": 0.06, "viol_any_group": 0.05}
        r["naive"]["viol_pooled"] = 0.5
        per_seed.append(r)
    return per_seed


def test_claims_from_results_and_untestable_without_heterogeneity():
    config = get_config("quick")
    names = {"synthetic": ["a", "b", "c"], "lm": ["x", "y", "z"]}
    results = {("synthetic", 0.05): _fake(0.9), ("lm", 0.05): _fake(0.1)}
    claims = {c["id"]: c for c in exp._claims(config, results, names)}
    assert claims["synthetic_marginal_fails_group"]["verdict"] == "reproduced"
    assert claims["synthetic_gpac_vs_marginal"]["verdict"] == "reproduced"
    assert claims["synthetic_gpac_valid"]["verdict"] == "reproduced"
    assert claims["lm_marginal_fails_group"]["verdict"] == "untestable here"
    assert "lm_gpac_vs_marginal" not in claims
    assert claims["synthetic_naive_violates"]["block"] == "sanity"
    assert all(c["block"] in ("paper", "sanity") for c in claims.values())
    tables = exp._tables(results, names)
    assert len(tables["main"]) == 2 * len(exp.METHODS) and len(tables["groups"]) == 2 * len(exp.METHODS) * 3


def test_projection_standardises():
    x = np.random.default_rng(0).normal(size=(200, 16)) * np.arange(1, 17)
    z = exp.project(x, 4)
    assert z.shape == (200, 4) and np.allclose(z.std(0), 1, atol=1e-3) and np.allclose(z.mean(0), 0, atol=1e-5)
