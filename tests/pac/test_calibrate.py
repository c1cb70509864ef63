"""Calibration: the first-failure scan, end-to-end PAC validity on the synthetic population (marginal,
naive, G-PAC, Bonferroni), edge cases, IPS unbiasedness, the efficiency instance, C-PAC, bad input."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from jaxlab.pac import bounds, calibrate as cal, data

EPS, ALPHA = 0.05, 0.1
REPS, N_CAL = 2000, 400
SE = np.sqrt(ALPHA * (1 - ALPHA) / REPS)
P = cal.PACParams(eps=EPS, alpha=ALPHA, bound="cp")


def test_scan_stops_at_first_failure_even_if_later_passes():
    cands = jnp.array([-jnp.inf, 0.1, 0.2, 0.3, 0.4, 0.5, jnp.inf])
    ucb = jnp.array([0.0, 0.01, 0.02, 0.2, 0.01, 0.01, 0.01])        # a non-monotone (CLT-like) UCB
    u, n_pass = cal.first_failure_scan(ucb, cands, EPS)
    assert float(u) == pytest.approx(0.2) and int(n_pass) == 2
    # "largest u whose UCB passes" would have picked +inf
    assert float(cands[np.flatnonzero(np.asarray(ucb) <= EPS).max()]) == np.inf
    u_all, _ = cal.first_failure_scan(jnp.zeros(7), cands, EPS)
    assert float(u_all) == np.inf


def test_empirical_risk_and_ucb_monotone_over_candidates():
    d = data.sample(jax.random.PRNGKey(3), data.PopulationSpec(), 300)
    c = cal.sorted_candidates(d["scores"])
    s1, _, n = cal.cumulative_sums(d["scores"], d["losses"], jnp.ones(300), c)
    ref = np.array([(np.asarray(d["losses"]) * (np.asarray(d["scores"]) < u)).sum() for u in np.asarray(c)])
    np.testing.assert_allclose(np.asarray(s1), ref)
    assert np.all(np.diff(np.asarray(s1)) >= 0) and float(n) == 300
    for b in ("cp", "hoeffding", "hb"):
        u = np.asarray(cal.ucb_curve(d["scores"], d["losses"], jnp.ones(300), c, bound=b, alpha=ALPHA))
        assert np.all(np.diff(u) >= -1e-6), b


def test_fast_cp_pass_equals_bisection_ucb():
    """Two implementations: the exact k_max table vs clopper_pearson_ucb(k, n) <= eps."""
    d = data.sample(jax.random.PRNGKey(4), data.PopulationSpec(), 250)
    c = cal.sorted_candidates(d["scores"])
    w = jnp.ones(250)
    ucb_cp = np.asarray(cal.ucb_curve(d["scores"], d["losses"], w, c, bound="cp", alpha=ALPHA))
    ucb_hb = np.asarray(cal.ucb_curve(d["scores"], d["losses"], w, c, bound="hb", alpha=ALPHA))
    for eps in (0.02, 0.05, 0.2):
        fast = np.asarray(cal.pass_curve(d["scores"], d["losses"], w, c, params=P._replace(eps=eps)))
        slow = ucb_cp <= eps
        assert (fast == slow).mean() == 1.0
        fast_hb = np.asarray(cal.pass_curve(d["scores"], d["losses"], w, c,
                                            params=P._replace(eps=eps, bound="hb")))
        slow_hb = ucb_hb <= eps
        assert (fast_hb != slow_hb).sum() <= 1          # bisection round-off at the boundary only


@pytest.fixture(scope="module")
def synthetic_runs():
    spec = data.PopulationSpec()
    curves = data.population_curves(spec)

    def one(key):
        d = data.sample(key, spec, N_CAL)
        c = cal.sorted_candidates(d["scores"])
        w = jnp.ones(N_CAL)
        kr, kt, ki = jax.random.split(jax.random.fold_in(key, 7), 3)
        lab = cal.random_partition(kr, N_CAL, num_clusters=4)
        rnd = cal.cpac_random_thresholds(kt, lab, d["scores"], d["losses"], w, c, num_clusters=4, params=P)
        return {"marginal": cal.pac_threshold(d["scores"], d["losses"], w, c, params=P),
                "naive_group": cal.naive_group_thresholds(d["scores"], d["losses"], d["groups"], w, c,
                                                          num_groups=4, eps=EPS),
                "ips": cal.ips_threshold(ki, d["scores"], d["losses"], 0.5, c, eps=EPS, alpha=ALPHA,
                                         bound="cp")[0],
                "random": rnd.thresholds,
                "random_disjoint": jnp.all((rnd.w_cluster * rnd.w_calib == 0) & (rnd.w_cluster + rnd.w_calib == 1)),
                "random_n2": rnd.w_calib.sum(),
                "naive": cal.naive_threshold(d["scores"], d["losses"], w, c, eps=EPS),
                "gpac": cal.group_thresholds(d["scores"], d["losses"], d["groups"], w, c, num_groups=4, params=P),
                "bonf": cal.group_thresholds(d["scores"], d["losses"], d["groups"], w, c, num_groups=4,
                                             params=P._replace(bonferroni=True))}
    out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), REPS))
    return curves, jax.device_get(out)


def _risk(curves, g, u):
    curve = curves.risk if g is None else curves.risk_g[g]
    return np.asarray(data.curve_at(curves.grid, curve, u))


def test_marginal_pac_valid_and_naive_violates(synthetic_runs):
    curves, out = synthetic_runs
    v_marg = (_risk(curves, None, out["marginal"]) > EPS).mean()
    v_naive = (_risk(curves, None, out["naive"]) > EPS).mean()
    assert v_marg <= ALPHA + 3 * SE, v_marg
    assert v_naive >= 0.3, v_naive                      # the test has power


def test_gpac_holds_every_group_while_marginal_fails_hard_group(synthetic_runs):
    curves, out = synthetic_runs
    viol_g = [(_risk(curves, g, out["gpac"][:, g]) > EPS).mean() for g in range(4)]
    assert max(viol_g) <= ALPHA + 3 * SE, viol_g
    hard = 3
    assert (_risk(curves, hard, out["marginal"]) > EPS).mean() > 2 * ALPHA
    # Bonferroni: simultaneous over groups at alpha
    any_viol = np.zeros(REPS, bool)
    for g in range(4):
        any_viol |= _risk(curves, g, out["bonf"][:, g]) > EPS
    assert any_viol.mean() <= ALPHA + 3 * SE
    assert np.all(out["bonf"] <= out["gpac"])           # alpha/G is more conservative


def test_naive_per_group_violates_where_gpac_holds(synthetic_runs):
    """Spec B4 naive per-group baseline: no UCB -> some group violated often (the G-PAC test has power)."""
    curves, out = synthetic_runs
    viol = [(_risk(curves, g, out["naive_group"][:, g]) > EPS).mean() for g in range(4)]
    assert max(viol) >= 0.3, viol
    assert np.all(out["naive_group"] >= out["gpac"])    # CP-UCB >= mean: the naive scan never stops earlier


def test_ips_label_saving_valid(synthetic_runs):
    """IPS with pi = 0.5 (half the calibration draws labelled): pooled risk still controlled."""
    curves, out = synthetic_runs
    v_ips = (_risk(curves, None, out["ips"]) > EPS).mean()
    assert v_ips <= ALPHA + 3 * SE, v_ips


def test_cpac_random_clusters_valid_per_cluster_but_fail_hard_group(synthetic_runs):
    """Random clusters are independent of the data, so each cluster's risk curve IS the pooled curve R(u):
    per-cluster validity is exact to check; the hard true group (routed by cluster thresholds) is not held."""
    curves, out = synthetic_runs
    assert bool(np.all(out["random_disjoint"])) and 0.6 < out["random_n2"].mean() / N_CAL < 0.8
    thr = out["random"]                                                      # [REPS, 4]
    viol_m = [(_risk(curves, None, thr[:, m]) > EPS).mean() for m in range(4)]
    assert max(viol_m) <= ALPHA + 3 * SE, viol_m
    hard = np.mean([_risk(curves, 3, thr[:, m]) for m in range(4)], axis=0)  # uniform random clusters
    assert (hard > EPS).mean() > 2 * ALPHA
    lab = np.asarray(cal.random_partition(jax.random.PRNGKey(0), 40_000, num_clusters=4))
    assert np.all(np.abs(np.bincount(lab, minlength=4) / 40_000 - 0.25) < 0.01)


def test_edge_cases(caplog):
    rng = np.random.default_rng(0)
    s = rng.random(200).astype(np.float32)
    l = (rng.random(200) < 0.02).astype(np.float32)
    groups = np.zeros(200, np.int32)                      # group 1 empty
    with caplog.at_level(logging.WARNING):
        u = cal.calibrate_groups(s, l, groups, num_groups=2, params=P)
    assert u[1] == -np.inf and "always thinks" in caplog.text
    assert not np.asarray(cal.route(jnp.asarray(s), jnp.ones(200, jnp.int32), jnp.asarray(u))).any()
    assert cal.calibrate_marginal(s, l, params=P._replace(eps=1.0)) == np.inf
    need = cal.min_n_for_routing(EPS, ALPHA)
    assert need == 45 and (1 - EPS) ** need <= ALPHA < (1 - EPS) ** (need - 1)
    zeros = np.zeros(need, np.float32)
    assert cal.calibrate_marginal(rng.random(need), zeros, params=P) == np.inf
    assert cal.calibrate_marginal(rng.random(need - 1), zeros[1:], params=P) == -np.inf


def test_ips_unbiased():
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.random(300), jnp.float32)
    l = jnp.asarray((rng.random(300) < s * 0.3), jnp.float32)
    pi = jnp.asarray(0.1 + 0.5 * rng.random(300), jnp.float32)
    us = jnp.array([0.2, 0.5, 0.9])
    keys = jax.random.split(jax.random.PRNGKey(2), 10_000)
    z = jax.vmap(lambda k: cal.ips_losses(k, l, pi)[0])(keys)                 # [R, n]
    zu = np.asarray(jnp.mean(z[:, None, :] * (s[None, None, :] < us[None, :, None]), axis=-1))  # [R, 3]
    target = np.asarray(jnp.mean(l[None] * (s[None] < us[:, None]), axis=-1))
    se = zu.std(0) / np.sqrt(zu.shape[0])
    assert np.all(np.abs(zu.mean(0) - target) <= 3 * se), (zu.mean(0), target, se)


def test_ips_with_full_labels_equals_plain_scan():
    rng = np.random.default_rng(2)
    s = jnp.asarray(rng.random(500), jnp.float32)
    l = jnp.asarray(rng.random(500) < 0.5 * s, jnp.float32)
    c = cal.sorted_candidates(s)
    u_ips, xi = cal.ips_threshold(jax.random.PRNGKey(0), s, l, 1.0, c, eps=0.1, alpha=ALPHA, bound="hoeffding")
    u = cal.pac_threshold(s, l, jnp.ones(500), c, params=cal.PACParams(0.1, ALPHA, "hoeffding"))
    assert bool(xi.all()) and float(u_ips) == float(u)
    u_ips, xi = cal.ips_threshold(jax.random.PRNGKey(0), s, l, 1.0, c, eps=0.1, alpha=ALPHA, bound="cp")
    u = cal.pac_threshold(s, l, jnp.ones(500), c, params=cal.PACParams(0.1, ALPHA, "cp"))
    assert bool(xi.all()) and float(u_ips) == float(u)
    # pi < 1, two implementations: the fast CP path at level pi*eps vs the CP bisection UCB of Z*pi / pi
    key, pi = jax.random.PRNGKey(3), 0.4
    u_fast, xi = cal.ips_threshold(key, s, l, pi, c, eps=0.1, alpha=ALPHA, bound="cp")
    lab = jnp.where(xi, l, 0.0)
    ucb = cal.ucb_curve(s, lab, jnp.ones(500), c, bound="cp", alpha=ALPHA) / pi
    u_slow, _ = cal.first_failure_scan(ucb, c, 0.1)
    assert float(u_fast) == float(u_slow) and 0.3 < float(xi.mean()) < 0.5
    with pytest.raises(ValueError, match="pi_n"):
        cal.ips_threshold(key, s, l, jnp.full(500, 0.5), c, eps=0.1, alpha=ALPHA, bound="cp")


def test_efficiency_instance():
    """Oracle group thresholds route strictly more (heterogeneous) / exactly as much (identical groups)."""
    for spec, strict in ((data.PopulationSpec(), True), (data.homogeneous_spec(group=1), False)):
        cv = data.population_curves(spec)
        um = cal.oracle_threshold(cv.grid, cv.risk, EPS)
        marg = np.interp(um, cv.grid, cv.routed)
        grp = sum(cv.weights[g] * np.interp(cal.oracle_threshold(cv.grid, cv.risk_g[g], EPS), cv.grid,
                                            cv.routed_g[g]) for g in range(4))
        if strict:
            assert grp > marg + 0.05, (grp, marg)
        else:
            assert grp == pytest.approx(marg, abs=1e-9)


def test_cpac_disjoint_split_recovers_groups_and_matches_gpac():
    spec = data.PopulationSpec()
    n = 1200
    d = data.sample(jax.random.PRNGKey(5), spec, n)
    c = cal.sorted_candidates(d["scores"])
    key = jax.random.PRNGKey(6)
    fit = jax.jit(lambda k, e: cal.cpac_thresholds(k, e, d["scores"], d["losses"], jnp.ones(n), c,
                                                   num_clusters=4, params=P, cluster_frac=0.3, iters=10,
                                                   n_init=2))
    res = fit(key, d["emb"])
    w1, w2 = np.asarray(res.w_cluster), np.asarray(res.w_calib)
    assert not np.any((w1 > 0) & (w2 > 0)) and np.all(w1 + w2 == 1)       # D_1, D_2 disjoint
    assert 0.24 < w1.mean() < 0.36
    # the centroids see D_1 only: moving D_2's embeddings changes nothing
    emb2 = np.asarray(d["emb"]).copy()
    emb2[w2 > 0] += 50.0
    res2 = fit(key, jnp.asarray(emb2))
    np.testing.assert_allclose(np.asarray(res.centroids), np.asarray(res2.centroids), atol=1e-5)
    lab = np.asarray(cal.assign(d["emb"], res.centroids))
    g = np.asarray(d["groups"])
    assert adjusted_rand_score(g, lab) > 0.9
    perm = np.array([np.bincount(g[lab == m], minlength=4).argmax() for m in range(4)])
    assert sorted(perm) == [0, 1, 2, 3] and np.all(perm[lab] == g)
    u_g = np.asarray(cal.group_thresholds(d["scores"], d["losses"], d["groups"], jnp.asarray(w2), c,
                                          num_groups=4, params=P))
    np.testing.assert_array_equal(np.asarray(res.thresholds), u_g[perm])


def test_bad_input():
    s, l = np.random.default_rng(0).random(50), np.zeros(50)
    with pytest.raises(ValueError, match="alpha"):
        cal.calibrate_marginal(s, l, params=cal.PACParams(eps=0.05, alpha=0.0))
    with pytest.raises(ValueError, match="alpha"):
        cal.calibrate_marginal(s, l, params=cal.PACParams(eps=0.05, alpha=1.0))
    with pytest.raises(ValueError, match="eps"):
        cal.calibrate_marginal(s, l, params=cal.PACParams(eps=0.0, alpha=0.1))
    with pytest.raises(ValueError, match="eps"):
        cal.calibrate_marginal(s, l, params=cal.PACParams(eps=-0.1, alpha=0.1))
    with pytest.raises(ValueError, match="eps"):
        cal.calibrate_marginal(s, l, params=cal.PACParams(eps=float("nan"), alpha=0.1))
    with pytest.raises(ValueError, match="losses_n"):
        cal.calibrate_marginal(s, l + 1.5, params=P)
    with pytest.raises(ValueError, match="losses_n"):
        cal.calibrate_marginal(s, l - 0.5, params=P)
    with pytest.raises(ValueError, match="losses_n"):
        cal.calibrate_marginal(s, l[:40], params=P)
    with pytest.raises(ValueError, match="groups_n"):
        cal.calibrate_groups(s, l, np.zeros(30, int), num_groups=1, params=P)
    with pytest.raises(ValueError, match="groups_n"):
        cal.calibrate_groups(s, l, np.full(50, 3), num_groups=2, params=P)
    with pytest.raises(ValueError, match="binary"):
        cal.calibrate_marginal(s, np.full(50, 0.5), params=P)
    with pytest.raises(ValueError, match="bound"):
        cal.calibrate_marginal(s, l, params=cal.PACParams(bound="bogus"))
