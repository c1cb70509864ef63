"""ARS Eq. 5 loss, the SupCon-style variant and the bias-free head (spec §8)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.ars import (ARSHParams, HeadData, ars_loss, ars_loss_from_similarities, cosine, fit_head,
                        init_head, linear_head, supcon_loss)


def _toy(key, B=8, M=5, k=6):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    z = jax.random.normal(k1, (B, k))
    zp = jax.random.normal(k2, (B, k))
    zn = jax.random.normal(k3, (B, M, k))
    mask = jax.random.bernoulli(k4, 0.6, (B, M))
    return z, zp, zn, mask


def test_loss_closed_form_nonnegative_and_zero_without_negatives():
    z, zp, zn, mask = _toy(jax.random.PRNGKey(0))
    tau = 0.3
    per, mean = jax.jit(lambda *a: ars_loss(*a, tau=tau))(z, zp, zn, mask, jnp.ones(8, bool))
    sp, sn = np.asarray(cosine(z, zp), np.float64), np.asarray(cosine(z[:, None], zn), np.float64)
    ref = np.log1p((np.asarray(mask) * np.exp((sn - sp[:, None]) / tau)).sum(1))
    np.testing.assert_allclose(np.asarray(per), ref, atol=1e-6)
    assert np.all(np.asarray(per) >= 0)
    # the softmax form of Eq. 5: -s+/tau + log sum_{z' in {z+} u Z-} exp(s/tau)
    for b in range(8):
        s_all = np.concatenate([[sp[b]], sn[b][np.asarray(mask[b])]]) / tau
        np.testing.assert_allclose(per[b], -sp[b] / tau + np.log(np.exp(s_all).sum()), atol=1e-5)
    per0, mean0 = ars_loss(z, zp, zn, jnp.zeros_like(mask), jnp.ones(8, bool), tau=tau)
    assert float(jnp.max(jnp.abs(per0))) == 0.0 and float(mean0) == 0.0


def test_anchors_without_positive_are_masked_never_nan():
    z, zp, zn, mask = _toy(jax.random.PRNGKey(1))
    valid = jnp.array([1, 0, 1, 0, 0, 1, 1, 0], bool)
    per, mean = ars_loss(z, zp, zn, mask, valid, tau=0.1)
    assert np.all(np.asarray(per)[~np.asarray(valid)] == 0)
    np.testing.assert_allclose(float(mean), float(per.sum() / valid.sum()), rtol=1e-6)
    _, mean_none = ars_loss(z, zp, zn, mask, jnp.zeros(8, bool), tau=0.1)
    assert float(mean_none) == 0.0
    g = jax.grad(lambda zz: ars_loss(zz, zp, zn, mask, jnp.zeros(8, bool), tau=0.1)[1])(z)
    assert np.all(np.isfinite(np.asarray(g)))
    # the zero vector (g(0) = 0) does not produce NaN either
    per_z, _ = ars_loss(jnp.zeros_like(z), zp, zn, mask, jnp.ones(8, bool), tau=0.1)
    assert np.all(np.isfinite(np.asarray(per_z)))


def test_gradient_signs_in_similarities():
    sp = jnp.array([0.2, -0.1, 0.5])
    sn = jnp.array([[0.1, 0.4, -0.3], [0.0, 0.2, 0.9], [0.3, -0.5, 0.1]])
    mask = jnp.ones_like(sn, bool)
    f = lambda a, b: ars_loss_from_similarities(a, b, mask, tau=0.5).sum()
    g_pos, g_neg = jax.grad(f, argnums=(0, 1))(sp, sn)
    assert np.all(np.asarray(g_pos) < 0) and np.all(np.asarray(g_neg) > 0)
    # closed forms: dL/ds+ = -(1 - p+)/tau, dL/ds-_j = p_j/tau
    logits = np.concatenate([np.zeros((3, 1)), (np.asarray(sn) - np.asarray(sp)[:, None]) / 0.5], 1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(g_pos, -(1 - p[:, 0]) / 0.5, rtol=1e-5)
    np.testing.assert_allclose(g_neg, p[:, 1:] / 0.5, rtol=1e-5)


def test_one_adam_step_raises_margin():
    key = jax.random.PRNGKey(2)
    ku, kp, kn, kw = jax.random.split(key, 4)
    u = jax.random.normal(ku, (16, 12))
    up = u + 0.3 * jax.random.normal(kp, (16, 12))
    un = jax.random.normal(kn, (16, 4, 12))
    mask = jnp.ones((16, 4), bool)
    w = init_head(kw, 12, 6)

    def margin(w):
        z, zp, zn = linear_head(w, u), linear_head(w, up), linear_head(w, un)
        return jnp.mean(cosine(z, zp) - jnp.max(cosine(z[:, None], zn), axis=1))

    loss = lambda w: ars_loss(linear_head(w, u), linear_head(w, up), linear_head(w, un), mask,
                              jnp.ones(16, bool), tau=0.2)[1]
    opt = optax.adam(1e-2)

    @jax.jit
    def adam_step(w):
        upd, _ = opt.update(jax.grad(loss)(w), opt.init(w), w)
        return optax.apply_updates(w, upd)

    margin, loss = jax.jit(margin), jax.jit(loss)
    w2 = adam_step(w)
    assert float(margin(w2)) > float(margin(w)) and float(loss(w2)) < float(loss(w))


def test_scale_invariance_and_bias_free_head():
    z_key, w_key = jax.random.split(jax.random.PRNGKey(3))
    u = jax.random.normal(z_key, (8, 1 + 1 + 3, 10))
    w = init_head(w_key, 10, 4)
    mask = jnp.ones((8, 3), bool)

    def loss(w, u):
        z = linear_head(w, u)
        return ars_loss(z[:, 0], z[:, 1], z[:, 2:], mask, jnp.ones(8, bool), tau=0.2)[0]

    base = loss(w, u)
    np.testing.assert_allclose(loss(3.7 * w, u), base, atol=1e-5)
    np.testing.assert_allclose(loss(w, 0.25 * u), base, atol=1e-5)
    assert float(jnp.max(jnp.abs(linear_head(w, jnp.zeros((3, 10)))))) == 0.0


@pytest.mark.slow
def test_supcon_matches_reference_and_masks():
    key = jax.random.PRNGKey(4)
    z = jax.random.normal(key, (7, 5))
    ids = jnp.array([0, 0, 0, 1, 1, 2, 2])
    agree = jnp.array([1, 1, 0, 1, 0, 1, 1])
    valid = jnp.ones(7, bool)
    per, mean = supcon_loss(z, ids, agree, valid, tau=0.5)
    s = np.asarray(cosine(z[:, None], z[None]), np.float64) / 0.5
    ref, n = np.zeros(7), 0
    for i in range(7):
        others = [j for j in range(7) if j != i]
        pos = [j for j in others if ids[j] == ids[i] and agree[j] == agree[i]]
        if pos:
            ref[i] = np.log(np.exp(s[i, others]).sum()) - np.log(np.exp(s[i, pos]).sum())
            n += 1
    np.testing.assert_allclose(np.asarray(per), ref, atol=1e-5)
    np.testing.assert_allclose(float(mean), ref.sum() / n, rtol=1e-5)
    assert float(per[2]) == 0.0 and float(per[3]) == 0.0 and float(per[4]) == 0.0   # no positive
    assert np.all(np.asarray(per) >= 0)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="k"):
        init_head(jax.random.PRNGKey(0), 8, 9)
    with pytest.raises(ValueError, match="tau"):
        ars_loss(jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones((1, 1, 2)), jnp.ones((1, 1)), jnp.ones(1), tau=0.0)
    with pytest.raises(ValueError, match="u_nd"):
        linear_head(jnp.ones((2, 3)), jnp.ones((4, 5)))
    data = HeadData(np.zeros((4, 8), np.float32), np.zeros((4, 2, 8), np.float32), np.ones((4, 2), bool))
    with pytest.raises(ValueError, match="k"):
        fit_head(jax.random.PRNGKey(0), data, ARSHParams(k=16, epochs=1))


@pytest.mark.slow
def test_fit_head_separates_disagreeing_counterfactuals():
    """A small learning check: after training, originals are closer to agreeing than to disagreeing
    counterfactuals under g (the training objective), clearly more than at initialization."""
    rng = np.random.default_rng(0)
    n, M, d = 64, 4, 16
    u = rng.normal(size=(n, d)).astype(np.float32)
    direction = np.zeros(d, np.float32); direction[0] = 3.0
    agree = rng.random((n, M)) < 0.5
    ucf = u[:, None] + 0.3 * rng.normal(size=(n, M, d)).astype(np.float32)
    ucf = np.where(agree[..., None], ucf, ucf + direction).astype(np.float32)
    hp = ARSHParams(k=4, tau=0.2, lr=1e-2, epochs=40, batch_size=32)
    ws, loss = fit_head(jax.random.PRNGKey(0), HeadData(u, ucf, agree), hp, checkpoints=(1, 40))

    def gap(w):
        z, zc = u @ np.asarray(w).T, ucf @ np.asarray(w).T
        s = np.asarray(cosine(jnp.asarray(z)[:, None], jnp.asarray(zc)))
        return s[agree].mean() - s[~agree].mean()

    assert np.all(np.isfinite(np.asarray(loss)))
    assert gap(ws[1]) > gap(ws[0]) + 0.2


@pytest.mark.slow
def test_tau_grid_shares_one_compiled_head_program():
    """tau is traced in fit_head: a tau grid compiles the head program once, and tau still matters."""
    from jaxlab.ars import train as T
    rng = np.random.default_rng(0)
    data = HeadData(rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(20, 3, 6)).astype(np.float32),
                    rng.random((20, 3)) < 0.5)
    hp = ARSHParams(k=3, epochs=2, batch_size=8, lr=1e-2)
    before = T._fit._cache_size()
    _, l1 = fit_head(jax.random.PRNGKey(0), data, hp._replace(tau=0.1))
    _, l2 = fit_head(jax.random.PRNGKey(0), data, hp._replace(tau=0.7))
    assert T._fit._cache_size() == before + 1
    assert np.all(np.isfinite(np.asarray(l1))) and not np.allclose(np.asarray(l1), np.asarray(l2))
    with pytest.raises(ValueError, match="tau"):
        fit_head(jax.random.PRNGKey(0), data, hp._replace(tau=0.0))
