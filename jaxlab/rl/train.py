"""Group-relative RL post-training of the tiny LM (jaxlab.lm) with any policy loss of `jaxlab.rl`.

One RL step:
  1. draw P prompts, sample G responses each with the KV-cache sampler from the rollout policy, which is
     the policy `staleness` versions old (s = 0: on-policy);
  2. score them with the verifier (`reward_fn`), compute advantages with the pluggable `advantage_fn`
     ([P, G] rewards -> [P, G] advantages; GRPO by default); groups whose advantages are all zero are
     masked out;
  3. optionally corrupt the behaviour log-probs with a train-inference mismatch xi (Gaussian or
     Student-t, i.i.d. per token): old_logp_used = old_logp + xi;
  4. run `epochs x n_minibatches` Adam updates in one jitted `lax.scan`, each clipping the gradient
     by global norm (the pre-clip norm is logged).
Every `eval_every` steps: held-out greedy accuracy, avg@k and unbiased pass@k. Checkpoints (orbax via
jaxlab.core) hold params, optimiser state, stale params and the history, and a rerun resumes.

The trainer is a `jaxlab.core.loop.Trainer` (`rl_trainer`: a `loop.TrainState` whose `extra` holds the stale policies, a jitted step that rotates the stale
buffer and runs the update, skipped by `lax.cond` when no group has a non-zero advantage) run by `loop.run`
with steps 1-2 (sampler and verifier, Python) as its host `collect` step.

`make_train(RLHParams(...), init_params=..., train_problems=..., eval_problems=...) -> train(key)`;
the hyperparameters are typed (`RLHParams`, one default each; `rl_hparams` converts a config section once).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxlab.core import loop
from jaxlab.lm.evaluate import generate_answers, pass_at_k, prompts_of
from jaxlab.lm.model import LMConfig, apply, output_log_softmax
from jaxlab.lm.sampler import sample, sequences
from jaxlab.lm.tasks import verify
from jaxlab.lm.tokenizer import CharTokenizer
from jaxlab.rl import diagnostics as dg
from jaxlab.rl.advantages import ADVANTAGE_FNS
from jaxlab.rl.kalman import ema_gains, kalman_filter, kalman_gains
from jaxlab.rl.losses import get_policy_loss

NOISE_KINDS = ("none", "gaussian", "student_t")


class RLHParams(NamedTuple):
    """Hyperparameters of the group-relative RL trainer (spec §7 defaults, scaled to the CPU miniature).

    Rollouts: `n_prompts` x `group_size` responses of <= `max_new_tokens` at `temperature` per step, from the
    policy `staleness` versions old, with a `noise` ("none" | "gaussian" | "student_t", `noise_scale`,
    `noise_df`) train-inference mismatch on the behaviour log-probs. Update: `epochs` x `n_minibatches` Adam
    steps (`lr`, `b1`, `b2`) after global-norm clipping at `grad_clip`. Loss: `method` (a
    `jaxlab.rl.losses.POLICY_LOSSES` name) with its own settings (`loss_hparams`); `diag_Q` is the Q/V of
    the diagnostic filter. Cadence: `steps`, `eval_every`, `ckpt_every`; evaluation draws `eval_samples`
    samples per problem in batches of `eval_batch`."""
    method: str = "grpo"
    advantage: str = "grpo"
    agg: str = "seq-mean-token-mean"
    n_prompts: int = 16
    group_size: int = 8
    max_new_tokens: int = 48
    temperature: float = 1.0
    prompt_len: int = 0
    steps: int = 80
    lr: float = 3e-5
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0
    n_minibatches: int = 4
    epochs: int = 2
    staleness: int = 0
    noise: str = "none"
    noise_scale: float = 0.3
    noise_df: float = 2.0
    log_ratio_clip: float = 20.0
    clip_eps: float = 0.2
    clip_eps_high: float = 0.2
    dual_clip: float = 3.0
    gspo_eps_low: float = 3e-4
    gspo_eps_high: float = 4e-4
    gmpo_delta: float = 0.4
    kpo_Q: float = 1e-2
    kpo_V: float = 1.0
    kpo_P0: float = 1.0
    kpo_init: str = "prior"
    kpo_grad: str = "stopgrad"
    kpo_ema_alpha: float = 0.0
    diag_Q: float = 1e-2
    eval_every: int = 20
    eval_samples: int = 8
    eval_batch: int = 64
    ckpt_every: int = 10


def default_rl_config() -> ml_collections.ConfigDict:
    """The `rl` config section: `RLHParams`' defaults as a ConfigDict (experiments override it)."""
    return ml_collections.ConfigDict(RLHParams()._asdict())


def rl_hparams(section) -> RLHParams:
    """The one conversion of an `rl` config section (ConfigDict or dict) into `RLHParams`.

    Raises ValueError naming an unknown key or a key left unset (None)."""
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    unknown = sorted(set(d) - set(RLHParams._fields))
    if unknown:
        raise ValueError(f"rl: unknown key(s) {unknown}; expected a subset of {list(RLHParams._fields)}")
    unset = sorted(k for k, v in d.items() if v is None)
    if unset:
        raise ValueError(f"rl: key(s) {unset} are unset (None); give them a value")
    return RLHParams(**d)


def _gains(rl, T: int) -> np.ndarray:
    if rl.kpo_ema_alpha > 0:
        return ema_gains(T, alpha=rl.kpo_ema_alpha)
    return kalman_gains(T, Q=rl.kpo_Q, V=rl.kpo_V, P0=rl.kpo_P0, init=rl.kpo_init)


def loss_hparams(rl, T: int) -> dict:
    """Keyword hyperparameters of `get_policy_loss(rl.method)` from `rl` (an RLHParams)."""
    m = rl.method
    common = dict(agg=rl.agg, log_ratio_clip=rl.log_ratio_clip)
    if m == "grpo":
        return dict(common, clip_eps=rl.clip_eps, clip_eps_high=rl.clip_eps_high)
    if m == "grpo_dual":
        return dict(common, clip_eps=rl.clip_eps, clip_eps_high=rl.clip_eps_high, dual_clip=rl.dual_clip)
    if m in ("gspo", "gspo_token"):
        return dict(common, clip_eps=rl.gspo_eps_low, clip_eps_high=rl.gspo_eps_high)
    if m == "gmpo":
        return dict(common, delta=rl.gmpo_delta)
    if m == "kpo":     # unclipped: no clip range
        return dict(common, gains_t=_gains(rl, T), grad=rl.kpo_grad)
    if m in ("kpo_clipped", "kpo_tr"):
        return dict(common, gains_t=_gains(rl, T), grad=rl.kpo_grad, clip_eps=rl.clip_eps,
                    clip_eps_high=rl.clip_eps_high)
    raise ValueError(f"rl.method: unknown method {m!r}")


def default_reward_fn(tok: CharTokenizer):
    """reward_fn(tokens [N, T] int numpy, answers [N]) -> [N] float32 (1 if 'A:<answer>' is exact)."""
    def reward_fn(tokens_nt, answers_n):
        return np.array([float(verify(tok.decode(row, stop_at_eos=True), int(a)))
                         for row, a in zip(tokens_nt, answers_n)], np.float32)
    return reward_fn


def mismatch_noise(key, shape, *, kind: str, scale: float, df: float = 2.0):
    """Train-inference mismatch xi [shape]: 0, scale * N(0,1) or scale * Student-t(df), i.i.d. per token."""
    if kind == "none" or scale == 0:
        return jnp.zeros(shape, jnp.float32)
    if kind == "gaussian":
        return scale * jax.random.normal(key, shape)
    if kind == "student_t":
        return scale * jax.random.t(key, df, shape)
    raise ValueError(f"noise: expected one of {NOISE_KINDS}, got {kind!r}")


def response_logprobs_entropy(params, seq_bl, resp_mask_bl, *, cfg: LMConfig, P: int):
    """Teacher-forced log-probs and entropies of the response positions.

    seq_bl [B, P+N] prompt+response tokens; returns (logp [B, N], entropy [B, N]), 0 off the mask.
    """
    logits = apply(params, seq_bl, cfg=cfg)[:, P - 1:-1]           # predicts tokens P..P+N-1
    lp_all = output_log_softmax(logits, cfg)
    tgt = seq_bl[:, P:]
    lp = jnp.take_along_axis(lp_all, tgt[..., None], axis=-1)[..., 0]
    p = jnp.exp(lp_all)
    ent = -jnp.sum(jnp.where(p > 0, p * lp_all, 0.0), axis=-1)
    m = resp_mask_bl[:, P:]
    return jnp.where(m, lp, 0.0), jnp.where(m, ent, 0.0)


# RLHParams fields that the compiled update does not depend on (rollouts, cadence, evaluation).
_NOT_IN_UPDATE = ("advantage", "n_prompts", "group_size", "max_new_tokens", "temperature", "prompt_len", "steps",
                  "staleness", "noise", "noise_scale", "noise_df", "eval_every", "eval_samples", "eval_batch",
                  "ckpt_every")


def cached_update(cfg: LMConfig, rl: RLHParams, *, P: int, N: int, rows: int):
    """`make_update` with `rl`'s own loss, memoised by value (functools.lru_cache over hashable arguments)
    on the fields the update depends on, so seeds, conditions and repeated `make_train` calls with equal
    update settings share one compiled update."""
    return _cached_update(cfg, rl._replace(**{f: RLHParams._field_defaults[f] for f in _NOT_IN_UPDATE}),
                          P=P, N=N, rows=rows)


@functools.lru_cache(maxsize=16)
def _cached_update(cfg: LMConfig, rl: RLHParams, *, P: int, N: int, rows: int):
    return make_update(cfg, rl, P=P, N=N, rows=rows, loss_fn=get_policy_loss(rl.method, **loss_hparams(rl, N)))


def make_update(cfg: LMConfig, rl, *, P: int, N: int, rows: int, loss_fn: Callable,
                diagnostics: bool = True, num_agents: int = 0):
    """Jitted `update(params, opt_state, batch, key) -> (params, opt_state, metrics [mu])`.

    diagnostics: also filter every update's log-ratios with the fixed diagnostic filter (Q/V =
    `rl.diag_Q`) and report switch frequency / run length / low-frequency power before and after
    (the trainer needs them; False leaves only the loss's own metrics, for benchmarks).
    num_agents: K > 0 reports per-agent pre-clip gradient norms `grad_norm_agent` [mu, K]: the batch
    then holds `agent` [R] int ids in [0, K), and agent k's gradient is the gradient of the loss with
    every other agent's advantages set to 0 (its exact share of the loss: the policy losses are a sum
    of per-row terms that vanish at A = 0), one backward pass per agent; the update uses their sum.
    `rl` only needs the attributes n_minibatches, epochs, grad_clip, lr, b1, b2, diag_Q and
    log_ratio_clip (an `RLHParams` or any NamedTuple with them).

    batch: dict seq [R, P+N] int, mask [R, P+N] bool (response mask, zero rows = skipped),
    old_logp [R, N], adv [R]. mu = epochs * n_minibatches Adam steps on random minibatches.
    """
    nmb, epochs = rl.n_minibatches, rl.epochs
    if rows % nmb:
        raise ValueError(f"rl.n_minibatches: {nmb} does not divide the {rows} rollout rows")
    mb = rows // nmb
    tx = optax.chain(optax.clip_by_global_norm(rl.grad_clip),
                     optax.adam(rl.lr, b1=rl.b1, b2=rl.b2))
    diag_K = kalman_gains(N, Q=rl.diag_Q, V=1.0, P0=1.0)

    def loss_of(params, b):
        logp, ent = response_logprobs_entropy(params, b["seq"], b["mask"], cfg=cfg, P=P)
        m = b["mask"][:, P:]
        loss, met = loss_fn(logp, b["old_logp"], b["adv"], m)
        if not diagnostics:
            return loss, dict(met, loss=loss)
        z = jax.lax.stop_gradient(jnp.where(m, jnp.clip(logp - b["old_logp"], -rl.log_ratio_clip,
                                                        rl.log_ratio_clip), 0.0))
        x = kalman_filter(z, diag_K, mask_bt=m)
        met = {k: v for k, v in met.items() if not k.startswith("switch")}
        met.update(entropy=dg.masked_mean(jax.lax.stop_gradient(ent), m),
                   switch_raw=dg.switch_frequency(z, m), switch_filt=dg.switch_frequency(x, m),
                   runlen_raw=dg.mean_run_length(z, m), runlen_filt=dg.mean_run_length(x, m),
                   lowfreq_raw=dg.low_freq_power_fraction(z, m),
                   lowfreq_filt=dg.low_freq_power_fraction(x, m), loss=loss)
        return loss, met

    def agent_grads(params, b):
        def grad_k(k):
            bk = dict(b, adv=jnp.where(b["agent"] == k, b["adv"], 0.0))
            return jax.grad(lambda p: loss_of(p, bk)[0])(params)
        g_k = jax.vmap(grad_k)(jnp.arange(num_agents))
        _, met = loss_of(params, b)
        met["grad_norm_agent"] = jax.vmap(optax.global_norm)(g_k)
        return met, jax.tree_util.tree_map(lambda g: g.sum(0), g_k)

    def one(carry, idx):
        params, opt_state, batch = carry
        b = jax.tree_util.tree_map(lambda a: a[idx], batch)
        if num_agents:
            met, grads = agent_grads(params, b)
        else:
            (_, met), grads = jax.value_and_grad(loss_of, has_aux=True)(params, b)
        met["grad_norm"] = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, batch), met

    @jax.jit
    def update(params, opt_state, batch, key):
        perms = jax.vmap(lambda k: jax.random.permutation(k, rows))(jax.random.split(key, epochs))
        idx = perms.reshape(epochs * nmb, mb)
        (params, opt_state, _), met = jax.lax.scan(one, (params, opt_state, batch), idx)
        return params, opt_state, met

    return tx, update


def evaluate_policy(params, problems, *, cfg: LMConfig, tok: CharTokenizer, key, n_samples: int,
                    max_new_tokens: int, prompt_len: int, batch: int = 64) -> dict:
    """Held-out greedy accuracy, avg@n (mean sampled accuracy) and unbiased pass@n (T = 1)."""
    g = generate_answers(params, problems, cfg=cfg, tok=tok, mode="cot", greedy=True,
                         max_new_tokens=max_new_tokens, batch_size=batch, prompt_len=prompt_len)
    out = {"greedy_acc": float(g["correct"].mean()), "greedy_len": float(g["n_tokens"].mean())}
    if n_samples > 0:
        s = generate_answers(params, problems, cfg=cfg, tok=tok, mode="cot", greedy=False, key=key,
                             num_samples=n_samples, max_new_tokens=max_new_tokens,
                             batch_size=max(1, batch // n_samples), prompt_len=prompt_len)
        c = s["correct"].sum(1)
        out[f"avg@{n_samples}"] = float(s["correct"].mean())
        out[f"pass@{n_samples}"] = float(pass_at_k(n_samples, c, n_samples).mean())
    return out


def _checked_prompt_len(rl, cfg: LMConfig, tok, problems) -> int:
    """The prompt length (rl.prompt_len, else the longest CoT prompt) after checking the RL settings."""
    if rl.noise not in NOISE_KINDS:
        raise ValueError(f"rl.noise: expected one of {NOISE_KINDS}, got {rl.noise!r}")
    if rl.staleness < 0:
        raise ValueError(f"rl.staleness: expected >= 0, got {rl.staleness}")
    N = rl.max_new_tokens
    plen = rl.prompt_len or max(len(tok.encode("<bos>" + p.prompt("cot"))) for p in problems)
    if plen + N > cfg.max_len:
        raise ValueError(f"rl.max_new_tokens: prompt length {plen} + {N} exceeds max_len {cfg.max_len}")
    return plen


def _rollout_batch(behaviour, k, train_prompts, answers, *, cfg: LMConfig, rl, reward_fn, adv_jit):
    """One step's rollouts: n_prompts prompts drawn from k, G samples each from the behaviour params,
    verifier rewards, group advantages, and the behaviour log-probs with the configured mismatch noise.
    Groups whose advantages are all 0 are masked out. -> (batch, rewards [P, G], keep [P], sampler
    output, the update's key)."""
    Pn, G, N = rl.n_prompts, rl.group_size, rl.max_new_tokens
    k_prompt, k_sample, k_noise, k_upd = jax.random.split(k, 4)
    idx = np.asarray(jax.random.choice(k_prompt, len(answers), (Pn,), replace=False))
    out = sample(behaviour, k_sample, train_prompts[idx], cfg=cfg, max_new_tokens=N,
                 num_samples=G, temperature=rl.temperature)
    seq, mask = sequences(train_prompts[idx], out)
    toks = np.asarray(out.tokens).reshape(Pn * G, N)
    rewards = reward_fn(toks, np.repeat(answers[idx], G)).reshape(Pn, G)
    adv = adv_jit(jnp.asarray(rewards))
    keep = jnp.any(adv != 0, axis=1)                              # skip all-zero groups
    row_keep = jnp.repeat(keep, G)
    old = out.logprobs.reshape(Pn * G, N)
    old = old + mismatch_noise(k_noise, old.shape, kind=rl.noise, scale=rl.noise_scale, df=rl.noise_df)
    old = jnp.where(out.mask.reshape(Pn * G, N), old, 0.0)
    batch = {"seq": seq, "mask": mask & row_keep[:, None], "old_logp": old, "adv": adv.reshape(-1)}
    return batch, rewards, keep, out, k_upd


_UPDATE_METRICS = ("clip_frac", "log_ratio_var", "log_ratio_absmax", "ratio_max", "switch_raw", "switch_filt",
                   "runlen_raw", "runlen_filt", "lowfreq_raw", "lowfreq_filt", "entropy", "loss")
_HOST_METRICS = ("reward", "groups_used", "resp_len")
_STEP_METRICS = ("grad_norm",) + _UPDATE_METRICS + ("updated",) + _HOST_METRICS   # what `_rl_step` returns


def _step_record(met: dict) -> dict:
    """The history record of one RL step from its `_rl_step` metrics: the rollout statistics, then (when the
    step updated) the update metrics reduced over its mu minibatches in float64 (max for the extremes, all
    pre-clip norms kept)."""
    rec = {k: float(met[k]) for k in _HOST_METRICS}
    if bool(met["updated"]):
        gn = np.asarray(met["grad_norm"], np.float64)
        rec.update(grad_norm_max=float(gn.max()), grad_norm_mean=float(gn.mean()),
                   grad_norms=[float(v) for v in gn])
        for name in _UPDATE_METRICS:
            v = np.asarray(met[name], np.float64)
            rec[name] = float(v.max() if name in ("log_ratio_absmax", "ratio_max") else v.mean())
    return rec


def _rl_init(key, *, tx, init_params, staleness: int):
    del key   # the warm start is the initial policy
    params = init_params.value
    return loop.TrainState(params, tx.init(params), jnp.zeros((), jnp.int32), extra=(params,) * staleness)


def _rl_step(state: loop.TrainState, b: dict, *, update: Callable, staleness: int):
    """One RL step on a collected rollout batch b = {batch, key, any_keep, host}: rotate the stale buffer
    (`state.extra`: the last `staleness` policies, oldest first; extra[0] draws the rollouts),
    then the update's mu Adam steps, skipped (params and optimiser state unchanged, metrics 0) when every
    group's advantages are 0. Metrics: the update's [mu] metrics, `updated`, and the host statistics."""
    stale = state.extra[1:] + (state.params,) if staleness else state.extra
    args = (state.params, state.opt_state, b["batch"], b["key"])
    skipped = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(update, *args))
    params, opt_state, met = jax.lax.cond(b["any_keep"], lambda: update(*args),
                                          lambda: (state.params, state.opt_state, skipped[2]))
    met = {k: met[k] for k in ("grad_norm",) + _UPDATE_METRICS}
    return (state.replace(params=params, opt_state=opt_state, step=state.step + 1, extra=stale),
            {**met, "updated": b["any_keep"], **b["host"]})


def rl_trainer(rl: RLHParams, update: Callable, tx, init_params) -> loop.Trainer:
    """`loop.Trainer` of the RL post-training: `init(key) -> loop.TrainState` (extra = the stale policies) from the warm start `init_params`, and
    `step(state, b) -> (state, metrics)` on one collected rollout batch (`rl_collect`); `update` and `tx`
    come from `make_update` / `cached_update`."""
    return loop.Trainer(init=loop.bind(_rl_init, tx=tx, init_params=loop.Static(init_params), staleness=rl.staleness),
                        step=loop.bind(_rl_step, update=update, staleness=rl.staleness))


class _RLRun(NamedTuple):
    """Everything `make_train`'s train(key) needs (the hyperparameters, the jitted update, the data, the hooks)."""
    rl: RLHParams
    cfg: LMConfig
    tok: Any
    init_params: Any
    tx: Any
    update: Callable
    train_prompts: np.ndarray
    answers: np.ndarray
    eval_problems: Sequence
    prompt_len: int
    reward_fn: Callable
    adv_jit: Callable
    ckpt_dir: Optional[str]
    log_fn: Optional[Callable]
    progress: Optional[Callable]
    mesh: Any = None


def _rl_collect(run: _RLRun, key_data):
    """The host step of `loop.run`: step i's rollouts (sampler + verifier) from the behaviour policy."""
    def collect(state: loop.TrainState, i: int) -> dict:
        behaviour = state.extra[0] if run.rl.staleness else state.params
        batch, rewards, keep, out, k_upd = _rollout_batch(
            behaviour, jax.random.fold_in(key_data, i), run.train_prompts, run.answers, cfg=run.cfg, rl=run.rl,
            reward_fn=run.reward_fn, adv_jit=run.adv_jit)
        host = {"reward": float(rewards.mean()), "groups_used": float(np.asarray(keep).mean()),
                "resp_len": float(np.asarray(out.lengths).mean())}
        return {"batch": batch, "key": k_upd, "any_keep": jnp.any(keep),
                "host": {k: np.asarray(v, np.float32) for k, v in host.items()}}
    return collect


def _rl_history(h: dict, wall_s: float) -> dict:
    """loop.run's history -> the RL history: eval records, then per-step lists of `_step_record` (the update
    metrics only for the steps that updated), and wall_s."""
    hist = {"eval": list(h["eval"])}
    for i in range(len(h["step"])):
        for name, v in _step_record({k: h[k][i] for k in _STEP_METRICS}).items():
            hist.setdefault(name, []).append(v)
    hist["wall_s"] = wall_s
    return hist


def _train_rl(run: _RLRun, key):
    """train(key) of `make_train` -> (params, history), on `loop.run` with the rollouts as its host step."""
    key_data, key_eval = jax.random.split(key)
    rl = run.rl

    def eval_fn(state):
        step = int(state.step)
        r = evaluate_policy(state.params, run.eval_problems, cfg=run.cfg, tok=run.tok,
                            key=jax.random.fold_in(key_eval, step), n_samples=rl.eval_samples,
                            max_new_tokens=rl.max_new_tokens, prompt_len=run.prompt_len, batch=rl.eval_batch)
        if run.log_fn is not None:
            run.log_fn(step, kind="eval", **r)
        return r

    def step_log(step, m):
        rec = _step_record(m)
        if run.log_fn is not None:
            run.log_fn(step, **{k: v for k, v in rec.items() if k != "grad_norms"})
        if run.progress is not None:
            run.progress(step, reward=rec["reward"])

    t0 = time.perf_counter()
    state, h = loop.run(rl_trainer(rl, run.update, run.tx, run.init_params), key, steps=rl.steps,
                        chunk=math.gcd(rl.eval_every, rl.ckpt_every), collect=_rl_collect(run, key_data),
                        eval_fn=eval_fn, eval_every=rl.eval_every, eval_at_start=True, ckpt_dir=run.ckpt_dir,
                        keep=1, step_log_fn=step_log, progress=False, mesh=run.mesh)
    return state.params, _rl_history(h, time.perf_counter() - t0)


@dataclasses.dataclass(frozen=True, eq=False)   # a callable jax.jit can weak-reference (a NamedTuple cannot)
class RLTrain:
    """What `make_train` returns: callable as `train(key) -> (params, history)`, with the padded prompt length
    `prompt_len` its rollouts use."""
    run: Any            # the `_RLRun` of the call
    prompt_len: int

    def __call__(self, key):
        return _train_rl(self.run, key)


def make_train(rl: RLHParams, *, cfg: LMConfig, init_params,
               train_problems: Sequence, eval_problems: Sequence,
               advantage_fn: Optional[Callable] = None, reward_fn: Optional[Callable] = None,
               loss_fn: Optional[Callable] = None, ckpt_dir: Optional[str] = None,
               log_fn: Optional[Callable] = None, progress: Optional[Callable] = None, mesh=None) -> RLTrain:
    """Returns `train(key) -> (params, history)`.

    Args:
      rl: the typed hyperparameters (`rl_hparams(config.rl)` is the experiment's one conversion of its config
        section; an unknown or unset key is a ValueError naming it). A ConfigDict here is a TypeError.
      cfg: the LM's static config; init_params: warm-start parameters (the SFT model).
      train_problems / eval_problems: `jaxlab.lm.Problem`s (disjoint splits).
      advantage_fn: rewards [P, G] -> advantages [P, G] (default `ADVANTAGE_FNS[rl.advantage]`).
      reward_fn: (tokens [N, T] numpy, answers [N]) -> rewards [N] (default: exact-answer verifier).
      loss_fn: policy loss (default `get_policy_loss(rl.method, **loss_hparams(rl, N))`).
      ckpt_dir: orbax checkpoints there every `rl.ckpt_every` steps; a rerun resumes.
      log_fn: `log_fn(step, **scalars)`; progress: `progress(step, **scalars)` per step.
      mesh: optional `jax.sharding.Mesh` with a "data" axis: each step's rollout rows are split over it
        (`loop.run(mesh=...)`), the parameters replicated.
    Returns:
      train(key) -> (params, history) with per-step lists ("reward", "grad_norm_max",
      "grad_norm_mean", "clip_frac", "log_ratio_var", "log_ratio_absmax", "switch_raw",
      "switch_filt", "runlen_raw", "runlen_filt", "lowfreq_raw", "lowfreq_filt", "entropy",
      "grad_norms" (all mu pre-clip norms)), and "eval": list of {step, greedy_acc, avg@k, pass@k}.
    """
    if not isinstance(rl, RLHParams):
        raise TypeError(f"rl: expected an RLHParams (convert a config's rl section once with rl_hparams), got "
                        f"{type(rl).__name__}")
    tok = CharTokenizer()
    Pn, G, N = rl.n_prompts, rl.group_size, rl.max_new_tokens
    plen = _checked_prompt_len(rl, cfg, tok, list(train_problems) + list(eval_problems))
    advantage_fn = advantage_fn or ADVANTAGE_FNS[rl.advantage]
    reward_fn = reward_fn or default_reward_fn(tok)
    if loss_fn is None:
        tx, update = cached_update(cfg, rl, P=plen, N=N, rows=Pn * G)
    else:
        tx, update = make_update(cfg, rl, P=plen, N=N, rows=Pn * G, loss_fn=loss_fn)
    train_prompts = prompts_of(train_problems, tok, "cot", plen)
    answers = np.array([p.answer for p in train_problems])
    adv_jit = jax.jit(advantage_fn)

    return RLTrain(run=_RLRun(rl, cfg, tok, init_params, tx, update, train_prompts, answers, eval_problems, plen,
                              reward_fn, adv_jit, ckpt_dir, log_fn, progress, mesh), prompt_len=plen)
