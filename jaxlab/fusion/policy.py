"""Diffusion policy with a fusion encoder: data windows, action chunks, training, closed-loop evaluation.

Chunk convention (Chi et al. 2023): a training sample at decision step t sees observations t-To+1..t and
predicts the Tp actions a[t-To+1 .. t-To+Tp] (edge-padded); at run time actions chunk[To-1 : To-1+Ta] are
executed open-loop, so the first executed action is the one for the current step t.
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxlab import diffusion
from jaxlab.core import loop, sharding
from jaxlab.fusion import cabinet
from jaxlab.fusion import pour
from jaxlab.fusion.audio import log_mel
from jaxlab.fusion.encoders import FusionEncoder, PolicyObs, parse_variant
from jaxlab.fusion.losses import diffusion_policy_loss

LOGMEL_SHIFT, LOGMEL_SCALE = 8.0, 4.0  # log(mel + 1e-6) -> (x + 8) / 4, roughly [-1.5, 2.5]


def task_module(p):
    """The task module (``pour`` or ``cabinet``) of a params tuple (PourParams / CabinetParams)."""
    if isinstance(p, cabinet.CabinetParams):
        return cabinet
    if isinstance(p, pour.PourParams):
        return pour
    raise ValueError(f"p must be PourParams or CabinetParams, got {type(p).__name__}")


# the latch cabinet with a quiet click among distractor knocks: the click is 17x quieter (about 6x the background
# in its band instead of ~100x) and, in a quarter of the steps, a knock twice as loud as the click sounds at
# 1.7 kHz (outside the expert's +-300 Hz band, one to two mel bands below the click). The expert's detector
# threshold drops from 10 to 3 accordingly (it still hears every click and no knock: tests/fusion).
CABINET_DISTRACTOR = cabinet.CabinetParams(click_gain=0.03, distractor_rate=0.25, distractor_hz=1700.0,
                                           distractor_gain=0.06, expert_threshold=3.0)
TASKS = ("pour", "cabinet", "cabinet_distractor")


def task_params(task: str):
    """Default params of a task by name: 'pour', 'cabinet' or 'cabinet_distractor'."""
    if task == "pour":
        return pour.PourParams()
    if task == "cabinet":
        return cabinet.CabinetParams()
    if task == "cabinet_distractor":
        return CABINET_DISTRACTOR
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def chunk_indices(t, *, obs_horizon: int, pred_horizon: int, length: int):
    """Time indices of the action chunk for decision step t: clip(t - To + 1 + [0..Tp), 0, length - 1). [Tp]."""
    return jnp.clip(t - obs_horizon + 1 + jnp.arange(pred_horizon), 0, length - 1)


def window_indices(t, *, obs_horizon: int):
    """Observation indices t-To+1..t, clipped at 0 (the first frame is repeated). [To]."""
    return jnp.maximum(t - obs_horizon + 1 + jnp.arange(obs_horizon), 0)


def make_policy_obs(images_th, audio_tn, proprio_tp) -> PolicyObs:
    """One window of To raw observations -> PolicyObs without batch axis.
    images_th: [To, H, W]; audio_tn: [To, N]; proprio_tp: [To, P]."""
    lm = (log_mel(audio_tn.reshape(-1)) + LOGMEL_SHIFT) / LOGMEL_SCALE
    return PolicyObs(jnp.moveaxis(images_th, 0, -1), lm, proprio_tp.reshape(-1))


def trajectory_dataset(traj: pour.Trajectory, *, obs_horizon: int, pred_horizon: int):
    """All decision samples of one episode. Returns (PolicyObs with leading [T], actions [T, Tp, 1]);
    ``traj.obs`` holds obs after each step, the window for decision t ends at obs index t of [o0, o1..]."""
    allobs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], 0), traj.first_obs, traj.obs)
    T = traj.actions.shape[0]

    def one(t):
        w = window_indices(t, obs_horizon=obs_horizon)
        o = make_policy_obs(allobs.image[w], allobs.audio[w], allobs.proprio[w])
        return o, traj.actions[chunk_indices(t, obs_horizon=obs_horizon, pred_horizon=pred_horizon, length=T)]

    obs, act = jax.vmap(one)(jnp.arange(T))
    return obs, act[..., None]


def expert_dataset(key, n_episodes: int, *, obs_horizon: int, pred_horizon: int, action_noise: float = 0.02,
                   p=pour.PourParams()):
    """Demonstrations flattened over episodes: PolicyObs [N, ...], actions [N, Tp, 1], N = episodes * T.
    ``p``: PourParams or CabinetParams selects the task."""
    M = task_module(p)

    @jax.jit
    def make(keys):
        trajs = jax.vmap(lambda k: M.rollout_expert(k, p, action_noise=action_noise))(keys)
        return jax.vmap(lambda tr: trajectory_dataset(tr, obs_horizon=obs_horizon, pred_horizon=pred_horizon))(
            trajs)

    obs, act = make(jax.random.split(key, n_episodes))
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return jax.tree.map(flat, obs), flat(act)


class PolicyNet(nn.Module):
    """Fusion encoder + conditional 1-D U-Net denoiser."""

    variant: str = "havp"
    cond_dim: int = 64
    down_dims: tuple = (32, 64)
    proprio_dim: int = 6
    denoiser_kind: str = "unet"
    tokenizer: str = "patch"
    mlp_hidden: tuple = (128, 128, 128)

    def setup(self):
        self.encoder = FusionEncoder(self.variant, out=self.cond_dim, proprio_dim=self.proprio_dim,
                                     tokenizer=self.tokenizer)
        if self.denoiser_kind == "unet":
            self.denoiser = diffusion.ConditionalUnet1D(down_dims=self.down_dims)
        elif self.denoiser_kind == "mlp":
            self.denoiser = diffusion.MLPDenoiser(hidden=tuple(self.mlp_hidden))
        else:
            raise ValueError(f"denoiser must be 'unet' or 'mlp', got {self.denoiser_kind!r}")

    def __call__(self, obs: PolicyObs, x, t):
        return self.denoiser(x, t, self.encoder(obs))

    def encode(self, obs: PolicyObs):
        return self.encoder(obs)

    def denoise(self, x, t, cond):
        return self.denoiser(x, t, cond)

    def embeddings(self, obs: PolicyObs):
        return self.encoder.embeddings(obs)


class PolicyConfig(NamedTuple):
    variant: str = "havp"
    obs_horizon: int = 2
    pred_horizon: int = 8
    action_horizon: int = 4
    num_diffusion_steps: int = 100
    num_inference_steps: int = 10
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-6
    warmup: int = 100
    train_steps: int = 2000
    down_dims: tuple = (32, 64)
    denoiser: str = "unet"   # "unet" (ConditionalUnet1D) or "mlp" (MLPDenoiser)
    ema_power: float = 0.75
    tokenizer: str = "patch"  # encoder tokenizer: "patch" (cheap, default) or "conv"
    mlp_hidden: tuple = (128, 128, 128)


def action_normalizer(p=pour.PourParams()) -> diffusion.Normalizer:
    """Min-max normaliser of the task's action range (``action_bounds`` of the task module of ``p``)."""
    low, high = task_module(p).action_bounds(p)
    return diffusion.Normalizer(jnp.array([low]), jnp.array([high]))


def _prepare(cfg: PolicyConfig, dataset, p):
    """-> (net, normalised dataset (PolicyObs [N, ...], actions [N, Tp, 1] in [-1, 1])), validated."""
    parse_variant(cfg.variant)
    obs_all, act_all = dataset
    act_all = action_normalizer(p).normalize(act_all)
    if act_all.ndim != 3 or act_all.shape[1:] != (cfg.pred_horizon, 1):
        raise ValueError(f"dataset actions must be [N, {cfg.pred_horizon}, 1], got {act_all.shape}")
    net = PolicyNet(cfg.variant, down_dims=tuple(cfg.down_dims), proprio_dim=obs_all.proprio.shape[-1],
                    denoiser_kind=cfg.denoiser, tokenizer=cfg.tokenizer, mlp_hidden=tuple(cfg.mlp_hidden))
    return net, (obs_all, act_all)


def _optimizer(cfg: PolicyConfig):
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup, max(cfg.train_steps, cfg.warmup + 1))
    return optax.adamw(lr, b1=0.95, b2=0.999, weight_decay=cfg.weight_decay)


def _policy_init(key, data, *, net: "PolicyNet", cfg: PolicyConfig, data_key=None):
    """-> loop.TrainState(params, opt_state, step 0, key=data_key, extra={"ema": params})."""
    obs_all, act_all = data
    o = jax.tree.map(lambda x: x[:2], obs_all)
    params = net.init(key, o, act_all[:2], jnp.zeros(2, jnp.int32))
    return loop.TrainState(params, _optimizer(cfg).init(params), jnp.zeros((), jnp.int32), key=data_key,
                           extra={"ema": params})


def _policy_update(state: loop.TrainState, key, data, *, net: "PolicyNet", cfg: PolicyConfig):
    """One AdamW step of the diffusion-policy loss on a minibatch of ``cfg.batch_size`` windows drawn with
    ``key`` from data = (PolicyObs [N, ...], normalised actions [N, Tp, 1]), then the EMA update."""
    obs_all, act_all = data
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (cfg.batch_size,), 0, act_all.shape[0])
    # the drawn minibatch is split over a mesh's data axis when one is set (`jax.set_mesh`); else a no-op
    obs, x0 = sharding.constrain_batch((jax.tree.map(lambda x: x[idx], obs_all), act_all[idx]))
    sched = diffusion.make_schedule(cfg.num_diffusion_steps, "cosine")
    loss, g = jax.value_and_grad(lambda prm: diffusion_policy_loss(
        lambda x, t: net.apply(prm, obs, x, t), sched, k2, x0))(state.params)
    upd, opt_state = _optimizer(cfg).update(g, state.opt_state, state.params)
    params = optax.apply_updates(state.params, upd)
    ema = diffusion.ema_update(state.extra["ema"], params, diffusion.ema_decay(state.step, power=cfg.ema_power))
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1, extra={"ema": ema}), loss


def _policy_step(state: loop.TrainState, data, *, net: "PolicyNet", cfg: PolicyConfig, chunk: int):
    key = loop.chunk_step_key(state.key, state.step, chunk=chunk, total=cfg.train_steps)
    state, loss = _policy_update(state, key, data, net=net, cfg=cfg)
    return state, {"loss": loss}


def _pair_init(keys, *, data: loop.Static, net, cfg):
    return _policy_init(keys[0], data.value, net=net, cfg=cfg, data_key=keys[1])


def policy_trainer(cfg: PolicyConfig, dataset, p=pour.PourParams(), *, chunk: int):
    """The diffusion-policy trainer on the `jaxlab.core.loop` contract. Returns (net, Trainer, data):

    * ``init(keys [2, 2])``: keys[0] initialises the network, keys[1] is the state's key; the state is a
      `loop.TrainState` with ``extra = {"ema": EMA parameters}``;
    * ``step(state, data)``: one update (`loop.chunk_step_key` schedule: the same minibatches as `make_train`'s
      ``train_chunk`` run chunk by chunk with keys fold_in(keys[1], c));
    * ``data``: the normalised dataset, a jit argument (``loop.run(..., data=data)``).

    Run S seeds at once with ``loop.vmap_seeds`` (keys [S, 2, 2])."""
    net, data = _prepare(cfg, dataset, p)
    return net, loop.Trainer(init=loop.bind(_pair_init, data=loop.Static(data), net=net, cfg=cfg),
                             step=loop.bind(_policy_step, net=net, cfg=cfg, chunk=int(chunk))), data


def make_train(cfg: PolicyConfig, dataset, p=pour.PourParams()):
    """Returns (net, init(key) -> loop.TrainState, train_chunk(state, key, n) -> (state, losses [n])).

    dataset: (PolicyObs [N, ...], actions [N, Tp, 1]) raw actions; normalised to [-1, 1] inside.
    Both functions are pure; ``train_chunk`` is one jit around a ``lax.scan`` of whole update steps and can
    be vmapped over seeds (``jax.vmap(train_chunk, in_axes=(0, 0, None))``). ``p`` (the task params) sets
    the action range. The EMA parameters are ``state.extra["ema"]``."""
    net, data = _prepare(cfg, dataset, p)

    def init(key):
        return _policy_init(key, data, net=net, cfg=cfg)

    @functools.partial(jax.jit, static_argnums=2)
    def train_chunk(state, key, n):
        return jax.lax.scan(lambda s, k: _policy_update(s, k, data, net=net, cfg=cfg), state,
                            jax.random.split(key, n))

    return net, init, train_chunk


def make_policy_fn(net: PolicyNet, cfg: PolicyConfig, p=pour.PourParams()):
    """(params, PolicyObs [B, ...], key) -> raw action chunks [B, Tp, 1] by DDIM (eta 0) in one scan."""
    sched = diffusion.make_schedule(cfg.num_diffusion_steps, "cosine")
    norm = action_normalizer(p)

    def act(params, obs: PolicyObs, key, num_inference_steps=cfg.num_inference_steps, sampler="ddim"):
        cond = net.apply(params, obs, method=PolicyNet.encode)
        fn = lambda x, t: net.apply(params, x, t, cond, method=PolicyNet.denoise)  # noqa: E731
        shape = (cond.shape[0], cfg.pred_horizon, 1)
        if sampler == "ddim":
            x = diffusion.sample_ddim(fn, sched, key, shape, num_inference_steps=num_inference_steps)
        else:
            x = diffusion.sample_ddpm(fn, sched, key, shape)
        return norm.unnormalize(x)

    return act


def rollout_policy(act_fn, params, key, n_episodes: int, cfg: PolicyConfig, p=pour.PourParams(), **act_kw):
    """Closed-loop evaluation of ``n_episodes`` episodes vmapped: outer scan over chunks (re-plan), inner scan over
    Ta executed steps; the observation ring buffer keeps the last To frames (audio included). ``p`` selects the
    task (PourParams / CabinetParams). Returns the task's ``episode_metrics``, a dict of [n_episodes] arrays:
    pour: success, fill_error, overflow; cabinet: success, slam, timeout."""
    M = task_module(p)
    To, Ta = cfg.obs_horizon, cfg.action_horizon
    n_chunks = -(-p.horizon // Ta)
    k_reset, k_obs, k_loop = jax.random.split(key, 3)
    s = jax.vmap(lambda k: M.reset(k, p))(jax.random.split(k_reset, n_episodes))
    o = jax.vmap(lambda st, k: M.observe(st, k, p))(s, jax.random.split(k_obs, n_episodes))
    ring = jax.tree.map(lambda x: jnp.repeat(x[:, None], To, axis=1), o)  # [B, To, ...]

    def chunk_body(carry, k):
        s, ring, done_t = carry
        k_act, k_env = jax.random.split(k)
        pobs = jax.vmap(make_policy_obs)(ring.image, ring.audio, ring.proprio)
        actions = act_fn(params, pobs, k_act, **act_kw)[:, To - 1:To - 1 + Ta, 0]  # [B, Ta]

        def env_body(c, inp):
            s, ring, t = c
            a, kk = inp
            live = t < p.horizon
            s_new = jax.vmap(lambda st, ai: M.step(st, ai, p))(s, a)
            s = jax.tree.map(lambda new, old: jnp.where(live, new, old), s_new, s)
            o = jax.vmap(lambda st, k2: M.observe(st, k2, p))(s, jax.random.split(kk, a.shape[0]))
            ring = jax.tree.map(lambda r, x: jnp.concatenate([r[:, 1:], x[:, None]], axis=1), ring, o)
            return (s, ring, t + 1), None

        (s, ring, done_t), _ = jax.lax.scan(env_body, (s, ring, done_t),
                                            (actions.T, jax.random.split(k_env, Ta)))
        return (s, ring, done_t), None

    (s, _, _), _ = jax.lax.scan(chunk_body, (s, ring, jnp.zeros((), jnp.int32)),
                                jax.random.split(k_loop, n_chunks))
    return jax.vmap(lambda st: M.episode_metrics(st, p))(s)
