"""Losses: equalities between surrogates, closed-form gradients, continuity at ties, masks, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxlab import l2d
from jaxlab.l2d import losses as L

K = 4
ALL = sorted(L.LOSSES)


def _batch(seed, b=16, j=3, k=K, scale=2.0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(scale * rng.standard_normal((b, k + j)), jnp.float32)
    y = jnp.asarray(rng.integers(0, k, b), jnp.int32)
    m = jnp.asarray(rng.integers(0, k, (b, j)), jnp.int32)
    # make a good share of experts correct
    m = jnp.where(jnp.asarray(rng.random((b, j)) < 0.5), y[:, None], m)
    return logits, y, m


def test_losses_importable_from_package_top_level():
    from jaxlab.l2d import picce_ce_loss, picce_ova_loss  # noqa: F401
    assert l2d.vanilla_ce_loss is L.multi_expert_ce_loss
    assert set(L.LOSSES) == {"ce", "ova", "picce_ce", "picce_ova", "realizable", "decoupled"}


@pytest.mark.parametrize("seed", [0, 1])
def test_single_expert_all_ce_variants_coincide(seed):
    logits, y, m = _batch(seed, j=1)
    kw = dict(num_classes=K, reduction="none")
    ce = L.multi_expert_ce_loss(logits, y, m, **kw)
    picce = L.picce_ce_loss(logits, y, m, **kw)
    ms = L.mozannar_sontag_ce_loss(logits, y, m, alpha=1.0, **kw)
    np.testing.assert_allclose(picce, ce, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ms, ce, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(L.picce_ova_loss(logits, y, m, **kw), L.multi_expert_ova_loss(logits, y, m, **kw),
                               rtol=1e-6, atol=1e-6)
    # alpha != 1 only reweights the examples the expert gets wrong
    ms2 = L.mozannar_sontag_ce_loss(logits, y, m, alpha=0.5, **kw)
    wrong = np.asarray(m[:, 0] != y)
    np.testing.assert_allclose(np.asarray(ms2)[~wrong], np.asarray(ce)[~wrong], rtol=1e-6)
    assert np.all(np.asarray(ms2)[wrong] < np.asarray(ce)[wrong])


def test_exactly_one_correct_expert_picce_equals_vanilla():
    logits, y, _ = _batch(3, j=4)
    b = y.shape[0]
    rng = np.random.default_rng(3)
    who = rng.integers(0, 4, b)
    m = np.asarray((y[:, None] + 1) % K).repeat(4, 1)
    m[np.arange(b), who] = np.asarray(y)
    m = jnp.asarray(m)
    kw = dict(num_classes=K, reduction="none")
    np.testing.assert_allclose(L.picce_ce_loss(logits, y, m, **kw), L.multi_expert_ce_loss(logits, y, m, **kw),
                               rtol=1e-6)
    np.testing.assert_allclose(L.picce_ova_loss(logits, y, m, **kw), L.multi_expert_ova_loss(logits, y, m, **kw),
                               rtol=1e-6)


@pytest.mark.parametrize("none_value", ["wrong", "minus_one"])
def test_no_correct_expert_expert_term_vanishes_without_nan(none_value):
    logits, y, _ = _batch(4, j=3)
    m = (y[:, None] + 1) % K * jnp.ones((1, 3), jnp.int32) if none_value == "wrong" else -jnp.ones((16, 3), jnp.int32)
    kw = dict(num_classes=K, reduction="none")
    lp = jax.nn.log_softmax(logits, -1)
    expected = -jnp.take_along_axis(lp, y[:, None], -1)[:, 0]
    for fn in (L.picce_ce_loss, L.multi_expert_ce_loss):
        np.testing.assert_allclose(fn(logits, y, m, **kw), expected, rtol=1e-6)
    for name in ALL:
        val, g = jax.value_and_grad(lambda t: L.LOSSES[name](t, y, m, num_classes=K))(logits)
        assert np.isfinite(val) and np.all(np.isfinite(g)), name
    # OvA: every expert head is pushed to 0 (target 0), same for both OvA variants
    np.testing.assert_allclose(L.picce_ova_loss(logits, y, m, **kw), L.multi_expert_ova_loss(logits, y, m, **kw),
                               rtol=1e-6)


def test_picce_ce_closed_form_gradient():
    logits, y, m = _batch(5, b=32, j=4)
    m = m.at[:4].set(((y[:4] + 1) % K)[:, None])          # a few rows with no correct expert
    g = jax.grad(lambda t: L.picce_ce_loss(t, y, m, num_classes=K, reduction="sum"))(logits)
    q = jax.nn.softmax(logits, -1)
    correct = np.asarray(m == y[:, None])
    c = correct.any(-1).astype(np.float32)
    sel = np.argmax(np.where(correct, np.asarray(logits[:, K:]), -np.inf), -1)
    e_y = jax.nn.one_hot(y, K + 4)
    e_sel = jax.nn.one_hot(K + sel, K + 4) * c[:, None]
    expected = (1 + c)[:, None] * q - e_y - e_sel
    np.testing.assert_allclose(g, expected, atol=1e-5)
    assert c.min() == 0 and c.max() == 1  # both branches exercised


def test_vanilla_ce_closed_form_gradient():
    logits, y, m = _batch(6, b=32, j=4)
    g = jax.grad(lambda t: L.multi_expert_ce_loss(t, y, m, num_classes=K, reduction="sum"))(logits)
    q = jax.nn.softmax(logits, -1)
    correct = np.asarray(m == y[:, None]).astype(np.float32)
    expected = (1 + correct.sum(-1))[:, None] * q - jax.nn.one_hot(y, K + 4) - jnp.pad(correct, ((0, 0), (K, 0)))
    np.testing.assert_allclose(g, expected, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_check_grads_away_from_ties(name):
    logits, y, m = _batch(7, b=6, j=3)
    # separate the expert logits so that no argmax over correct experts is near a tie
    logits = logits.at[:, K:].set(jnp.asarray([[0.0, 1.5, 3.0]]) + 0.1 * logits[:, K:])
    logits = logits.astype(jnp.float64) if jax.config.jax_enable_x64 else logits
    fn = lambda t: L.LOSSES[name](t, y, m, num_classes=K, reduction="sum")
    check_grads(fn, (logits,), order=1, modes=("rev",), atol=5e-2, rtol=5e-2, eps=1e-2)


def test_picce_continuous_at_ties():
    """Theorem 2: two tied correct experts; perturbing the tie either way moves the loss by < 1e-5."""
    y = jnp.asarray([1], jnp.int32)
    m = jnp.asarray([[1, 1, 0]], jnp.int32)
    base = jnp.asarray([[0.3, -0.2, 0.5, 0.1, 0.7, 0.7, -1.0]], jnp.float32)
    eps = 1e-6
    up = base.at[0, K].add(eps).at[0, K + 1].add(-eps)      # expert 0 wins the tie
    down = base.at[0, K].add(-eps).at[0, K + 1].add(eps)    # expert 1 wins the tie
    for fn in (L.picce_ce_loss, L.picce_ova_loss):
        kw = dict(num_classes=K, reduction="sum")
        s_up = L.picce_selection(up, y, m, num_classes=K)[0]
        s_down = L.picce_selection(down, y, m, num_classes=K)[0]
        assert int(s_up[0]) == 0 and int(s_down[0]) == 1
        assert abs(float(fn(up, y, m, **kw)) - float(fn(down, y, m, **kw))) < 1e-5
        assert abs(float(fn(up, y, m, **kw)) - float(fn(base, y, m, **kw))) < 1e-5


def test_selection_index_carries_no_gradient():
    logits, y, m = _batch(8, j=3)
    jac = jax.jacobian(lambda t: L.picce_selection(t, y, m, num_classes=K)[0].astype(jnp.float32))(logits)
    assert float(jnp.abs(jac).max()) == 0.0


def test_augmented_label_shortcut_matches():
    """Vanilla CE == softmax_cross_entropy with unnormalised labels [onehot(y), 1[m=y]]; PiCCE swaps in onehot(sel)."""
    logits, y, m = _batch(9, j=3)
    correct = (m == y[:, None]).astype(jnp.float32)
    y_aug = jnp.concatenate([jax.nn.one_hot(y, K), correct], -1)
    np.testing.assert_allclose(L.multi_expert_ce_loss(logits, y, m, num_classes=K, reduction="none"),
                               optax.softmax_cross_entropy(logits, y_aug), rtol=1e-5)
    sel, anyc = L.picce_selection(logits, y, m, num_classes=K)
    y_pic = jnp.concatenate([jax.nn.one_hot(y, K), jax.nn.one_hot(sel, 3) * anyc[:, None]], -1)
    np.testing.assert_allclose(L.picce_ce_loss(logits, y, m, num_classes=K, reduction="none"),
                               optax.softmax_cross_entropy(logits, y_pic), rtol=1e-5)
    np.testing.assert_allclose(L.picce_ova_loss(logits, y, m, num_classes=K, reduction="none"),
                               optax.sigmoid_binary_cross_entropy(logits, y_pic).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(L.multi_expert_ova_loss(logits, y, m, num_classes=K, reduction="none"),
                               optax.sigmoid_binary_cross_entropy(logits, y_aug).sum(-1), rtol=1e-5)


def test_realizable_and_decoupled_closed_forms():
    logits, y, m = _batch(10, j=3)
    correct = np.asarray(m == y[:, None])
    t = np.asarray(logits, np.float64)
    num = np.exp(t[np.arange(16), np.asarray(y)]) + (np.exp(t[:, K:]) * correct).sum(-1)
    rs = -np.log(num / np.exp(t).sum(-1))
    np.testing.assert_allclose(L.realizable_surrogate_loss(logits, y, m, num_classes=K, reduction="none"), rs,
                               rtol=1e-5)
    ce_cls = -jax.nn.log_softmax(logits[:, :K])[np.arange(16), y]
    bce = optax.sigmoid_binary_cross_entropy(logits[:, K:], correct.astype(np.float32)).sum(-1)
    np.testing.assert_allclose(L.decoupled_loss(logits, y, m, num_classes=K, expert_weight=2.0, reduction="none"),
                               ce_cls + 2.0 * bce / 3, rtol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_expert_mask_equals_slicing(name):
    """Padding to J_max with a mask gives the loss (and grads) of the unpadded problem."""
    logits, y, m = _batch(11, j=5)
    mask = jnp.asarray([True, True, False, True, False])
    keep = np.flatnonzero(np.asarray(mask))
    sliced = jnp.concatenate([logits[:, :K], logits[:, K + keep]], -1)
    kw = dict(num_classes=K, reduction="none")
    a = L.LOSSES[name](logits, y, m, expert_mask=mask, **kw)
    b = L.LOSSES[name](sliced, y, m[:, keep], **kw)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda t: L.LOSSES[name](t, y, m, num_classes=K, expert_mask=mask))(logits)
    assert np.all(np.isfinite(g))
    assert float(jnp.abs(g[:, K + np.flatnonzero(~np.asarray(mask))]).max()) == 0.0


@pytest.mark.parametrize("name", ALL)
def test_jit_matches_eager_and_reductions(name):
    logits, y, m = _batch(12, j=3)
    fn = lambda t, r: L.LOSSES[name](t, y, m, num_classes=K, reduction=r)
    per = fn(logits, "none")
    assert per.shape == (16,)
    np.testing.assert_allclose(jax.jit(fn, static_argnums=1)(logits, "mean"), per.mean(), rtol=1e-5)
    np.testing.assert_allclose(fn(logits, "sum"), per.sum(), rtol=1e-5)
    where = jnp.arange(16) < 5
    np.testing.assert_allclose(L.LOSSES[name](logits, y, m, num_classes=K, where=where), per[:5].mean(), rtol=1e-5)


def test_bad_inputs_raise_clear_value_errors():
    logits, y, m = _batch(13, j=3)
    fn = L.picce_ce_loss
    with pytest.raises(ValueError, match="labels"):
        fn(logits, y.at[0].set(K), m, num_classes=K)
    with pytest.raises(ValueError, match="labels"):
        fn(logits, y.at[0].set(-1), m, num_classes=K)
    with pytest.raises(ValueError, match="expert_preds"):
        fn(logits, y, m[:, 0], num_classes=K)             # rank 1
    with pytest.raises(ValueError, match="expert_preds"):
        fn(logits, y, m[:5], num_classes=K)               # batch mismatch
    with pytest.raises(ValueError, match="expert_preds"):
        fn(logits, y, m.at[0, 0].set(K + 3), num_classes=K)
    with pytest.raises(ValueError, match="K\\+J"):
        fn(logits, y, m[:, :2], num_classes=K)            # J mismatching the logits
    with pytest.raises(ValueError, match="reduction"):
        fn(logits, y, m, num_classes=K, reduction="avg")
    with pytest.raises(ValueError, match="expert_mask"):
        fn(logits, y, m, num_classes=K, expert_mask=jnp.ones(2, bool))
    with pytest.raises(ValueError, match="J=3"):
        L.mozannar_sontag_ce_loss(logits, y, m, num_classes=K)
    with pytest.raises(ValueError, match="method"):
        L.get_loss("softmax")
    for name in ALL:
        with pytest.raises(ValueError, match="labels"):
            L.LOSSES[name](logits, y.astype(jnp.float32), m, num_classes=K)
