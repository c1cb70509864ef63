"""Policy losses: spec §8 tests 7-10 (on-policy equivalence, `through` gradient = W formula,
KPO-clipped = PPO clip on the filtered ratio, GSPO/GMPO closed forms, aggregation modes, bad input)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.rl import (POLICY_LOSSES, aggregate, filter_weight_matrix, get_policy_loss, gmpo_loss,
                       grpo_loss, gspo_loss, kalman_filter, kalman_gains, kpo_clipped_loss,
                       kpo_loss, kpo_tr_loss)

B, T = 4, 9


def _batch(seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    lengths = np.array([9, 5, 1, 7])
    mask = np.arange(T)[None, :] < lengths[:, None]
    logp = -np.abs(rng.normal(size=(B, T))) - 0.1
    old = logp - scale * rng.normal(size=(B, T))
    adv = np.array([1.0, -0.5, 2.0, -1.5])
    f = lambda a: jnp.asarray(a, jnp.float32)
    return f(logp), f(old), f(adv), jnp.asarray(mask)


def _value_and_grad(fn, logp, old, adv, mask):
    (loss, met), g = jax.value_and_grad(lambda lp: fn(lp, old, adv, mask), has_aux=True)(logp)
    return float(loss), np.asarray(g), met


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_on_policy_every_method_equals_grpo(agg):
    logp, _, adv, mask = _batch()
    ref_l, ref_g, _ = _value_and_grad(functools.partial(grpo_loss, agg=agg), logp, logp, adv, mask)
    assert np.abs(ref_g).max() > 0
    for name, fn in POLICY_LOSSES.items():
        fn = functools.partial(fn, agg=agg)
        if name == "kpo":
            fn = functools.partial(fn, Q=1e-3)
        lv, g, met = _value_and_grad(fn, logp, logp, adv, mask)
        assert lv == pytest.approx(ref_l, abs=1e-6), name
        np.testing.assert_allclose(g, ref_g, atol=1e-6, err_msg=name)
        assert float(met["clip_frac"]) == 0.0, name


def test_grpo_value_and_gradient_by_hand():
    logp, old, adv, mask = _batch(1)
    r = np.exp(np.asarray(logp - old))
    A = np.asarray(adv)[:, None]
    m = np.asarray(mask)
    surr = np.minimum(r * A, np.clip(r, 0.8, 1.2) * A)
    n = m.sum(1)
    expected = -np.mean((surr * m).sum(1) / n)
    lv, g, met = _value_and_grad(grpo_loss, logp, old, adv, mask)
    assert lv == pytest.approx(expected, rel=1e-5)
    active = (r * A <= np.clip(r, 0.8, 1.2) * A) | ((r >= 0.8) & (r <= 1.2))
    np.testing.assert_allclose(g, np.where(m & active, -r * A / n[:, None] / B, 0.0), atol=1e-6)
    assert float(met["clip_frac"]) == pytest.approx(((~active) & m).sum() / m.sum(), abs=1e-6)


def test_dual_clip_bounds_negative_advantage_surrogate():
    logp = jnp.zeros((1, 3))
    old = jnp.log(jnp.array([[1.0, 1.0 / 5.0, 1.0 / 2.0]]))  # ratios 1, 5, 2
    adv = jnp.array([-1.0])
    mask = jnp.ones((1, 3), bool)
    lv, g, _ = _value_and_grad(functools.partial(grpo_loss, dual_clip=3.0), logp, old, adv, mask)
    # surrogates: -1, max(min(-5, -1.2), -3) = -3, min(-2, -1.2) = -2 ; loss = -mean
    assert lv == pytest.approx((1 + 3 + 2) / 3, rel=1e-6)
    np.testing.assert_allclose(g[0], [1 / 3, 0.0, 2 / 3], atol=1e-6)


def test_kpo_through_gradient_matches_weight_matrix():
    logp, old, adv, mask = _batch(2)
    mask = jnp.ones_like(mask)
    K = kalman_gains(T, Q=1e-2, V=1.0, P0=1.0)
    fn = functools.partial(kpo_loss, gains_t=K, grad="through")
    _, g, _ = _value_and_grad(fn, logp, old, adv, mask)
    W = filter_weight_matrix(K)
    x = np.asarray(kalman_filter(logp - old, K))
    # loss = -(1/B) sum_i (1/T) sum_t exp(x_it) A_i ;  d/dlogp_is = -(1/(B T)) A_i sum_t exp(x_it) W[t, s]
    expected = -(np.asarray(adv)[:, None] * np.exp(x)) @ W / (B * T)
    np.testing.assert_allclose(g, expected, atol=1e-6)
    # on-policy the `through` gradient is the positional weighting sum_t W[t, s], not GRPO's uniform one
    _, g0, _ = _value_and_grad(fn, logp, logp, adv, mask)
    np.testing.assert_allclose(g0, -np.asarray(adv)[:, None] * W.sum(0)[None] / (B * T), atol=1e-6)


def test_kpo_clipped_is_ppo_clip_on_filtered_ratio_and_zeroes_clipped_gradient():
    logp, old, adv, mask = _batch(3, scale=0.6)
    K = kalman_gains(T, Q=1e-1, V=1.0)
    z = jnp.where(mask, logp - old, 0.0)
    rf = np.exp(np.asarray(kalman_filter(z, K, mask_bt=mask)))
    A = np.asarray(adv)[:, None]
    m = np.asarray(mask)
    surr = np.minimum(rf * A, np.clip(rf, 0.8, 1.2) * A)
    expected = -np.mean((surr * m).sum(1) / m.sum(1))
    fn = functools.partial(kpo_clipped_loss, gains_t=K)
    lv, g, met = _value_and_grad(fn, logp, old, adv, mask)
    assert lv == pytest.approx(expected, rel=1e-5)
    clipped = ((A > 0) & (rf > 1.2)) | ((A < 0) & (rf < 0.8))
    assert (clipped & m).sum() > 0 and (~clipped & m).sum() > 0
    assert np.all(g[clipped & m] == 0.0)
    assert np.all(g[~clipped & m] != 0.0)
    np.testing.assert_allclose(g[~clipped & m],
                               (-rf * A / m.sum(1, keepdims=True) / B)[~clipped & m], rtol=1e-5)
    # unclipped KPO: value sum r~ A, gradient on every valid token
    lk, gk, _ = _value_and_grad(functools.partial(kpo_loss, gains_t=K), logp, old, adv, mask)
    assert lk == pytest.approx(-np.mean((rf * A * m).sum(1) / m.sum(1)), rel=1e-5)
    assert np.all(gk[m] != 0)


def test_kpo_tr_adds_raw_trust_region():
    logp, old, adv, mask = _batch(4, scale=0.6)
    K = kalman_gains(T, Q=1e-3, V=1.0)
    lc, gc, _ = _value_and_grad(functools.partial(kpo_clipped_loss, gains_t=K), logp, old, adv, mask)
    lt, gt, met = _value_and_grad(functools.partial(kpo_tr_loss, gains_t=K), logp, old, adv, mask)
    assert lt == pytest.approx(lc, rel=1e-6)   # same value as KPO-clipped
    r = np.exp(np.asarray(logp - old))
    A = np.asarray(adv)[:, None]
    m = np.asarray(mask)
    out = ((A > 0) & (r > 1.2)) | ((A < 0) & (r < 0.8))
    assert (out & m).sum() > 0
    assert np.all(gt[out & m] == 0.0)
    np.testing.assert_allclose(gt[~out & m], gc[~out & m], atol=1e-7)
    assert float(met["clip_frac"]) >= (out & m).sum() / m.sum() - 1e-6


def test_gspo_sequence_ratio_closed_form_and_token_variant():
    logp, old, adv, mask = _batch(5, scale=0.05)
    m = np.asarray(mask)
    z = np.where(m, np.asarray(logp - old), 0.0)
    s = np.exp(z.sum(1) / m.sum(1))
    wide = dict(clip_eps=0.9, clip_eps_high=10.0)
    lv, g, met = _value_and_grad(functools.partial(gspo_loss, **wide), logp, old, adv, mask)
    assert lv == pytest.approx(-np.mean(s * np.asarray(adv)), rel=1e-5)
    assert float(met["seq_ratio_mean"]) == pytest.approx(s.mean(), rel=1e-5)
    lt, gt, _ = _value_and_grad(functools.partial(gspo_loss, token_level=True, **wide),
                                logp, old, adv, mask)
    assert lt == pytest.approx(lv, rel=1e-6)
    np.testing.assert_allclose(gt, g, atol=1e-6)
    # default (3e-4, 4e-4) clip: with |log s| >> 4e-4 every sequence is clipped on its advantage side
    _, gd, md = _value_and_grad(gspo_loss, logp, old, adv, mask)
    side = ((np.asarray(adv) > 0) & (s > 1 + 4e-4)) | ((np.asarray(adv) < 0) & (s < 1 - 3e-4))
    assert np.all(gd[side] == 0)


def test_gspo_equals_grpo_when_log_ratios_are_constant_per_sequence():
    logp, _, adv, mask = _batch(6)
    c = jnp.array([0.05, -0.1, 0.3, -0.02])[:, None]
    old = logp - c
    wide = dict(clip_eps=0.9, clip_eps_high=10.0)
    for eps in (wide, dict(clip_eps=0.2, clip_eps_high=0.2)):
        lg, gg, _ = _value_and_grad(functools.partial(grpo_loss, **eps), logp, old, adv, mask)
        ls, gs, _ = _value_and_grad(functools.partial(gspo_loss, **eps), logp, old, adv, mask)
        assert ls == pytest.approx(lg, rel=1e-5)
        np.testing.assert_allclose(gs, gg, atol=1e-6)


def test_gmpo_ratio_is_exp_mean_of_sign_aware_clamped_log_ratio():
    logp, old, adv, mask = _batch(7, scale=0.8)
    m = np.asarray(mask)
    z = np.where(m, np.asarray(logp - old), 0.0)
    A = np.asarray(adv)
    zc = np.where(A[:, None] > 0, np.minimum(z, 0.4), np.maximum(z, -0.4))
    ratio = np.exp((zc * m).sum(1) / m.sum(1))
    lv, g, met = _value_and_grad(gmpo_loss, logp, old, adv, mask)
    assert lv == pytest.approx(-np.mean(A * ratio), rel=1e-5)
    assert float(met["seq_ratio_mean"]) == pytest.approx(ratio.mean(), rel=1e-5)
    clipped = np.where(A[:, None] > 0, z > 0.4, z < -0.4) & m
    assert clipped.sum() > 0
    assert np.all(g[clipped] == 0)
    np.testing.assert_allclose(g[~clipped & m],
                               np.broadcast_to((-A * ratio / m.sum(1) / B)[:, None], z.shape)[~clipped & m],
                               rtol=1e-5)


def test_aggregation_modes_by_hand():
    x = jnp.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    assert float(aggregate(x, mask, "token-mean")) == pytest.approx(36 / 5)
    assert float(aggregate(x, mask, "seq-mean-token-mean")) == pytest.approx((2 + 15) / 2)
    assert float(aggregate(x, mask, "seq-mean-token-sum")) == pytest.approx((6 + 30) / 2)
    assert float(aggregate(x, mask, "seq-mean-token-sum-norm")) == pytest.approx((6 + 30) / 4 / 2)
    assert float(aggregate(x, mask, "seq-mean-token-sum-norm", norm_const=3)) == pytest.approx(6)
    assert float(aggregate(x, jnp.zeros_like(mask), "token-mean")) == 0.0


def test_heavy_tailed_noise_stays_finite():
    logp, old, adv, mask = _batch(8)
    old = old.at[0, 3].set(-1e4).at[1, 1].set(1e4)
    for name, fn in POLICY_LOSSES.items():
        lv, g, met = _value_and_grad(fn, logp, old, adv, mask)
        assert np.isfinite(lv) and np.all(np.isfinite(g)), name
        assert all(np.isfinite(float(v)) for v in met.values()), name


def test_losses_jit_and_token_advantages():
    logp, old, adv, mask = _batch(9)
    adv_bt = jnp.broadcast_to(adv[:, None], logp.shape)
    for name in ("grpo", "gspo_token", "kpo_clipped"):
        fn = jax.jit(get_policy_loss(name))
        assert float(fn(logp, old, adv, mask)[0]) == pytest.approx(float(fn(logp, old, adv_bt, mask)[0]),
                                                                    rel=1e-6)


def test_bad_inputs_raise_value_errors():
    logp, old, adv, mask = _batch()
    with pytest.raises(ValueError, match="old_logp_bt"):
        grpo_loss(logp, old[:, :3], adv, mask)
    with pytest.raises(ValueError, match="mask_bt"):
        grpo_loss(logp, old, adv, mask[:2])
    with pytest.raises(ValueError, match="adv"):
        grpo_loss(logp, old, adv[:2], mask)
    with pytest.raises(ValueError, match="adv"):
        gmpo_loss(logp, old, jnp.zeros(logp.shape), mask)
    with pytest.raises(ValueError, match="logp_bt"):
        grpo_loss(logp[0], old[0], adv, mask[0])
    with pytest.raises(ValueError, match="agg"):
        grpo_loss(logp, old, adv, mask, agg="sum")
    with pytest.raises(ValueError, match="grad"):
        kpo_loss(logp, old, adv, mask, grad="both")
    with pytest.raises(ValueError, match="Q"):
        kpo_loss(logp, old, adv, mask, Q=-1.0)
    with pytest.raises(ValueError, match="V"):
        kpo_loss(logp, old, adv, mask, V=-1.0)
    with pytest.raises(ValueError, match="clip_eps"):    # a trust region needs a clip range
        kpo_loss(logp, old, adv, mask, raw_trust_region=True)
    with pytest.raises(ValueError, match="clip_eps"):
        kpo_loss(logp, old, adv, mask, clip_eps=1.5)
    with pytest.raises(ValueError, match="dual_clip"):
        grpo_loss(logp, old, adv, mask, dual_clip=0.5)
    with pytest.raises(ValueError, match="method"):
        get_policy_loss("ppo2")
