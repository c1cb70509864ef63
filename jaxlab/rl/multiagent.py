"""Multi-agent RL trainer for the Solver/Checker orchestra (Dr. MAS, arXiv 2602.08847) on the tiny LM.

One step: draw B prompts, run the orchestra (`jaxlab.rl.orchestra`: 3 jitted sampling turns over
R = B x G rollouts, host routing), score the 3R step rows (faithful or stress regime), compute step
advantages with one of `drmas.ADV_MODES`, and take PPO-clip updates with the landed update step
(`jaxlab.rl.train.make_update`):

  shared weights      one model for both roles (role tokens <S>/<C>), one Adam; the update reports the
                      per-agent pre-clip gradient norms (one backward pass per agent's share of the loss)
  non-shared weights  one copy per agent from the same SFT checkpoint, each with its own Adam state and
                      learning rate, updated on its own rows only (solver: first + retry turns; checker)

An agent whose valid rows all have zero advantage skips its update (as the single-agent trainer skips
all-zero groups), so its parameters and Adam state stay bitwise unchanged.

The trainer follows `jaxlab.core.loop`: `make_train(...)` returns `MultiAgentTrain(trainer, collect,
eval_fn, ...)`; `train(ma, key, steps=..., chunk=..., ckpt_dir=...)` runs it with `loop.run`
(checkpoints after every chunk, resume on rerun).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import loop
from jaxlab.lm.model import LMConfig
from jaxlab.lm.tasks import Problem
from jaxlab.lm.tokenizer import CharTokenizer
from jaxlab.rl import orchestra as orc
from jaxlab.rl.drmas import ADV_MODES, agent_moments, step_advantages
from jaxlab.rl.losses import get_policy_loss
from jaxlab.rl.train import make_update

K = orc.NUM_AGENTS


class MAHParams(NamedTuple):
    """Typed hyperparameters of the multi-agent trainer (hashable)."""
    mode: str = "drmas"                 # advantage mode: grpo_traj | global_step | drmas
    shared: bool = True                 # one model for both roles, or one copy per agent
    regime: str = "faithful"            # reward regime: faithful | stress
    n_prompts: int = 16                 # B prompts per step
    group_size: int = 8                 # G rollouts per prompt (the GRPO group)
    max_new_tokens: int = 40
    prompt_len: int = 0                 # 0: the longest prompt of any turn over train + eval problems
    temperature: float = 1.0
    lr: float = 3e-5                    # shared lr, or the solver's lr (non-shared)
    lr_checker: float = 3e-5            # the checker's lr (non-shared only)
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0
    n_minibatches: int = 1
    epochs: int = 1
    clip_eps: float = 0.2
    agg: str = "seq-mean-token-mean"
    log_ratio_clip: float = 20.0
    eps: float = 1e-6                   # advantage std epsilon
    ddof: int = 1                       # advantage std ddof (torch.std default)
    singleton: str = "raw"              # singleton-group rule (verl: raw reward)
    invalid_penalty: float = 0.1
    checker_bonus: float = 5.0          # stress regime only
    eval_samples: int = 8               # k of system avg@k / pass@k
    diag_Q: float = 1e-2                # unused here (make_update reads it)


class _UpdHP(NamedTuple):
    n_minibatches: int
    epochs: int
    grad_clip: float
    lr: float
    b1: float
    b2: float
    diag_Q: float
    log_ratio_clip: float


class MultiAgentTrain(NamedTuple):
    trainer: loop.Trainer
    collect: Callable
    eval_fn: Callable
    prompt_len: int
    hp: MAHParams


def validate(hp: MAHParams) -> None:
    if hp.mode not in ADV_MODES:
        raise ValueError(f"mode: unknown advantage mode {hp.mode!r}; expected one of {ADV_MODES}")
    if hp.regime not in orc.REGIMES:
        raise ValueError(f"regime: expected one of {orc.REGIMES}, got {hp.regime!r}")
    if hp.group_size < 2:
        raise ValueError(f"group_size: expected >= 2, got {hp.group_size}")


def agent_rows(R: int) -> tuple[np.ndarray, np.ndarray]:
    """Static row indices of each agent in the 3R step rows: (solver [2R], checker [R])."""
    return np.concatenate([np.arange(R), np.arange(2 * R, 3 * R)]), np.arange(R, 2 * R)


def make_train(hp: MAHParams, *, cfg: LMConfig, init_params, train_problems: Sequence[Problem],
               eval_problems: Sequence[Problem], tok: Optional[CharTokenizer] = None,
               eval_key=None, sample_fn: Optional[Callable] = None) -> MultiAgentTrain:
    """Builds the multi-agent trainer.

    Args:
      hp: MAHParams. cfg: the LM's static config. init_params: the SFT warm start (both agents).
      train_problems / eval_problems: disjoint problem lists.
      eval_key: PRNG key of every evaluation (fixed, so all checkpoints and modes share it).
    Returns: MultiAgentTrain(trainer, collect, eval_fn, prompt_len, hp).
    """
    validate(hp)
    tok = tok or CharTokenizer()
    B, G, N = hp.n_prompts, hp.group_size, hp.max_new_tokens
    R = B * G
    L = hp.prompt_len or orc.max_prompt_len(list(train_problems) + list(eval_problems), tok)
    if L + N > cfg.max_len:
        raise ValueError(f"max_new_tokens: prompt length {L} + {N} exceeds the model's max_len "
                         f"{cfg.max_len}")
    if len(train_problems) < B:
        raise ValueError(f"train_problems: expected at least n_prompts={B}, got {len(train_problems)}")
    txs, step = _build(cfg, _core(hp), L)
    mode_idx = np.int32(ADV_MODES.index(hp.mode))
    n_params = 1 if hp.shared else K
    eval_key = jax.random.PRNGKey(10_007) if eval_key is None else eval_key
    train_problems, eval_problems = list(train_problems), list(eval_problems)

    def init(key):
        params = tuple(init_params for _ in range(n_params))
        # params / opt_state: 1-tuples (shared) or (solver, checker) tuples (non-shared)
        return loop.TrainState(params=params, opt_state=tuple(t.init(p) for t, p in zip(txs, params)),
                               key=key, step=jnp.zeros((), jnp.int32))

    def agent_params(state):
        return (state.params[0],) * K if hp.shared else tuple(state.params)

    def collect(state, i):
        k = jax.random.fold_in(state.key, i)
        k_prompt, k_sample = jax.random.split(k)
        idx = np.asarray(jax.random.choice(k_prompt, len(train_problems), (B,), replace=False))
        ep = orc.run_orchestra(agent_params(state), k_sample, [train_problems[j] for j in idx],
                               cfg=cfg, tok=tok, group_size=G, max_new_tokens=N, prompt_len=L,
                               temperature=hp.temperature, sample_fn=sample_fn)
        rew = orc.step_rewards(ep.routing, regime=hp.regime, invalid_penalty=hp.invalid_penalty,
                               checker_bonus=hp.checker_bonus).reshape(-1)
        sm = orc.system_metrics(ep.routing, G)
        return {"seq": ep.seq, "mask": ep.mask, "old_logp": ep.old_logp, "rewards": rew,
                "valid": ep.valid, "agent": ep.agent, "prompt": ep.prompt, "traj": ep.traj,
                "mode": mode_idx,
                "sys": np.array([sm[f"avg@{G}"], sm["first_acc"], sm["checker_acc"], sm["yes_rate"],
                                 sm["retry_rate"], sm["malformed_rate"]], np.float32)}

    def eval_fn(state, problems: Optional[Sequence[Problem]] = None) -> dict:
        return evaluate_system(agent_params(state), problems or eval_problems, cfg=cfg, tok=tok,
                               key=eval_key, n_samples=hp.eval_samples, batch_prompts=B,
                               max_new_tokens=N, prompt_len=L, sample_fn=sample_fn)

    return MultiAgentTrain(loop.Trainer(init=init, step=step), collect, eval_fn, L, hp)


def _core(hp: MAHParams) -> MAHParams:
    """The fields that shape the compiled step (mode and rewards are data), so the three advantage
    modes and both regimes share one compile."""
    return hp._replace(mode=ADV_MODES[0], regime=orc.REGIMES[0], invalid_penalty=0.0,
                       checker_bonus=0.0, eval_samples=0, temperature=1.0)


@functools.lru_cache(maxsize=8)
def _build(cfg: LMConfig, hp: MAHParams, L: int):
    """(optimizers, step) for the core hyperparameters; `step(state, batch)` reads the advantage
    mode from batch["mode"] (an index into ADV_MODES)."""
    B, G, N = hp.n_prompts, hp.group_size, hp.max_new_tokens
    R = B * G
    loss_fn = get_policy_loss("grpo", clip_eps=hp.clip_eps, clip_eps_high=hp.clip_eps, agg=hp.agg,
                              log_ratio_clip=hp.log_ratio_clip)
    upd = lambda lr: _UpdHP(hp.n_minibatches, hp.epochs, hp.grad_clip, lr, hp.b1, hp.b2, hp.diag_Q,
                            hp.log_ratio_clip)
    if hp.shared:
        tx, update = make_update(cfg, upd(hp.lr), P=L, N=N, rows=3 * R, loss_fn=loss_fn,
                                 diagnostics=False, num_agents=K)
        txs, updates = (tx,), (update,)
    else:
        tx_s, up_s = make_update(cfg, upd(hp.lr), P=L, N=N, rows=2 * R, loss_fn=loss_fn,
                                 diagnostics=False)
        tx_c, up_c = make_update(cfg, upd(hp.lr_checker), P=L, N=N, rows=R, loss_fn=loss_fn,
                                 diagnostics=False)
        txs, updates = (tx_s, tx_c), (up_s, up_c)
    rows_s, rows_c = agent_rows(R)
    kw = dict(num_prompts=B, num_agents=K, num_trajs=R, eps=hp.eps, ddof=hp.ddof,
              singleton=hp.singleton)

    def _maybe_update(update, params, opt_state, b, key):
        active = jnp.any((b["adv"] != 0) & jnp.any(b["mask"], axis=1))

        def run(args):
            p, o = args
            return update(p, o, b, key)

        def skip(args):
            p, o = args
            met = jax.eval_shape(lambda: update(p, o, b, key)[2])
            return p, o, jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), met)

        p, o, met = jax.lax.cond(active, run, skip, (params, opt_state))
        return p, o, met, active

    def step(state, batch):
        args = (batch["rewards"], batch["prompt"], batch["agent"], batch["traj"], batch["valid"])
        adv = jax.lax.switch(batch["mode"], [
            functools.partial(step_advantages, m, **kw) for m in ADV_MODES], *args)
        mom = agent_moments(adv, batch["rewards"], batch["prompt"], batch["agent"], batch["valid"],
                            num_prompts=B, num_agents=K)
        mask = batch["mask"] & batch["valid"][:, None]
        ub = {"seq": batch["seq"], "mask": mask, "old_logp": batch["old_logp"], "adv": adv,
              "agent": batch["agent"]}
        key = jax.random.fold_in(jax.random.fold_in(state.key, 1_000_003), state.step)
        if hp.shared:
            p, o, met, act = _maybe_update(updates[0], state.params[0], state.opt_state[0], ub, key)
            params, opt = (p,), (o,)
            gn_agent = met["grad_norm_agent"].mean(0)
            gn = met["grad_norm"].mean()
            clip_frac = met["clip_frac"].mean()
            active = jnp.stack([act, act]).astype(jnp.float32)
        else:
            outs = []
            for a, rows in enumerate((rows_s, rows_c)):
                sub = {k_: v[rows] for k_, v in ub.items() if k_ != "agent"}
                outs.append(_maybe_update(updates[a], state.params[a], state.opt_state[a], sub,
                                          jax.random.fold_in(key, a)))
            params = tuple(o_[0] for o_ in outs)
            opt = tuple(o_[1] for o_ in outs)
            gn_agent = jnp.stack([o_[2]["grad_norm"].mean() for o_ in outs])
            gn = jnp.sqrt(jnp.sum(gn_agent ** 2))
            clip_frac = jnp.mean(jnp.stack([o_[2]["clip_frac"].mean() for o_ in outs]))
            active = jnp.stack([o_[3] for o_ in outs]).astype(jnp.float32)
        v = batch["valid"].astype(jnp.float32)
        ag = jax.nn.one_hot(batch["agent"], K) * v[:, None]                      # [3R, K]
        rew_agent = (ag * batch["rewards"][:, None]).sum(0) / jnp.maximum(ag.sum(0), 1.0)
        sysm = batch["sys"]
        metrics = {"reward": rew_agent, "adv_sq": mom["adv_sq"], "lemma": mom["lemma"],
                   "shift": mom["shift"], "var_ratio": mom["var_ratio"], "grad_norm_agent": gn_agent,
                   "grad_norm": gn, "clip_frac": clip_frac, "updated": active,
                   "team_acc": sysm[0], "first_acc": sysm[1], "checker_acc": sysm[2],
                   "yes_rate": sysm[3], "retry_rate": sysm[4], "malformed_rate": sysm[5]}
        new = state.replace(params=params, opt_state=opt, step=state.step + 1)
        return new, metrics

    return txs, step


def evaluate_system(agent_params, problems: Sequence[Problem], *, cfg: LMConfig, tok: CharTokenizer,
                    key, n_samples: int, batch_prompts: int, max_new_tokens: int, prompt_len: int,
                    sample_fn: Optional[Callable] = None) -> dict:
    """System avg@k / pass@k (k = n_samples, T = 1) and checker metrics on held-out problems, in
    fixed-size batches of `batch_prompts` problems (the last batch is padded with repeats)."""
    probs = list(problems)
    n = len(probs)
    pad = (-n) % batch_prompts
    probs = probs + probs[:1] * pad
    routs = []
    for i in range(0, len(probs), batch_prompts):
        ep = orc.run_orchestra(agent_params, jax.random.fold_in(key, i), probs[i:i + batch_prompts],
                               cfg=cfg, tok=tok, group_size=n_samples, max_new_tokens=max_new_tokens,
                               prompt_len=prompt_len, sample_fn=sample_fn)
        routs.append(ep.routing)
    cat = {f: np.concatenate([getattr(r, f) for r in routs], axis=-1)[..., :n * n_samples]
           for f in orc.Routing._fields}
    return orc.system_metrics(orc.Routing(**cat), n_samples)


def train(ma: MultiAgentTrain, key, *, steps: int, chunk: int, ckpt_dir: Optional[str] = None,
          log_fn: Optional[Callable] = None, progress=False, evaluate: bool = True):
    """Runs the trainer with `jaxlab.core.loop.run` (host collect, eval after every chunk, resume)."""
    return loop.run(ma.trainer, key, steps=steps, chunk=chunk, collect=ma.collect,
                    eval_fn=ma.eval_fn if evaluate else None, ckpt_dir=ckpt_dir, log_fn=log_fn,
                    progress=progress)
