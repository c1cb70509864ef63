"""Behaviour cloning from the scripted expert, batched ShelfWorld rollouts and the GRPO update (spec §7).

BC (the "w/o RL" stand-in for VLM pre-training): expert episodes; the image at every step is compressed by
a random c from C_SET (augmentation); loss = action CE + compression CE toward c = 1 with label smoothing
(the untrained model "writes" c = 1 most of the time) + an auxiliary digit read-out of the code (code
variant, once the code is in the history).

GRPO: groups = task seeds, G episodes per seed; every step is one sample whose score is the episode return
plus lambda ln(c_t) on successful episodes on the K schedule; mean/std across all steps of the group; PPO
clip 0.2 on the (action, c) log-probs; no KL. `grpo_trainer` puts it on the training contract: one `loop.run`
step is one iteration, whose host part (`collect`: the ShelfWorld episodes in Python with the Pillow renderer,
each policy call one jitted batched forward) hands a fixed-shape batch of minibatches to one jitted step (a
`lax.scan` of PPO-clip updates).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.agentocr import env as aenv
from jaxlab.agentocr import losses
from jaxlab.agentocr import policy
from jaxlab.agentocr import render
from jaxlab.core import loop
from jaxlab.core.loop import TrainState


class BCHParams(NamedTuple):
    lr: float = 1e-3
    batch: int = 16
    aux_digit: float = 0.3      # weight of the digit read-out loss (0 disables)
    c_smooth: float = 0.1       # label smoothing of the c = 1 target of the compression head
    data_seed: int = 0


class GRPOHParams(NamedTuple):
    lr: float = 1e-4
    minibatch: int = 64
    clip_eps: float = 0.2
    lam: float = 0.01
    every_k: int = 5
    learn_c: bool = True        # False: c fixed (text arm, OCR+GRPO with c = 1)


# ----------------------------------------------------------------------------------------- BC data
def bc_dataset(env_params: aenv.EnvParams, cfg: policy.PolicyConfig, seeds, *, settings=render.RenderSettings(),
               c_seed: int = 0) -> dict:
    """Expert episodes -> stacked features and labels (numpy): act [M], c [M] (= index of c = 1),
    digits [M, 2] and digit_mask [M] (code variant, code in the history), c_img [M] (augmentation c)."""
    rng = np.random.default_rng(c_seed)
    feats, acts, digits, dmask, c_img = [], [], [], [], []
    for seed in seeds:
        env = aenv.ShelfWorld(env_params)
        env.reset(int(seed))
        cache = render.SegmentCache(settings) if cfg.kind == "ocr" else None
        c_prev = 1.0
        while not env.done:
            f, _ = policy.featurize(env, cache, c_prev, cfg)
            a = aenv.expert_action(env)
            feats.append(f)
            acts.append(env.admissible().index(a))
            digits.append([env.code // 10, env.code % 10])
            dmask.append(env_params.variant == "code" and env.t >= 1)
            c_img.append(c_prev)
            env.step(a)
            c_prev = losses.C_SET[int(rng.integers(len(losses.C_SET)))]
    out = policy.stack_feats(feats)
    out.update(act=np.asarray(acts, np.int32), c=np.zeros(len(acts), np.int32),
               digits=np.asarray(digits, np.int32), digit_mask=np.asarray(dmask, bool),
               c_img=np.asarray(c_img, np.float64))
    return out


FEATURE_KEYS = ("text", "acts", "act_mask", "img", "patch_mask", "hist")


def _features(batch):
    return {k: batch[k] for k in FEATURE_KEYS if k in batch}


def bc_loss(params, batch, *, cfg: policy.PolicyConfig, hp: BCHParams):
    """CE(action) + CE_smooth(c -> 1) + aux * CE(code digits). Returns (loss, metrics)."""
    logits, c_logits, dig = policy.Policy(cfg).apply({"params": params}, _features(batch))
    lp = jax.nn.log_softmax(logits)
    ce_a = -jnp.take_along_axis(lp, batch["act"][:, None], 1)[:, 0]
    target_c = optax.smooth_labels(jax.nn.one_hot(batch["c"], len(losses.C_SET)), hp.c_smooth)
    ce_c = optax.softmax_cross_entropy(c_logits, target_c)
    ce_d = optax.softmax_cross_entropy_with_integer_labels(dig, batch["digits"]).sum(-1)
    dm = batch["digit_mask"].astype(jnp.float32)
    aux = jnp.sum(ce_d * dm) / jnp.maximum(dm.sum(), 1.0)
    loss = ce_a.mean() + 0.1 * ce_c.mean() + hp.aux_digit * aux
    acc = (jnp.argmax(logits, -1) == batch["act"]).mean()
    dacc = jnp.sum(jnp.all(jnp.argmax(dig, -1) == batch["digits"], -1) * dm) / jnp.maximum(dm.sum(), 1.0)
    return loss, {"loss": loss, "action_ce": ce_a.mean(), "action_acc": acc, "digit_acc": dacc}


def _bc_init(key, *, cfg, hp):
    params = policy.init_params(cfg, key)
    return TrainState(params=params, opt_state=optax.adam(hp.lr).init(params), step=jnp.zeros((), jnp.int32))


def _bc_step(state, batch, *, cfg, hp):
    (_, m), g = jax.value_and_grad(bc_loss, has_aux=True)(state.params, batch, cfg=cfg, hp=hp)
    upd, opt = optax.adam(hp.lr).update(g, state.opt_state, state.params)
    return TrainState(params=optax.apply_updates(state.params, upd), opt_state=opt, step=state.step + 1), m


def make_bc(cfg: policy.PolicyConfig, hp: BCHParams, data: dict) -> tuple[loop.Trainer, callable]:
    """-> (Trainer(init, step), collect) for `loop.run`: collect draws a seeded random minibatch on the host."""
    policy.check_config(cfg)
    n = len(data["act"])
    if n < 1:
        raise ValueError("data: expected at least one BC sample")

    def collect(state, i):
        idx = np.random.default_rng([hp.data_seed, int(i)]).integers(0, n, hp.batch)
        return {k: v[idx] for k, v in data.items() if k != "c_img"}
    return loop.Trainer(init=loop.bind(_bc_init, cfg=cfg, hp=hp), step=loop.bind(_bc_step, cfg=cfg, hp=hp)), collect


# ------------------------------------------------------------------------------------------ rollouts
@functools.partial(jax.jit, static_argnames=("cfg",))
def _policy_logits(params, batch, *, cfg: policy.PolicyConfig):
    """(action logits [B, A], compression logits [B, |C_SET|]) of one batched forward (jit's cache, keyed by cfg)."""
    return policy.Policy(cfg).apply({"params": params}, batch)[:2]


def _log_softmax_np(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def rollout(params, cfg: policy.PolicyConfig, env_params: aenv.EnvParams, seeds, *, sample_seed: int = 0,
            greedy: bool = False, temperature: float = 1.0, c_fixed: float | None = None,
            settings=render.RenderSettings()) -> dict:
    """Runs one episode per task seed with the policy, all envs batched in one forward per step.

    c_fixed: a fixed c (fixed-c sweep / c = 1 arms) instead of the compression head's choice.
    temperature: sampling temperature of both heads (1 for GRPO rollouts, whose logp are at temperature 1;
    the paper validates at 0.4); greedy=True takes the argmax.
    Returns per-episode arrays (success, ret, length, n_invalid, mean/peak tokens per step for chars,
    words and visual, mean c) and per-step samples for GRPO (features, act, c, logp_act, logp_c, episode).
    """
    if c_fixed is not None:
        losses.c_index(c_fixed)
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature: expected a finite value > 0, got {temperature}")
    rng = np.random.default_rng(sample_seed)
    n = len(seeds)
    envs = [aenv.ShelfWorld(env_params) for _ in seeds]
    caches = [render.SegmentCache(settings) for _ in seeds]
    for e, s in zip(envs, seeds):
        e.reset(int(s))
    c_prev = np.ones(n)
    steps, tok = [], {k: [[] for _ in range(n)] for k in ("chars", "words", "visual")}
    c_used, ret, crops = [[] for _ in range(n)], np.zeros(n), 0
    last = [None] * n
    for t in range(env_params.horizon):
        active = [i for i in range(n) if not envs[i].done]
        if not active:
            break
        for i in active:
            last[i], info = policy.featurize(envs[i], caches[i], float(c_prev[i]), cfg)
            for k in tok:
                tok[k][i].append(info[k])
            crops += int(info["cropped"])
        batch = policy.stack_feats(last)
        logits, c_logits = (np.asarray(x, np.float64) for x in _policy_logits(params, batch, cfg=cfg))
        lpa, lpc = _log_softmax_np(logits), _log_softmax_np(c_logits)
        if greedy:
            a_idx, c_idx = lpa.argmax(-1), lpc.argmax(-1)
        else:
            a_idx = (lpa / temperature + rng.gumbel(size=lpa.shape)).argmax(-1)
            c_idx = (lpc / temperature + rng.gumbel(size=lpc.shape)).argmax(-1)
        if c_fixed is not None:
            c_idx = np.full(n, losses.c_index(c_fixed))
        for i in active:
            adm = envs[i].admissible()
            _, r, _, _ = envs[i].step(adm[int(a_idx[i])])
            ret[i] += r
            c = losses.C_SET[int(c_idx[i])]
            c_used[i].append(c)
            steps.append({**last[i], "act": int(a_idx[i]), "c": int(c_idx[i]), "logp_act": lpa[i, a_idx[i]],
                          "logp_c": lpc[i, c_idx[i]], "episode": i, "c_value": c,
                          "c_img": float(c_prev[i]), "t": t})
            c_prev[i] = c          # the c chosen at step t resizes the image seen at step t + 1
    succ = np.array([e.success for e in envs], np.float32)
    out = {"success": succ, "ret": ret.astype(np.float32), "length": np.array([e.t for e in envs]),
           "n_invalid": np.array([e.n_invalid for e in envs]), "crops": crops,
           "mean_c": np.array([np.mean(c) for c in c_used])}
    for k in tok:
        out[f"{k}_mean"] = np.array([np.mean(v) for v in tok[k]])
        out[f"{k}_peak"] = np.array([np.max(v) for v in tok[k]])
    out["steps"] = steps
    return out


# ---------------------------------------------------------------------------------------------- GRPO
def grpo_samples(rolls: list[dict], *, iteration: int, hp: GRPOHParams) -> dict:
    """Per-step samples of P groups (one rollout dict per task seed, G episodes each) -> flat arrays with
    scores and advantages (normalised across all steps of a group)."""
    feats, rows = [], []
    for g, ro in enumerate(rolls):
        for s in ro["steps"]:
            e = s["episode"]
            feats.append({k: s[k] for k in FEATURE_KEYS if k in s})
            rows.append((g, s["act"], s["c"], s["logp_act"], s["logp_c"], ro["ret"][e], ro["success"][e],
                         s["c_value"]))
    rows = np.asarray(rows, np.float64)
    chp = losses.CompressionHParams(lam=hp.lam, every_k=hp.every_k, clip_eps=hp.clip_eps)
    scores = losses.step_scores(rows[:, 5], rows[:, 7], rows[:, 6] > 0.5, iteration=iteration, hp=chp)
    adv = losses.step_advantages(scores, rows[:, 0].astype(np.int32), np.ones(len(rows), bool), num_groups=len(rolls))
    out = policy.stack_feats(feats)
    out.update(act=rows[:, 1].astype(np.int32), c=rows[:, 2].astype(np.int32),
               old_logp_act=rows[:, 3].astype(np.float32), old_logp_c=rows[:, 4].astype(np.float32),
               adv=np.asarray(adv, np.float32), valid=np.ones(len(rows), bool))
    return out


def grpo_loss_fn(params, batch, *, cfg: policy.PolicyConfig, hp: GRPOHParams):
    logits, c_logits, _ = policy.Policy(cfg).apply({"params": params}, _features(batch))
    lpa = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["act"][:, None], 1)[:, 0]
    lpc = jnp.take_along_axis(jax.nn.log_softmax(c_logits), batch["c"][:, None], 1)[:, 0]
    return losses.policy_loss(lpa, lpc, batch["old_logp_act"], batch["old_logp_c"], batch["adv"], batch["valid"],
                         clip_eps=hp.clip_eps, learn_c=batch.get("learn_c", hp.learn_c))


def _grpo_step(state, batch, *, cfg, hp):
    (loss, m), g = jax.value_and_grad(grpo_loss_fn, has_aux=True)(state.params, batch, cfg=cfg, hp=hp)
    upd, opt = optax.adam(hp.lr).update(g, state.opt_state, state.params)
    return TrainState(params=optax.apply_updates(state.params, upd), opt_state=opt, step=state.step + 1), \
        {"loss": loss, **m}


def grpo_init(params, hp: GRPOHParams) -> TrainState:
    return TrainState(params=params, opt_state=optax.adam(hp.lr).init(params), step=jnp.zeros((), jnp.int32))


_PASS = ("learn_c", "success", "mean_c")      # iteration-level fields of a `grpo_trainer` batch (not per row)


def _grpo_iteration_step(state, batch, *, cfg, hp):
    """One pass of PPO-clip updates over an iteration's minibatches, as one `lax.scan`.

    batch: per-row fields [mb, n_mb, ...] (rows first, so a `data` mesh splits every minibatch's rows over the
    devices: `sharding.shard_rows`) with `valid` [mb, n_mb] (padding rows False; a minibatch with no valid row
    is skipped: state and Adam moments untouched), `learn_c` [] (bool, traced: the arms share one compile),
    and the rollout's `success` [] and `mean_c` [] (passed through as metrics). -> (state, metrics: the mean over
    the real minibatches of loss and `losses.policy_loss`'s metrics, plus success and mean_c)."""
    rows = {k: jnp.moveaxis(v, 1, 0) for k, v in batch.items() if k not in _PASS}     # [n_mb, mb, ...]

    def update(s, mb):
        return _grpo_step(s, {**mb, "learn_c": batch["learn_c"]}, cfg=cfg, hp=hp)

    def body(s, mb):
        real = mb["valid"].any()
        shapes = jax.eval_shape(update, s, mb)[1]
        skip = lambda s_: (s_, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes))  # noqa: E731
        s, m = jax.lax.cond(real, update, lambda s_, _: skip(s_), s, mb)
        return s, (m, real)
    state, (ms, real) = jax.lax.scan(body, state, rows)
    w = real.astype(jnp.float32)
    metrics = {k: jnp.sum(v * w) / jnp.maximum(w.sum(), 1.0) for k, v in ms.items()}
    return state, {**metrics, "success": batch["success"], "mean_c": batch["mean_c"]}


def minibatch_layout(n: int, minibatch: int, n_minibatches: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices [n_mb, mb] and validity [n_mb, mb] of one shuffled pass over n samples (permutation seeded by
    `seed`): minibatch j holds perm[j*mb : (j+1)*mb]; the last partial one is padded with its first row (valid
    False) and the minibatches past the data are all padding (row 0, valid False)."""
    if n < 1 or n > minibatch * n_minibatches:
        raise ValueError(f"n: expected 1..{minibatch * n_minibatches} samples ({n_minibatches} minibatches of "
                         f"{minibatch}), got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    idx = np.zeros((n_minibatches, minibatch), np.int64)
    valid = np.zeros((n_minibatches, minibatch), bool)
    for j, start in enumerate(range(0, n, minibatch)):
        part = perm[start:start + minibatch]
        idx[j, :len(part)], idx[j, len(part):] = part, part[0]
        valid[j, :len(part)] = True
    return idx, valid


def _step_hp(hp: GRPOHParams) -> GRPOHParams:
    """The update's static hyperparameters: lam / every_k act on the host (scores) and learn_c is traced, so
    arms with the same lr, minibatch and clip_eps share one compiled update."""
    return GRPOHParams(lr=hp.lr, minibatch=hp.minibatch, clip_eps=hp.clip_eps, lam=0.0, every_k=1, learn_c=True)


def _iteration_step(cfg: policy.PolicyConfig, hp: GRPOHParams) -> loop.bind:
    """The jitted-by-`loop` step of one iteration (static cfg and `_step_hp(hp)`, so arms share its compile)."""
    return loop.bind(_grpo_iteration_step, cfg=cfg, hp=_step_hp(hp))


def _iteration_batch(samples: dict, *, hp: GRPOHParams, n_minibatches: int, seed: int, success=0.0,
                     mean_c=0.0) -> dict:
    idx, valid = minibatch_layout(len(samples["act"]), hp.minibatch, n_minibatches, seed)
    batch = {k: v[idx.T] for k, v in samples.items()}       # [mb, n_mb, ...]: rows first
    batch["valid"] = valid.T
    batch.update(learn_c=np.asarray(hp.learn_c), success=np.float32(success), mean_c=np.float32(mean_c))
    return batch


def grpo_update(state: TrainState, samples: dict, *, cfg: policy.PolicyConfig, hp: GRPOHParams, seed: int = 0):
    """One pass over the samples in shuffled minibatches of fixed size (the last one padded, valid=False)."""
    n_mb = -(-len(samples["act"]) // hp.minibatch)
    batch = _iteration_batch(samples, hp=hp, n_minibatches=n_mb, seed=seed)
    state, m = loop.jit_step(state, batch, step=_iteration_step(cfg, hp))
    return state, {k: float(v) for k, v in jax.device_get(m).items() if k not in ("success", "mean_c")}


def _collect_iteration(params, iteration: int, *, cfg, env_params, hp: GRPOHParams, task_seeds, group_size: int,
                       sample_seed: int, c_fixed, settings) -> dict:
    """The host part of one iteration: G episodes for each task seed (one batched rollout, sampling seed
    `sample_seed`), their GRPO samples with advantages, laid out by `_iteration_batch` in the fixed number of
    minibatches P * G * horizon rows need (permutation seed `sample_seed`)."""
    seeds = np.repeat(np.asarray(task_seeds), group_size)
    ro = rollout(params, cfg, env_params, seeds, sample_seed=sample_seed, c_fixed=c_fixed, settings=settings)
    groups = []
    for g in range(len(task_seeds)):
        sel = set(range(g * group_size, (g + 1) * group_size))
        groups.append({"steps": [s for s in ro["steps"] if s["episode"] in sel], "ret": ro["ret"],
                       "success": ro["success"]})
    samples = grpo_samples(groups, iteration=iteration, hp=hp)
    n_mb = -(-len(task_seeds) * group_size * env_params.horizon // hp.minibatch)
    return _iteration_batch(samples, hp=hp, n_minibatches=n_mb, seed=sample_seed, success=ro["success"].mean(),
                            mean_c=ro["mean_c"].mean())


def grpo_trainer(params, cfg: policy.PolicyConfig, env_params: aenv.EnvParams, hp: GRPOHParams, *,
                 task_seeds, group_size: int, sample_seed: int, c_fixed: float | None = None,
                 settings=render.RenderSettings()) -> tuple[loop.Trainer, Callable]:
    """GRPO fine-tuning from `params` for `loop.run`: -> (Trainer(init, step), collect); one loop step is one
    iteration.

    task_seeds: [iterations, P] ints, the task seeds of each iteration (P groups of `group_size` episodes).
    collect(state, i): the host step of iteration i: the rollouts (Python ShelfWorld, Pillow renderer; sampling
    seed `sample_seed + i`) and their advantages, laid out as a fixed number of minibatches [mb, n_mb, ...] (P * G * horizon
    rows at most; `minibatch_layout` with seed `sample_seed + i`), so every iteration reuses one compile. The
    step is `_grpo_iteration_step` (one `lax.scan` over the minibatches). init ignores its key: the state
    starts from `params` (the behaviour-cloned policy) with a fresh Adam state. Resuming at iteration i
    recomputes nothing before it: collect depends on (state, i) only."""
    policy.check_config(cfg)
    task_seeds = np.asarray(task_seeds)
    if task_seeds.ndim != 2 or task_seeds.shape[1] < 1:
        raise ValueError(f"task_seeds: expected [iterations, P >= 1] ints, got shape {task_seeds.shape}")
    if group_size < 1:
        raise ValueError(f"group_size: expected >= 1, got {group_size}")

    def collect(state, i):
        return _collect_iteration(state.params, i, cfg=cfg, env_params=env_params, hp=hp, task_seeds=task_seeds[i],
                                  group_size=group_size, sample_seed=sample_seed + i, c_fixed=c_fixed,
                                  settings=settings)

    def init(key):
        del key
        return grpo_init(params, hp)
    return loop.Trainer(init=init, step=_iteration_step(cfg, hp)), collect


def grpo_iteration(state: TrainState, iteration: int, *, cfg, env_params, hp: GRPOHParams, task_seeds,
                   group_size: int, sample_seed: int, c_fixed=None, settings=render.RenderSettings()):
    """One GRPO iteration from `state` (a step of `grpo_trainer` with `task_seeds` as iteration `iteration`'s
    tasks): G episodes for each task seed (one batched rollout), advantages, one pass of minibatch updates."""
    batch = _collect_iteration(state.params, iteration, cfg=cfg, env_params=env_params, hp=hp,
                               task_seeds=task_seeds, group_size=group_size, sample_seed=sample_seed,
                               c_fixed=c_fixed, settings=settings)
    state, m = loop.jit_step(state, batch, step=_iteration_step(cfg, hp))
    return state, {k: float(v) for k, v in jax.device_get(m).items()}
