"""Macro-conditioned recurrent GAN (paper B): losses in closed form, history copy, bars, D threshold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import gan as G
from jaxlab.finance import macro as M
from jaxlab.finance.data import kline_valid_np


def test_moment_and_std_losses_closed_form():
    x = jax.random.normal(jax.random.PRNGKey(0), (256, 8, 3))
    assert float(G.moment_loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(G.moment_loss(x + 1.0, x)) == pytest.approx(1.0, rel=1e-5)
    assert float(G.std_loss(2.0 * x, x)) == pytest.approx(3.0, rel=1e-4)          # |4v - v| / v


def test_generator_discriminator_embedder_losses_compose():
    key = jax.random.split(jax.random.PRNGKey(1), 4)
    xf, xr = jax.random.normal(key[0], (16, 6, 2)), jax.random.normal(key[1], (16, 6, 2))
    d_f, d_e = jax.random.normal(key[2], (16, 6, 1)), jax.random.normal(key[3], (16, 6, 1))
    bce1 = lambda z: float(jnp.mean(jnp.log1p(jnp.exp(-z))))
    bce0 = lambda z: float(jnp.mean(jnp.log1p(jnp.exp(z))))
    want = bce1(d_f) + 0.5 * bce1(d_e) + 100 * np.sqrt(0.04) + float(G.moment_loss(xf, xr)) + 3 * float(G.std_loss(xf, xr))
    got = G.gan_generator_loss(d_f, xf, xr, d_fake_e_logits=d_e, l_s=0.04, gamma=0.5)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(G.gan_discriminator_loss(d_f, d_e, d_e, gamma=2.0)) == pytest.approx(bce1(d_f) + 3 * bce0(d_e), rel=1e-5)
    assert float(G.gan_embedder_loss(xr, xr + 0.5, 1.0)) == pytest.approx(0.25 + 0.1, rel=1e-5)
    h = jnp.arange(10.0).reshape(1, 10, 1)
    assert float(G.supervised_loss(h, h + 1.0)) == pytest.approx(0.0)            # S predicts h_{t+1} exactly


@pytest.mark.parametrize("lite", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_history_half_is_copied_exactly_and_training_runs(lite):
    init, step, gen = G.make_gan(G.GanHParams(hidden=8, lite=lite, stage_steps=1), dim=8, macro_dim=4, window=12)
    st = init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 12, 8))
    c = jax.random.uniform(jax.random.PRNGKey(2), (4, 12, 4))
    step, gen = jax.jit(step), jax.jit(gen)
    st2, m = step(st, x, c, jax.random.PRNGKey(3))
    st2, m = step(st2, x, c, jax.random.PRNGKey(4))
    assert all(np.isfinite(float(v)) for v in m.values())
    out = gen(st2.params["g"], x, c, jax.random.PRNGKey(5))
    np.testing.assert_array_equal(np.asarray(out[:, :6]), np.asarray(x[:, :6]))
    assert not np.allclose(np.asarray(out[:, 6:]), np.asarray(x[:, 6:]))
    # different noise -> different generated halves (not a copy of one output)
    out2 = gen(st2.params["g"], x, c, jax.random.PRNGKey(6))
    assert float(jnp.std(out2[:, 6:] - out[:, 6:])) > 0


@pytest.mark.slow
def test_discriminator_steps_only_while_its_loss_exceeds_the_threshold():
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 4))
    c = jnp.zeros((4, 8, 2))
    for thr, moved in ((1e9, False), (-1.0, True)):
        init, step, _ = G.make_gan(G.GanHParams(hidden=4, d_threshold=thr), dim=4, macro_dim=2, window=8)
        st = init(jax.random.PRNGKey(0))
        st2, m = step(st, x, c, jax.random.PRNGKey(2))
        same = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(st.params["d"]),
                                                          jax.tree_util.tree_leaves(st2.params["d"])))
        assert same != moved and float(m["d_stepped"]) == float(moved)


def test_generated_bars_are_valid_klines():
    w = M.synthetic_macro_world(0, num_days=200)
    f = M.bar_features(w.panel.ohlcv)
    noisy = f[1:] + 0.01 * np.random.default_rng(0).standard_normal(f[1:].shape)     # a generator's raw output
    bars = np.asarray(G.features_to_ohlc(jnp.asarray(noisy)))
    assert kline_valid_np(bars).all()
    # on the world's own features the inversion recovers the relative bars
    rec = np.asarray(G.features_to_ohlc(jnp.asarray(f[1:]), close0=1.0))
    np.testing.assert_allclose(rec[..., 3], w.panel.ohlcv[1:, :, 3] / w.panel.ohlcv[:1, :, 3], rtol=1e-6)


def test_windows_longer_than_the_data_are_rejected():
    with pytest.raises(ValueError, match="window"):
        G.gan_windows(np.zeros((20, 2, 4)), np.zeros((20, 3)), window=24, start=0, end=20)
    with pytest.raises(ValueError, match="window"):
        G.make_gan(G.GanHParams(), dim=4, macro_dim=2, window=7)
    x, c, t = G.gan_windows(np.arange(40.0).reshape(10, 1, 4), np.zeros((10, 3)), window=4, start=2, end=10)
    assert x.shape == (5, 4, 4) and t[0] == 5 and t[-1] == 9


@pytest.mark.slow
def test_generated_volatility_follows_the_spread_and_a_shuffled_macro_generator_does_not():
    """Spec B8: vol at spread +1 sd > vol at -1 sd (512 samples); a G trained on shuffled macro fails."""
    from experiments.configs.robust_trading import get_config
    from experiments import robust_trading as E
    from jaxlab.finance import robust_trader as rt
    c = get_config("quick")
    c.gan.steps, c.gan.chunk = 1500, 500
    w = M.synthetic_macro_world(0, num_days=1500, stress_window=(1300, 1400))
    wa = rt.prepare_world(w, 900, 1200)
    gp, gen, _ = E.train_gans(c, wa, jnp.stack([jax.random.PRNGKey(0)]))
    gp = jax.tree_util.tree_map(lambda a: a[0], gp)
    hi, lo = E.conditioning(c, wa, jax.jit(gen), gp, jax.random.PRNGKey(9))
    perm = np.random.default_rng(0).permutation(1500)
    wa_s = wa._replace(data=wa.data._replace(macro=wa.data.macro[perm]))
    gps, gen_s, _ = E.train_gans(c, wa_s, jnp.stack([jax.random.PRNGKey(0)]))
    gps = jax.tree_util.tree_map(lambda a: a[0], gps)
    hi_s, lo_s = E.conditioning(c, wa, jax.jit(gen_s), gps, jax.random.PRNGKey(9))
    assert hi > lo
    assert hi / lo > hi_s / lo_s


def test_gan_trainer_under_loop_run_with_a_resume_equals_the_update_loop(tmp_path):
    """`gan_trainer` on the training contract: `loop.run` in chunks of 2 (killed after 4 steps, resumed from its
    checkpoint to 6) ends where six `make_gan` updates on the same minibatches and keys (`loop.chunk_step_key`)
    end, to float32 round-off: the scanned chunk and the single jitted update are two XLA programs, which need not
    round alike (with XLA's older CPU emitters, as `make test` compiles, one weight differs by 2e-9). A wrong key
    schedule or minibatch moves every leaf by orders of magnitude more."""
    from jaxlab.core import loop
    hp, key = G.GanHParams(hidden=4), jax.random.PRNGKey(0)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 8, 4))
    c = jax.random.uniform(jax.random.PRNGKey(2), (16, 8, 2))
    trainer = G.gan_trainer(hp, dim=4, macro_dim=2, window=8, batch=4, key_chunk=3)
    ckpt = str(tmp_path / "ckpt")
    loop.run(trainer, key, steps=4, chunk=2, data=G.GanData(x, c), ckpt_dir=ckpt, progress=False)
    st, hist = loop.run(trainer, key, steps=6, chunk=2, data=G.GanData(x, c), ckpt_dir=ckpt, progress=False)
    init, update, _ = G.make_gan(hp, dim=4, macro_dim=2, window=8)
    start, update = jax.jit(init)(key), jax.jit(update)
    ref = start
    for t in range(6):
        k1, k2 = jax.random.split(loop.chunk_step_key(key, t, chunk=3))
        idx = jax.random.randint(k1, (4,), 0, 16)
        ref, m = update(ref, x[idx], c[idx], k2)
    for a, b in zip(jax.tree_util.tree_leaves(st), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max())                  # the updates moved far more
               for a, b in zip(jax.tree_util.tree_leaves(st.params), jax.tree_util.tree_leaves(start.params))) > 1e-4
    assert int(st.step) == 6 and hist["step"] == list(range(1, 7))
    np.testing.assert_allclose(hist["g_loss"][-1], float(m["g_loss"]), rtol=1e-5)
