"""MI estimators on correlated Gaussians recover -1/2 log(1 - rho^2) within 10% (spec test 15)."""

import jax
import numpy as np
import pytest

from jaxlab.fusion.mi import dv_bound, estimate_mi, infonce_bound


def _gauss(rho, n=12000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    return z, rho * z + np.sqrt(1 - rho**2) * rng.normal(size=(n, 1))


@pytest.mark.parametrize("method,steps", [("infonce", 600), ("mine", 1500)])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_estimators_recover_gaussian_mi(method, steps, rho):
    z, y = _gauss(rho)
    r = estimate_mi(jax.random.PRNGKey(0), z[:4000], y[:4000], z[4000:], y[4000:], method=method, steps=steps,
                    n_boot=0, eval_batches=40)
    true = -0.5 * np.log(1 - rho**2)
    assert abs(r["mi"] - true) < 0.1 * true, (r, true)
    if method == "infonce":
        assert r["mi"] <= r["cap"] == pytest.approx(np.log(256))


def test_independent_inputs_give_zero_and_bootstrap_interval():
    z, y = _gauss(0.0, n=6000)
    r = estimate_mi(jax.random.PRNGKey(1), z[:3000], y[:3000], z[3000:], y[3000:], steps=300, n_boot=20)
    assert abs(r["mi"]) < 0.02 and r["lo"] <= r["hi"] and r["lo"] < 0.02


def test_bounds_closed_form_and_cap():
    # perfect critic scores: huge diagonal -> InfoNCE saturates at log N; constant scores -> both bounds 0
    n = 64
    s = np.where(np.eye(n), 50.0, 0.0)
    assert float(infonce_bound(s)) == pytest.approx(np.log(n), abs=1e-6)
    assert float(infonce_bound(np.zeros((n, n)))) == pytest.approx(0.0, abs=1e-6)
    assert float(dv_bound(np.zeros((n, n)))) == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        estimate_mi(jax.random.PRNGKey(0), np.zeros((300, 1)), np.zeros(300), np.zeros((300, 1)), np.zeros(300),
                    method="nwj")
    with pytest.raises(ValueError, match="same N"):
        estimate_mi(jax.random.PRNGKey(0), np.zeros((300, 1)), np.zeros(200), np.zeros((300, 1)), np.zeros(300))
