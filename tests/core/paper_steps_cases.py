"""Every paper's real update step on a tiny real batch, for `test_paper_steps_sharded.py`.

Each builder returns a `Case`: the paper's own step (its loss, its optimiser update) wrapped as
`step(state, batch) -> (state, aux)`, an initial state, a batch whose leaves all have a leading axis of 16
(divisible by 8 devices) or None, and how to read the trained parameters. Mode "dp" runs the step under
`sharding.data_parallel_step` (state replicated, batch split); mode "mesh" is for steps that draw their own
minibatch inside (`sharding.constrain_batch` splits it once `jax.set_mesh` is active); "mesh" cases may place
some state leaves split over the devices (`place`). `run_case` trains the same case on one device and on the
mesh and returns the differences. Imported only inside the 8-fake-device subprocess.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

B = 16   # rows of every sharded batch: divisible by the 8 fake devices


class Case(NamedTuple):
    step: Callable            # (state, batch) -> (state, aux)
    state: Any
    batch: Any                # pytree of [B, ...] leaves, or None (the step draws its own)
    params: Callable          # state -> the trained parameters (pytree)
    mode: str = "dp"          # "dp" | "mesh"
    steps: int = 3
    rtol: float = 1e-5
    atol: float = 1e-6
    place: Optional[Callable] = None     # (state, mesh) -> placed state ("mesh" mode; default replicated)
    exact_aux: bool = False              # the step's aux output must agree exactly (discrete outputs)
    skip: tuple = ()                     # leaf-path substrings left out of the comparison (see `_NOISE_ONLY`)


def _keys(seed, n):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def _rng(seed):
    """NumPy draws for the fake batches: eager jax.random calls would each compile a kernel."""
    return np.random.default_rng(seed)


# Parameters whose exact gradient is 0: AgentOCR's `act_bias` (a Dense(1) whose output is added to every action
# logit) and the key bias of dot-product attention (it adds the same q.b_k to every key's score) shift all
# logits of a softmax equally, which leaves it unchanged. Their computed gradient is float round-off (~1e-9),
# which Adam normalises (g / (sqrt(v) + 1e-8)) into steps of up to the learning rate with a sign set by the
# round-off, so they differ between any two reduction orders (one device or eight) by ~lr. They are left out
# of the comparison, and the test pins the list.
_NOISE_ONLY = ("['act_bias']", "['key']['bias']")


# ------------------------------------------------------------------------------------- LM-based papers
_LM = {}


def _tiny_lm(P, N):
    if (P, N) not in _LM:
        from jaxlab.lm.model import LMConfig, init
        cfg = LMConfig(vocab_size=24, d_model=16, num_layers=1, num_heads=2, d_ff=32, max_len=P + N)
        _LM[P, N] = cfg, jax.jit(init, static_argnums=1)(jax.random.PRNGKey(0), cfg)
    return _LM[P, N]


def _rollout_rows(cfg, params, rows, P, N, seed):
    """A fake rollout of `rows` responses: random tokens, response mask with ragged ends, behaviour log-probs
    = the current policy's plus noise (so ratios differ from 1 and clipping is active)."""
    from jaxlab.rl.train import response_logprobs_entropy
    r = _rng(seed)
    seq = r.integers(3, cfg.vocab_size, (rows, P + N)).astype(np.int32)
    lens = r.integers(N // 2, N + 1, (rows,))
    pos = np.arange(P + N)[None]
    mask = (pos >= P) & (pos < P + lens[:, None])
    noise = 0.3 * r.standard_normal((rows, N)).astype(np.float32)
    old = jax.jit(lambda p, s, m: jnp.where(m[:, P:], response_logprobs_entropy(p, s, m, cfg=cfg, P=P)[0] + noise,
                                            0.0))(params, seq, mask)
    return seq, mask, old


def kpo():
    """KPO (clipped) through `jaxlab.rl.train.make_update`: one jitted scan of Adam minibatch steps (GRPO and the
    other policy losses share this update; only `loss_fn` differs), with the Kalman-filter diagnostics on."""
    from jaxlab.rl.losses import get_policy_loss
    from jaxlab.rl.train import default_rl_config, loss_hparams, make_update
    P, N = 6, 8
    cfg, params = _tiny_lm(P, N)
    rl = default_rl_config()
    rl.update(method="kpo_clipped", lr=1e-2, n_minibatches=2, epochs=1)
    tx, update = make_update(cfg, rl, P=P, N=N, rows=B, loss_fn=get_policy_loss(rl.method, **loss_hparams(rl, N)))
    seq, mask, old = _rollout_rows(cfg, params, B, P, N, 1)
    adv = _rng(2).standard_normal(B).astype(np.float32)
    batch = {"seq": seq, "mask": mask, "old_logp": old, "adv": adv}

    def step(state, b):
        p, o, k = state
        k, sub = jax.random.split(k)
        p, o, met = update(p, o, b, sub)
        return (p, o, k), met["loss"]
    return Case(step, (params, jax.jit(tx.init)(params), jax.random.PRNGKey(3)), batch, lambda s: s[0])


def drmas():
    """Dr. MAS: `jaxlab.rl.multiagent.make_train(...).trainer.step` (shared weights, per-agent advantages and
    per-agent gradient norms). Its batch also holds two non-row entries (the advantage-mode index and six
    system metrics); they are passed as constants, the 3R = 24 step rows are split."""
    from jaxlab.lm.tasks import all_add1
    from jaxlab.rl import multiagent as ma
    from jaxlab.rl.drmas import ADV_MODES
    P, N, Bp, G = 6, 8, 2, 4
    R = Bp * G
    cfg, params = _tiny_lm(P, N)
    hp = ma.MAHParams(n_prompts=Bp, group_size=G, max_new_tokens=N, prompt_len=P, lr=1e-2, shared=True)
    probs = all_add1()[:4]
    run = ma.make_train(hp, cfg=cfg, init_params=params, train_problems=probs, eval_problems=probs)
    seq, mask, old = _rollout_rows(cfg, params, 3 * R, P, N, 4)
    r = _rng(5)
    rows = {"seq": seq, "mask": mask, "old_logp": old,
            "rewards": (r.random(3 * R) < 0.5).astype(np.float32), "valid": r.random(3 * R) > 0.1,
            "agent": np.concatenate([np.zeros(R), np.ones(R), np.zeros(R)]).astype(np.int32),
            "prompt": np.tile(np.repeat(np.arange(Bp), G), 3).astype(np.int32),
            "traj": np.tile(np.arange(R), 3).astype(np.int32)}
    const = {"mode": np.int32(ADV_MODES.index("drmas")), "sys": np.zeros(6, np.float32)}

    def step(state, b):
        return run.trainer.step(state, dict(b, **const))
    return Case(step, jax.jit(run.trainer.init)(jax.random.PRNGKey(6)), rows, lambda s: s.params)


# ---------------------------------------------------------------------------------------------- fusion
def fusion():
    """The diffusion-policy update of `jaxlab.fusion.policy.policy_trainer` (the demonstrations are the step's
    data argument; it draws its minibatch inside the jit and `constrain_batch` splits it)."""
    from jaxlab.fusion import policy as PL
    cfg = PL.PolicyConfig(variant="havp", batch_size=B, denoiser="mlp", mlp_hidden=(32, 32), num_diffusion_steps=20,
                          lr=1e-3, warmup=1, train_steps=20)
    # 16 demonstration windows shaped like `expert_dataset(key, 2, obs_horizon=2, pred_horizon=8,
    # p=PourParams(horizon=8))` (image [24, 24, To], log-mel [26, 32], proprio [3 To]) with random values:
    # compiling the audio-visual expert rollouts would dominate this test's time, and parity needs no real values
    r = _rng(0)
    u = lambda *shape: jnp.asarray(r.uniform(-1.0, 1.0, (B,) + shape), jnp.float32)   # noqa: E731
    from jaxlab.fusion.encoders import PolicyObs
    data = (PolicyObs(u(24, 24, 2), u(26, 32), u(6)), u(8, 1))
    _, trainer, norm_data = PL.policy_trainer(cfg, data, chunk=2)
    keys = jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)])
    return Case(trainer.step, jax.jit(trainer.init)(keys), norm_data, lambda s: s.params, mode="mesh", steps=2)


# ------------------------------------------------------------------------------------------- ARS, AgentOCR
def ars():
    """The ARS shaping-head step (`jaxlab.ars.train.make_trainer`, Eq. 5 loss; it draws anchors inside)."""
    from jaxlab.ars import train as AT
    from jaxlab.ars.losses import ARSHParams
    r = _rng(3)
    data = AT.HeadData(*(jnp.asarray(x) for x in (r.standard_normal((40, 16)).astype(np.float32),
                                                  r.standard_normal((40, 4, 16)).astype(np.float32),
                                                  r.random((40, 4)) < 0.5)))
    tr = AT.make_trainer(data, ARSHParams(k=8, batch_size=B, epochs=3, lr=1e-2))
    return Case(tr.step, jax.jit(tr.init)(jax.random.PRNGKey(4)), None, lambda s: s.params, mode="mesh")


_OCR = None


def _ocr_data():
    global _OCR
    if _OCR is None:
        from jaxlab.agentocr import env as E
        from jaxlab.agentocr import policy as PO
        from jaxlab.agentocr import train as T
        cfg = PO.PolicyConfig(kind="ocr", d=16, layers=1, heads=2, mlp=32, stem=(), canvas_h=420)
        data = T.bc_dataset(E.EnvParams(variant="shelf", horizon=5), cfg, range(4), c_seed=0)
        _OCR = cfg, data
    return _OCR


def agentocr_bc():
    """AgentOCR behaviour cloning: `make_bc`'s Trainer step on its own `collect` minibatch."""
    from jaxlab.agentocr import train as T
    cfg, data = _ocr_data()
    trainer, collect = T.make_bc(cfg, T.BCHParams(lr=3e-3, batch=B), data)
    st = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    return Case(trainer.step, st, collect(st, 0), lambda s: s.params, skip=_NOISE_ONLY)


def agentocr_grpo():
    """AgentOCR GRPO: one iteration step of `grpo_trainer` (PPO-clip on the action and compression log-probs,
    a scan over minibatches) on a fake rollout batch of BC features with behaviour log-probs of the initial policy plus noise and random advantages."""
    from jaxlab.agentocr import train as T
    cfg, data = _ocr_data()
    hp = T.GRPOHParams(lr=3e-3, minibatch=B)
    trainer, collect = T.make_bc(cfg, T.BCHParams(batch=B), data)
    st = jax.jit(lambda k: T.grpo_init(trainer.init(k).params, hp))(jax.random.PRNGKey(0))
    b = dict(collect(st, 1))
    logits, c_logits = T._policy_logits(st.params, b, cfg=cfg)
    r = _rng(7)
    lpa = jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(b["act"])[:, None], 1)[:, 0]
    lpc = jnp.take_along_axis(jax.nn.log_softmax(c_logits), jnp.asarray(b["c"])[:, None], 1)[:, 0]
    b.update(old_logp_act=np.asarray(lpa) + 0.2 * r.standard_normal(B).astype(np.float32),
             old_logp_c=np.asarray(lpc) + 0.2 * r.standard_normal(B).astype(np.float32),
             adv=r.standard_normal(B).astype(np.float32), valid=np.ones(B, bool))
    keep = T.FEATURE_KEYS + ("act", "c", "old_logp_act", "old_logp_c", "adv")
    b = {key: v for key, v in b.items() if key in keep}
    # one GRPO iteration as `grpo_trainer` lays it out: rows first [mb = 8, 3 minibatches] (the third all
    # padding, skipped), so the mesh splits each minibatch's rows over the 8 devices
    hp = hp._replace(minibatch=B // 2)
    batch = T._iteration_batch(b, hp=hp, n_minibatches=3, seed=0)
    rows = {k: v for k, v in batch.items() if k not in T._PASS}     # the scalars enter the step as constants
    scalars = {k: batch[k] for k in T._PASS}
    step_hp = T._step_hp(hp)

    def step(state, rows):
        return T._grpo_iteration_step(state, {**rows, **scalars}, cfg=cfg, hp=step_hp)
    # atol 1e-5: three Adam steps at lr 3e-3 normalise gradients near Adam's eps, so the 8-vs-1 round-off reaches
    # a fraction of lr on a few elements: 2.1e-6 on a 2-core Xeon with a 480 MB L3 (session 14), below 1e-6 on
    # the 32 MB-L3 machine; training moves the parameters by 1.8e-2
    return Case(step, st, rows, lambda s: s.params, skip=_NOISE_ONLY, atol=1e-5)


# --------------------------------------------------------------------------------------------- finance
def finance_dataflow():
    """Paper A: the forecaster's update (`jaxlab.finance.train`: Adam step of the forecaster on the training
    batch, plus the planner's one-step hypergradient step through the manipulations of every pair, do_hyper on)
    on a real synthetic-panel minibatch (the batch is passed unmanipulated: the replayable `augment` that makes
    x~ runs outside the update, and compiling it here would double this case's cost). atol 1e-5: the
    hypergradient reaches phi only through the virtual step theta - eta * grad (eta = 1e-3), so it is ~1e3 times
    smaller than the terms it is computed from and carries their float32 round-off (with the GRU forecaster the
    planner weights differed by up to 2.6e-6 after 3 steps that moved them by 1.6e-2; 1.1e-6 with DLinear from
    this start, up to 3.9e-5 from other planner inits: the round-off's amplification depends on the start)."""
    from jaxlab.core import loop
    from jaxlab.finance import data as D
    from jaxlab.finance import train as T
    panel, _ = D.synthetic_universe(2, num_assets=4, num_days=200)
    a, b = D.chronological_split(200)
    prep = T.prepare(panel, 12, a, b, 200)
    hp = T.TrainHParams(model="dlinear", batch_size=B, planner_hidden=16, val_batch=B, lr=1e-2, planner_lr=1e-2)
    tr = T.make_train(hp, prep)
    trainer = tr.trainer("ours")          # the loop.Trainer's step (its key carried in the state)
    # the pre-loop case's start (init from PRNGKey(0) unsplit; key 3): the 8-vs-1 difference is that of the
    # old case, 1.1e-6 (from tr.init(PRNGKey(0)), whose planner init differs, it is 3.9e-5: see the docstring)
    params, opt = T._step_fns(T.StepHParams.from_config(hp))["init"](jax.random.PRNGKey(0), prep.x_tr[:2], tr.stats)
    st = loop.TrainState(params, opt, jnp.zeros((), jnp.int32), jax.random.PRNGKey(3))
    idx = np.arange(B) * 3
    x, y, asset, day = prep.x_tr[idx], prep.y_tr[idx], prep.asset_tr[idx], prep.day_tr[idx]
    batch = dict(x_t=x, y_t=y, x=x, y=y, asset=asset, px=prep.panel_x_tr[day], py=prep.panel_y_tr[day],
                 xv=prep.x_va[:B], yv=prep.y_va[:B])
    stats = tr.stats

    def step(state, bb):
        state, m = trainer.step(state, {**bb, "do_hyper": jnp.asarray(True), "stats": stats})
        return state, m["loss"]
    return Case(step, st, batch, lambda s: (s.params["theta"], s.params["phi"]), atol=1e-5)


_WORLD = None


def _world():
    global _WORLD
    if _WORLD is None:
        from jaxlab.finance import macro as M
        from jaxlab.finance import robust_trader as RT
        _WORLD = RT.prepare_world(M.synthetic_macro_world(0, num_days=300, stress_window=(250, 290)), 180, 240)
    return _WORLD


def robust_gan():
    """Paper B: the conditional GAN's `train_step` (`jaxlab.finance.gan.make_gan`) on real macro-world windows."""
    from jaxlab.finance import gan as G
    w = _world()
    x, c, _ = G.gan_windows(w.data.feats, w.data.macro, window=8, start=0, end=180)
    init, train_step, _ = G.make_gan(G.GanHParams(hidden=8, lr=1e-2), dim=x.shape[-1], macro_dim=c.shape[-1], window=8)

    def step(state, b):
        gs, k = state
        k, sub = jax.random.split(k)
        gs, aux = train_step(gs, b["x"], b["c"], sub)
        return (gs, k), aux["g_loss"]
    batch = {"x": x[:B * 4:4], "c": c[:B * 4:4]}
    return Case(step, (jax.jit(init)(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)), batch,
                lambda s: (s[0].params["g"], s[0].params["d"]))


def robust_trader():
    """Paper B: the NFSP trader's learning step (DQN best response, quantile belief net, average policy;
    `robust_trader._trader_learn`, which draws its minibatches from the replay ring and the reservoir inside)
    on a filled replay buffer."""
    import optax
    from jaxlab.finance import belief as BL
    from jaxlab.finance import robust_trader as RT
    w = _world()
    hp = RT.TraderHParams(window=8, hidden=16, qbn_hidden=8, num_envs=8, episode_len=16, buffer_size=64,
                          reservoir_size=64, batch_size=B, lr=1e-2)
    init, _, _ = RT.make_trader(hp, num_assets=w.data.feats.shape[1], macro_dim=w.data.macro.shape[1],
                                train_range=(0, 180), generate=lambda g, x, c, k: x)
    st = jax.jit(init)(jax.random.PRNGKey(0))
    r = _rng(1)
    N, D = hp.buffer_size, hp.window * RT.NUM_FEATS + 1
    nb = len(BL.TAUS)
    f32 = lambda *shape: jnp.asarray(r.standard_normal(shape), jnp.float32)       # noqa: E731
    i32 = lambda hi: jnp.asarray(r.integers(0, hi, N), jnp.int32)                  # noqa: E731
    buf = {"obs": f32(N, D), "b": i32(nb), "a": i32(3), "r": f32(N), "obs2": f32(N, D), "b2": i32(nb)}
    res = st.extra["res"]._replace(data={"obs": buf["obs"], "b": buf["b"], "a": buf["a"]}, count=jnp.asarray(N, jnp.int32))
    st = st.replace(extra={**st.extra, "buf": buf, "buf_size": jnp.asarray(N, jnp.int32), "res": res})
    nets = (RT.TraderQNet(hp.hidden), BL.QuantileBeliefNet(hp.qbn_hidden))
    tx = optax.adam(hp.lr)
    flags = jax.tree_util.tree_map(lambda v: v[0], RT.arm_flags(["ours"]))

    def step(s, _):
        s, k = s
        k, sub = jax.random.split(k)
        s, losses = RT._trader_learn(nets, tx, hp, s, flags, sub)
        return (s, k), losses
    return Case(step, (st, jax.random.PRNGKey(2)), None,
                lambda s: (s[0].params["q"], s[0].params["qbn"], s[0].params["qbar"]), mode="mesh")


# ---------------------------------------------------------------------------------------------- G-PAC
def gpac():
    """G-PAC/C-PAC has no gradient-trained step: its fitted "parameters" are the k-means centroids of C-PAC
    (Lloyd iterations over the calibration embeddings) and the per-cluster thresholds. `cpac_thresholds` runs
    with the n = 64 calibration rows split; centroids agree to float tolerance and thresholds exactly."""
    from jaxlab.pac import calibrate as C
    r = _rng(9)
    n = 4 * B
    emb = (r.standard_normal((n, 3)) + 3.0 * (np.arange(n) % 2)[:, None]).astype(np.float32)
    scores = r.random(n).astype(np.float32)
    losses = (r.random(n) < 0.3 * scores).astype(np.float32)
    batch = {"emb": emb, "scores": scores, "losses": losses, "w": np.ones(n, np.float32)}
    srt = np.sort(scores)
    cands = jnp.asarray(np.concatenate([[-np.inf], 0.5 * (srt[1:] + srt[:-1]), [np.inf]]), jnp.float32)
    key = jax.random.PRNGKey(9)
    params = C.PACParams(eps=0.2, alpha=0.1, bound="cp")

    def step(state, b):
        key, cands, _ = state
        res = C.cpac_thresholds(key, b["emb"], b["scores"], b["losses"], b["w"], cands, num_clusters=2,
                                params=params, joint=True, iters=10, n_init=2)
        return (key, cands, res.centroids), res.thresholds
    seeds = jax.jit(lambda kk: C.cpac_thresholds(kk, emb, scores, losses, batch["w"], cands, num_clusters=2,
                                                 params=params, joint=True, iters=0, n_init=2).centroids)(key)
    # ^ the k-means++ seeds (no Lloyd step): the step must move the centroids away from them
    return Case(step, (key, cands, seeds), batch, lambda s: s[2], steps=1, exact_aux=True)


# --------------------------------------------------------------------- PiCCE and FARL (public API only)
def picce():
    """PiCCE: one epoch of `jaxlab.l2d.train.l2d_trainer(...).step` (PiCCE-CE loss, frozen "specialist" experts,
    MLP scorer, Adam) on a train split of 2 B rows; the whole data set is the step's argument and each drawn
    minibatch of B rows is split over the devices by the step's own `sharding.constrain_batch`."""
    from jaxlab.l2d import train as LT
    K, J = 5, 3
    r = _rng(11)
    y = r.integers(0, K, 2 * B).astype(np.int32)
    x = (r.standard_normal((2 * B, 8)) + np.eye(8)[y]).astype(np.float32)
    split = lambda i: {"x": x[i], "y": y[i]}                                      # noqa: E731
    data = LT.l2d_arrays({"train": split(slice(None)), "validation": split(slice(B)), "test": split(slice(B))})
    hp = LT.L2DHParams(method="picce_ce", setting="specialist", num_classes=K, max_experts=J, num_experts=J,
                       hidden=(32,), lr=1e-2, batch_size=B, epochs=3)
    tr = LT.l2d_trainer(hp, in_dim=8)
    return Case(tr.step, jax.jit(tr.init)(_keys(11, 1)[0]), data, lambda s: s.params, mode="mesh")


class _EnvState(NamedTuple):
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict


class _PointEnv:
    """A 12-D point mass with a cost region: the env interface FARL's PPO reads (obs, reward, done, info with
    cost, truncation, terminal_obs, ep_done_return, ep_success), cheap to compile."""

    def reset(self, key):
        z = jnp.zeros(())
        obs = 0.5 * jax.random.normal(key, (12,))
        return _EnvState(obs, z, z, {"t": jnp.zeros((), jnp.int32), "start": obs, "cost": z, "truncation": z,
                                     "terminal_obs": obs, "ep_return": z, "ep_done_return": z, "ep_success": z})

    def step(self, s, action):
        nxt = s.obs.at[:2].add(0.2 * action)
        reward = -jnp.sum(nxt[:2] ** 2)
        cost = (jnp.abs(nxt[0]) > 0.8).astype(jnp.float32)
        t = s.info["t"] + 1
        done = (t >= 4).astype(jnp.float32)
        ep = s.info["ep_return"] + reward
        info = {"t": jnp.where(done > 0, 0, t), "start": s.info["start"], "cost": cost, "truncation": done,
                "terminal_obs": nxt, "ep_return": ep * (1 - done), "ep_done_return": done * ep,
                "ep_success": done * (reward > -0.1)}
        return _EnvState(jnp.where(done > 0, s.info["start"], nxt), reward, done, info)


def farl():
    """FARL: one PPO iteration, the step of `jaxlab.farl.ppo.online_trainer` (`ppo_step`, through the public
    `make_train(env, ...)`'s `train.init` / `train.iteration`): rollout of 8 envs, GAE, epochs of minibatch PPO
    + value updates, Lagrange multiplier. The 8 envs' states (`state.extra["env_state"]`) are split over the
    devices, so the rollout and the PPO batch are data-parallel."""
    from jaxlab.farl import make_arm, make_train
    from jaxlab.farl.networks import GaussianPolicy, TwinRisk, Value, WorldModelMember
    from jaxlab.core import sharding
    train = make_train(_PointEnv(), num_envs=8, rollout_len=4, iterations=1, epochs=2, minibatches=2, lr=3e-3,
                       horizon=2)
    o, a = jnp.zeros((12,)), jnp.zeros((2,))

    @jax.jit
    def setup(k):   # frozen / pretrained parameters (2 world-model members) and the initial TrainState
        pre = {"pi": GaussianPolicy().init(k[0], o), "v": Value().init(k[1], o), "rec": GaussianPolicy().init(k[2], o),
               "wm": jax.vmap(lambda kk: WorldModelMember().init(kk, o, a))(jax.random.split(k[3], 2)),
               "q": TwinRisk().init(k[4], o, a)}
        return pre, train.init(k[5], pre)
    pre, ts0 = setup(_keys(13, 6))
    arm = make_arm("ppo_lagrangian")

    def step(ts, _):
        return train.iteration(ts, arm, pre)

    def place(ts, mesh):
        ts = sharding.replicate(ts, mesh)
        return ts.replace(extra={**ts.extra, "env_state": sharding.shard_batch(ts.extra["env_state"], mesh)})
    return Case(step, ts0, None, lambda s: (s.params["pi"], s.params["v"], s.extra["lam"]), mode="mesh",
                steps=2, place=place)


CASES = {"kpo": kpo, "drmas": drmas, "fusion": fusion, "ars": ars, "agentocr_bc": agentocr_bc,
         "agentocr": agentocr_grpo, "finance_dataflow": finance_dataflow, "robust_gan": robust_gan,
         "robust_trader": robust_trader, "gpac": gpac, "picce": picce, "farl": farl}


# ------------------------------------------------------------------------------------------------ runner
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def _leaves(tree, skip):
    """(kept leaves as float64, sorted paths of the skipped ones)."""
    kept, skipped = [], set()
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        name = jax.tree_util.keystr(path)
        if any(s in name for s in skip):
            skipped.add(name)
        else:
            kept.append(np.asarray(x, np.float64))
    return kept, sorted(skipped)


def _diff(a_tree, b_tree, rtol, atol, skip=()):
    a, b = _leaves(a_tree, skip)[0], _leaves(b_tree, skip)[0]
    max_abs = max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in zip(a, b))
    excess = max(float(np.max(np.abs(x - y) / (atol + rtol * np.abs(x)), initial=0.0)) for x, y in zip(a, b))
    return max_abs, excess


def run_case(name: str, mesh) -> dict:
    from jaxlab.core import sharding
    t0, cpu0 = time.perf_counter(), time.process_time()
    c = CASES[name]()
    p0 = jax.device_get(c.params(c.state))
    t1 = time.perf_counter()
    single = jax.jit(c.step)
    s1 = c.state
    for _ in range(c.steps):
        s1, aux1 = single(s1, c.batch)
    s1 = jax.device_get(s1)
    t2 = time.perf_counter()
    collectives = None
    if c.mode == "dp":
        dp = sharding.data_parallel_step(c.step, mesh)
        b8 = sharding.shard_batch(c.batch, mesh)
        s8 = sharding.replicate(c.state, mesh)
        n_shards = len(jax.tree_util.tree_leaves(b8)[0].addressable_shards)
        for _ in range(c.steps):
            s8, aux8 = dp(s8, b8)
    else:
        with jax.set_mesh(mesh):
            s8 = c.place(c.state, mesh) if c.place else sharding.replicate(c.state, mesh)
            shard = jax.tree_util.tree_map(lambda x: x.sharding, s8)
            compiled = jax.jit(c.step, out_shardings=(shard, sharding.replicated(mesh))).lower(s8, c.batch).compile()
        hlo = compiled.as_text()
        collectives = sorted({op for op in _COLLECTIVES if op in hlo})
        n_shards = None
        for _ in range(c.steps):
            s8, aux8 = compiled(s8, c.batch)
    s8 = jax.device_get(s8)
    t3 = time.perf_counter()
    max_abs, excess = _diff(c.params(s1), c.params(s8), c.rtol, c.atol, c.skip)
    moved, _ = _diff(p0, c.params(s1), 1.0, 1.0, c.skip)
    aux_abs, _ = _diff(aux1, aux8, c.rtol, c.atol)
    out = {"max_abs_diff": max_abs, "excess": excess, "max_change": moved, "aux_abs_diff": aux_abs,
           "rtol": c.rtol, "atol": c.atol, "skipped": _leaves(c.params(s1), c.skip)[1], "mode": c.mode,
           "n_shards": n_shards, "collectives": collectives,
           "finite": all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree_util.tree_leaves(c.params(s8))),
           "build_s": t1 - t0, "single_s": t2 - t1, "sharded_s": t3 - t2,
           "cpu_s": time.process_time() - cpu0}
    if c.exact_aux:
        out["aux_equal"] = all(bool(np.array_equal(np.asarray(x), np.asarray(y))) for x, y in
                               zip(jax.tree_util.tree_leaves(aux1), jax.tree_util.tree_leaves(aux8)))
    return out


def main(names) -> dict:
    """Runs the named cases (all when empty) on 1 device and on an 8-device mesh; errors are reported per case."""
    import traceback
    from jaxlab.core import sharding
    assert jax.device_count() == 8, jax.device_count()
    mesh = sharding.make_mesh(8)
    results = {}
    for name in names or CASES:
        try:
            results[name] = run_case(name, mesh)
        except Exception:   # noqa: BLE001  (one paper's failure must not hide the others' results)
            results[name] = {"error": traceback.format_exc()[-3000:]}
    return results
