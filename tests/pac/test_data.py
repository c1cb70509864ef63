"""Synthetic population: exact curves agree with Monte Carlo; the tfds builder stores the direct arrays."""

import jax
import numpy as np
import pytest

from jaxlab.pac import data


def test_curves_match_monte_carlo():
    spec = data.PopulationSpec()
    cv = data.population_curves(spec)
    n = 200_000
    d = jax.device_get(data.sample(jax.random.PRNGKey(0), spec, n))
    for u in (0.2, 0.4, 0.7):
        for g in range(spec.num_groups):
            sel = d["groups"] == g
            z = d["losses"][sel] * (d["scores"][sel] < u)
            se = z.std() / np.sqrt(sel.sum()) + 1e-4
            assert abs(z.mean() - np.interp(u, cv.grid, cv.risk_g[g])) < 4 * se
            f = (d["scores"][sel] < u).mean()
            assert abs(f - np.interp(u, cv.grid, cv.routed_g[g])) < 0.01
    assert np.all(np.diff(cv.risk_g, axis=1) >= -1e-12)          # R_g non-decreasing


def test_bad_spec():
    with pytest.raises(ValueError, match="weights"):
        data.check_spec(data.PopulationSpec(weights=(0.5, 0.5, 0.5, 0.5)))
    with pytest.raises(ValueError, match="slope"):
        data.check_spec(data.PopulationSpec(slope=(1.0,)))


def test_tfds_builder_equals_direct(tmp_path):
    direct = data.load_synthetic(source="direct", config="tiny")
    built = data.load_synthetic(source="tfds", config="tiny", data_dir=str(tmp_path))
    for split in ("calibration", "test"):
        for k in ("scores", "losses", "groups", "emb", "index"):
            np.testing.assert_allclose(built[split][k], direct[split][k], rtol=1e-6)
    with pytest.raises(ValueError, match="source"):
        data.load_synthetic(source="web")
