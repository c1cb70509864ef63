"""Macro-conditioned recurrent GAN (paper B, arXiv 2601.17008; the public code's TimeGAN stack, in Flax GRUs).

A window has 2H steps: H real history steps followed by H generated steps. Features are per-bar
[log return, log O/C, log H/C, log L/C] for every asset (D = 4 S), z-scored with train statistics.
The generator input is Z = [real first half | U(0, 1) second half] concatenated with the macro vector at
every step; the output window copies the real history half *exactly* (`assemble_window`).

Two modes (typed `GanHParams.lite`):
  full: embedder E: x -> h, recovery R: h -> x, generator G: Z -> e^, supervisor S: h -> next h,
        discriminator D on latents; X^ = R(S(G(Z))). Losses as in the public code (spec B3):
        L_G = BCE(D(H^),1) + gamma BCE(D(E^),1) + 100 sqrt(L_S) + L_V + 3 L_std
        L_E = MSE(x, R(E(x))) + 0.1 L_S           L_D = BCE(D(H),1) + BCE(D(H^),0) + gamma BCE(D(E^),0)
  lite: no embedder/supervisor: G maps Z straight to features and D reads features;
        L_G = BCE(D(X^),1) + L_V + 3 L_std, L_D = BCE(D(X),1) + BCE(D(X^),0).
Every network also reads the macro at each step (conditional GAN). The discriminator is stepped only
while its loss exceeds `d_threshold` (0.15). The three stages of the code (embedding, supervised, joint)
run as one loop whose loss weights switch on at `stage_steps` (full mode only).

The trainer is a `jaxlab.core.loop.Trainer` (`gan_trainer`): `init(key) -> loop.TrainState` (params {"g", "d"}),
`step(state, GanData(x, c)) -> (state, metrics)`; `make_gan` gives the single update and the sampler.

Pure losses importable at the package top level: `bce_with_logits`, `moment_loss`, `std_loss`,
`supervised_loss`, `gan_generator_loss`, `gan_embedder_loss`, `gan_discriminator_loss`.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import loop

class GanHParams(NamedTuple):
    hidden: int = 32
    lite: bool = True
    lr: float = 1e-3
    gamma: float = 1.0
    w_sup: float = 100.0
    w_std: float = 3.0
    d_threshold: float = 0.15
    stage_steps: int = 0          # full mode: steps of embedding-only and of supervised-only pre-training


# ------------------------------------------------------------------------------------------ pure losses
def bce_with_logits(logits, target):
    """Mean binary cross-entropy of sigmoid(logits) against a constant or array target."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(target, logits.shape)))


def moment_loss(x_fake_btd, x_real_btd):
    """L_V = mean |sigma_f - sigma_r| + mean |mu_f - mu_r|, moments over the batch axis per (t, d)."""
    sf, sr = jnp.std(x_fake_btd, 0), jnp.std(x_real_btd, 0)
    mf, mr = jnp.mean(x_fake_btd, 0), jnp.mean(x_real_btd, 0)
    return jnp.mean(jnp.abs(sf - sr)) + jnp.mean(jnp.abs(mf - mr))


def std_loss(x_fake_btd, x_real_btd, *, eps=1e-6):
    """L_std = mean |var_f - var_r| / var_r with variances over batch and time per feature."""
    vf = jnp.var(x_fake_btd.reshape(-1, x_fake_btd.shape[-1]), 0)
    vr = jnp.var(x_real_btd.reshape(-1, x_real_btd.shape[-1]), 0)
    return jnp.mean(jnp.abs(vf - vr) / (vr + eps))


def supervised_loss(h_bth, h_sup_bth):
    """L_S = MSE(h_{t+1}, S(h)_t): the supervisor's next-step latent prediction error."""
    return jnp.mean((h_bth[:, 1:] - h_sup_bth[:, :-1]) ** 2)


def gan_generator_loss(d_fake_logits, x_fake_btd, x_real_btd, *, d_fake_e_logits=None, l_s=0.0, gamma=1.0,
                       w_sup=100.0, w_std=3.0):
    """BCE(D(H^),1) + gamma BCE(D(E^),1) + w_sup sqrt(L_S) + L_V + w_std L_std (lite: no E^, L_S = 0)."""
    loss = bce_with_logits(d_fake_logits, 1.0) + moment_loss(x_fake_btd, x_real_btd) + w_std * std_loss(
        x_fake_btd, x_real_btd)
    if d_fake_e_logits is not None:
        loss = loss + gamma * bce_with_logits(d_fake_e_logits, 1.0)
    return loss + w_sup * jnp.sqrt(l_s + 1e-12) * (l_s > 0)


def gan_embedder_loss(x_btd, x_tilde_btd, l_s=0.0):
    """L_E = MSE(x, R(E(x))) + 0.1 L_S."""
    return jnp.mean((x_btd - x_tilde_btd) ** 2) + 0.1 * l_s


def gan_discriminator_loss(d_real_logits, d_fake_logits, d_fake_e_logits=None, *, gamma=1.0):
    """BCE(D(real),1) + BCE(D(fake),0) + gamma BCE(D(fake_e),0) (the last term only in full mode)."""
    loss = bce_with_logits(d_real_logits, 1.0) + bce_with_logits(d_fake_logits, 0.0)
    if d_fake_e_logits is not None:
        loss = loss + gamma * bce_with_logits(d_fake_e_logits, 0.0)
    return loss


# ------------------------------------------------------------------------------------------- networks
class CondGRU(nn.Module):
    """GRU over [x_t, c_t] -> Dense(out) per step (sigmoid output if `sigmoid`). [B, T, *] -> [B, T, out]."""
    hidden: int
    out: int
    sigmoid: bool = False

    @nn.compact
    def __call__(self, x_btd, c_btk):
        h = nn.RNN(nn.GRUCell(features=self.hidden))(jnp.concatenate([x_btd, c_btk], -1))
        y = nn.Dense(self.out)(h)
        return nn.sigmoid(y) if self.sigmoid else y


def _nets(hp: GanHParams, d: int):
    if hp.lite:
        return {"gen": CondGRU(hp.hidden, d), "disc": CondGRU(hp.hidden, 1)}
    return {"emb": CondGRU(hp.hidden, hp.hidden, True), "rec": CondGRU(hp.hidden, d),
            "gen": CondGRU(hp.hidden, hp.hidden, True), "sup": CondGRU(hp.hidden, hp.hidden, True),
            "disc": CondGRU(hp.hidden, 1)}


def generator_input(x_real_btd, key, *, half: int):
    """Z = [real first half | U(0, 1) second half]. x_real_btd: [B, 2H, D] -> [B, 2H, D]."""
    noise = jax.random.uniform(key, x_real_btd[:, half:].shape, x_real_btd.dtype)
    return jnp.concatenate([x_real_btd[:, :half], noise], 1)


def assemble_window(x_real_btd, x_gen_btd, *, half: int):
    """Real history (first `half` steps, copied exactly) followed by the generated second half."""
    return jnp.concatenate([x_real_btd[:, :half], x_gen_btd[:, half:]], 1)


class GanData(NamedTuple):
    """The training windows (`gan_windows`): x [N, 2H, D] features, c [N, 2H, K] macro; the `batch` of every
    `gan_trainer` step (a jit argument, never a constant)."""
    x: jax.Array
    c: jax.Array


# The GAN's `loop.TrainState`: params {"g": {net: params} (gen; and emb, rec, sup in full mode), "d": disc params},
# opt_state {"g", "d"} (Adam), step (the stage schedule reads it), key (the run's key; `gan_trainer` derives
# each step's key from it and the step), extra None.


def _fake(nets, hp: GanHParams, half: int, g, x, c, key):
    """-> (x_hat window [B, 2H, D] with history copied, latent H^ or None, latent E^ or None)."""
    z = generator_input(x, key, half=half)
    if hp.lite:
        return assemble_window(x, nets["gen"].apply(g["gen"], z, c), half=half), None, None
    e_hat = nets["gen"].apply(g["gen"], z, c)
    h_hat = nets["sup"].apply(g["sup"], e_hat, c)
    x_hat = nets["rec"].apply(g["rec"], h_hat, c)
    return assemble_window(x, x_hat, half=half), h_hat, e_hat


def _gan_losses(nets, hp: GanHParams, half: int, g, dp, x, c, key, step):
    """Total = L_E + L_G (gradients reach only E/R resp. G/S, and D's parameters are frozen inside L_G)
    plus L_D (generated inputs frozen): one backward pass gives every network its own gradient.
    Returns (total, metrics)."""
    sg = jax.lax.stop_gradient
    dfz = sg(dp)
    disc = lambda p, h: nets["disc"].apply(p, h, c)
    if hp.lite:
        xf, _, _ = _fake(nets, hp, half, g, x, c, key)
        lg = gan_generator_loss(disc(dfz, xf), xf[:, half:], x[:, half:], gamma=hp.gamma, w_sup=hp.w_sup,
                                w_std=hp.w_std)
        ld = gan_discriminator_loss(disc(dp, x), disc(dp, sg(xf)))
        return lg + ld, {"g_loss": lg, "d_loss": ld, "e_loss": jnp.zeros(())}
    frozen = {k: (sg(v) if k in ("emb", "rec") else v) for k, v in g.items()}
    h = nets["emb"].apply(g["emb"], x, c)
    x_tilde = nets["rec"].apply(g["rec"], h, c)
    l_s_e = supervised_loss(h, nets["sup"].apply(sg(g["sup"]), h, c))
    le = gan_embedder_loss(x, x_tilde, l_s_e)
    hs = sg(h)
    l_s = supervised_loss(hs, nets["sup"].apply(g["sup"], hs, c))
    xf, h_hat, e_hat = _fake(nets, hp, half, frozen, x, c, key)
    joint = (step >= 2 * hp.stage_steps).astype(jnp.float32)
    sup_on = (step >= hp.stage_steps).astype(jnp.float32)
    lg_adv = gan_generator_loss(disc(dfz, h_hat), xf[:, half:], x[:, half:], d_fake_e_logits=disc(dfz, e_hat),
                                gamma=hp.gamma, w_sup=0.0, w_std=hp.w_std)
    lg = joint * lg_adv + sup_on * hp.w_sup * jnp.sqrt(l_s + 1e-12)
    ld = gan_discriminator_loss(disc(dp, hs), disc(dp, sg(h_hat)), disc(dp, sg(e_hat)), gamma=hp.gamma)
    return le + lg + joint * ld, {"g_loss": lg, "d_loss": ld * joint, "e_loss": le, "l_s": l_s}


def _check_window(window: int) -> int:
    if window % 2:
        raise ValueError(f"window: expected an even number of steps (history + generated), got {window}")
    return window // 2


def _gan_init(key, *, hp: GanHParams, dim: int, macro_dim: int, window: int) -> loop.TrainState:
    """Fresh networks (one key each, split from `key`) and Adam states; `key` itself becomes the state's key."""
    nets = _nets(hp, dim)
    lat = dim if hp.lite else hp.hidden
    ks = jax.random.split(key, len(nets))
    x0, c0, h0 = jnp.zeros((1, window, dim)), jnp.zeros((1, window, macro_dim)), jnp.zeros((1, window, lat))
    g = {}
    for k, (name, net) in zip(ks, nets.items()):
        if name == "disc":
            dp = net.init(k, h0, c0)
        else:
            g[name] = net.init(k, x0 if name in ("emb", "gen") else jnp.zeros((1, window, hp.hidden)), c0)
    tx = optax.adam(hp.lr)
    return loop.TrainState(params={"g": g, "d": dp}, opt_state={"g": tx.init(g), "d": tx.init(dp)},
                           step=jnp.zeros((), jnp.int32), key=key)


def _gan_update(state: loop.TrainState, x_btd, c_btk, key, *, hp: GanHParams, dim: int, window: int):
    """One joint step of every network on the batch (x_btd [B, 2H, D], c_btk [B, 2H, K]); the discriminator
    steps only while its loss exceeds hp.d_threshold -> (state, metrics)."""
    nets, half = _nets(hp, dim), window // 2
    tx_g, tx_d = optax.adam(hp.lr), optax.adam(hp.lr)
    p, o = state.params, state.opt_state
    (_, aux), (gg, gd) = jax.value_and_grad(
        lambda g, d: _gan_losses(nets, hp, half, g, d, x_btd, c_btk, key, state.step), argnums=(0, 1),
        has_aux=True)(p["g"], p["d"])
    ld = aux["d_loss"]
    ug, g_opt = tx_g.update(gg, o["g"], p["g"])
    g_params = optax.apply_updates(p["g"], ug)
    ud, d_opt_new = tx_d.update(gd, o["d"], p["d"])
    step_d = ld > hp.d_threshold                      # the discriminator learns only while it is not winning
    d_params = jax.tree_util.tree_map(lambda n, o: jnp.where(step_d, n, o), optax.apply_updates(p["d"], ud), p["d"])
    d_opt = jax.tree_util.tree_map(lambda n, o: jnp.where(step_d, n, o), d_opt_new, o["d"])
    aux = dict(aux, d_stepped=step_d.astype(jnp.float32))
    return state.replace(params={"g": g_params, "d": d_params}, opt_state={"g": g_opt, "d": d_opt},
                         step=state.step + 1), aux


def _gan_generate(g_params, x_hist_btd, c_btk, key, *, hp: GanHParams, dim: int, window: int):
    half = window // 2
    x = x_hist_btd
    if x.shape[1] == half:
        x = jnp.concatenate([x, jnp.zeros_like(x)], 1)
    return _fake(_nets(hp, dim), hp, half, g_params, x, c_btk, key)[0]


def _gan_step(state: loop.TrainState, data: GanData, *, hp: GanHParams, dim: int, window: int, batch: int,
              key_chunk: int):
    """`loop.Trainer.step`: a minibatch of `batch` windows drawn uniformly from `data`, one `_gan_update`."""
    k1, k2 = jax.random.split(loop.chunk_step_key(state.key, state.step, chunk=key_chunk))
    idx = jax.random.randint(k1, (batch,), 0, data.x.shape[0])
    return _gan_update(state, data.x[idx], data.c[idx], k2, hp=hp, dim=dim, window=window)


def gan_trainer(hp: GanHParams, *, dim: int, macro_dim: int, window: int, batch: int = 64,
                key_chunk: int = 200) -> loop.Trainer:
    """`loop.Trainer` of the conditional GAN: `init(key) -> loop.TrainState` and `step(state, GanData(x, c)) ->
    (state, metrics)` (`batch` windows drawn with replacement per step; the step's key is `loop.chunk_step_key(
    state.key, step, chunk=key_chunk)`). Seeds: `loop.vmap_seeds(trainer)`; run by `loop.run(..., data=GanData(x, c))`
    or chunked by `loop.scan_steps`."""
    _check_window(window)
    kw = dict(hp=hp, dim=int(dim), window=int(window))
    return loop.Trainer(init=loop.bind(_gan_init, macro_dim=int(macro_dim), **kw),
                        step=loop.bind(_gan_step, batch=int(batch), key_chunk=int(key_chunk), **kw))


def make_gan(hp: GanHParams, *, dim: int, macro_dim: int, window: int):
    """Returns (init, train_step, generate), pure functions over the GAN's `loop.TrainState`.

    init(key) -> loop.TrainState
    train_step(state, x_btd [B, 2H, D], c_btk [B, 2H, K], key) -> (state, metrics)
    generate(g_params, x_hist_btd [B, 2H (or H), D], c_btk [B, 2H, K], key) -> [B, 2H, D] (history copied);
      g_params = state.params["g"]
    """
    _check_window(window)
    kw = dict(hp=hp, dim=int(dim), window=int(window))
    return (loop.bind(_gan_init, macro_dim=int(macro_dim), **kw), loop.bind(_gan_update, **kw),
            loop.bind(_gan_generate, **kw))


# --------------------------------------------------------------------------------------- data and bars
def gan_windows(feats_tsf, macro_tk, *, window: int, start: int, end: int):
    """All windows of `window` steps fully inside rows [start, end). feats_tsf: [T, S, F] (normalised),
    macro_tk: [T, K]. Returns x [N, window, S*F], c [N, window, K], t_end [N] (last row of each window)."""
    T = feats_tsf.shape[0]
    if window > end - start or end > T or start < 0:
        raise ValueError(f"window: expected window <= end - start with 0 <= start < end <= {T}, got window={window}, "
                         f"start={start}, end={end}")
    idx = np.arange(start, end - window + 1)[:, None] + np.arange(window)[None]
    f = np.asarray(feats_tsf).reshape(T, -1)
    return f[idx].astype(np.float32), np.asarray(macro_tk)[idx].astype(np.float32), idx[:, -1]


def features_to_ohlc(feat_btsf, *, close0=1.0):
    """Inverts generated per-bar log features [.., T, S, 4] (return, O/C, H/C, L/C; raw, not z-scored)
    into OHLC bars [.., T, S, 4] with curation H = max(O, H, L, C), L = min(O, H, L, C)."""
    lc = jnp.log(close0) + jnp.cumsum(feat_btsf[..., 0], axis=-2)
    c = jnp.exp(lc)
    o, h, lo = c * jnp.exp(feat_btsf[..., 1]), c * jnp.exp(feat_btsf[..., 2]), c * jnp.exp(feat_btsf[..., 3])
    hi = jnp.maximum(jnp.maximum(o, h), jnp.maximum(lo, c))
    low = jnp.minimum(jnp.minimum(o, h), jnp.minimum(lo, c))
    return jnp.stack([o, hi, low, c], -1)
