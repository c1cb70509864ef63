"""Dr. MAS (arXiv 2602.08847): advantage normalization for multi-agent LLM systems, over step rows.

A batch of a multi-agent system is a flat list of N *step rows*: one row per agent call, keyed by
its prompt (the GRPO group), its agent (role) and its trajectory (one rollout of the system). Absent
steps (a retry that did not happen) are rows with `valid_n = False`, so shapes stay fixed.

Three advantage modes, all pure, jit-able segment reductions (no Python loops over rows):

  grpo_traj    the paper's vanilla (its Eq. 2 as the official code computes it): R_i = mean of
               trajectory i's step rewards, normalized over the trajectories of its prompt,
               broadcast to every step of the trajectory.
  global_step  every valid step of every agent pooled per prompt and normalized (the ablation asked
               for on the authors' tracker, issue #81: step-level pooling without agent identity).
  drmas        Dr. MAS (Eq. 5): normalized per (prompt, agent) over that agent's own steps:
               A = (R - mu_k) / (sigma_k + eps).

Statistics follow the official code by default: unbiased std (ddof = 1), eps = 1e-6 added to the std,
a singleton group gives the raw reward (`singleton="raw"`; `"zero"` gives 0).

The Lemma (spec §5) is an exact identity with population statistics (ddof = 0, eps = 0): under
global_step, the mean over agent k's steps of A^2 is (sigma_k^2 + (mu_k - mu)^2) / sigma^2; under
drmas it is 1. `agent_moments` reports both sides per agent.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.rl.advantages import SINGLETON_RULES, group_advantages

ADV_MODES: tuple[str, ...] = ("grpo_traj", "global_step", "drmas")


def _check_ids(name: str, ids, n: int) -> None:
    """Range check on concrete ids (skipped under tracing)."""
    if isinstance(ids, jax.core.Tracer):
        return
    a = np.asarray(ids)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"{name}: expected ids in [0, {n}), got range [{a.min()}, {a.max()}]")


def _prep(rewards_n, valid_n, **ids):
    r = jnp.asarray(rewards_n, jnp.float32)
    if r.ndim != 1:
        raise ValueError(f"rewards_n: expected a 1-D [N] array, got shape {r.shape}")
    v = jnp.ones(r.shape, bool) if valid_n is None else jnp.asarray(valid_n).astype(bool)
    if v.shape != r.shape:
        raise ValueError(f"valid_n: expected shape {r.shape}, got {v.shape}")
    out = []
    for name, (x, n) in ids.items():
        x = jnp.asarray(x)
        if x.shape != r.shape:
            raise ValueError(f"{name}: expected shape {r.shape} matching rewards_n, got {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"{name}: expected integer ids, got dtype {x.dtype}")
        if n is not None:
            if int(n) < 1:
                raise ValueError(f"{name}: the number of ids must be >= 1, got {n}")
            _check_ids(name, x, int(n))
        out.append(x)
    return r, v, out


def segment_stats(x_n, ids_n, valid_n, *, num_segments: int, ddof: int = 0):
    """Per-segment (count, mean, variance) over valid rows.

    x_n [N] float, ids_n [N] int in [0, num_segments), valid_n [N] bool.
    Returns (n_s, mean_s, var_s), each [num_segments]; var divides by max(n - ddof, 1), and is 0
    where n <= ddof.
    """
    w = valid_n.astype(jnp.float32)
    x0 = jnp.where(valid_n, x_n, 0.0)
    seg = functools.partial(jax.ops.segment_sum, segment_ids=ids_n, num_segments=num_segments)
    n = seg(w)
    mean = seg(x0) / jnp.maximum(n, 1.0)
    dev = jnp.where(valid_n, x0 - mean[ids_n], 0.0)
    var = jnp.where(n > ddof, seg(jnp.square(dev)) / jnp.maximum(n - ddof, 1.0), 0.0)
    return n, mean, var


def grpo_traj_advantages(rewards_n, prompt_ids_n, traj_ids_n, valid_n=None, *, num_prompts: int,
                         num_trajs: int, eps: float = 1e-6, ddof: int = 1, singleton: str = "raw"):
    """Vanilla GRPO of the official code: trajectory return = mean of its valid step rewards,
    normalized over the trajectories of each prompt, broadcast to the trajectory's steps.

    Args:
      rewards_n: [N] step rewards; prompt_ids_n: [N] int in [0, num_prompts); traj_ids_n: [N] int
        in [0, num_trajs) (all steps of a trajectory share its prompt); valid_n: [N] bool.
    Returns: adv_n [N] (0 on invalid rows).
    """
    r, v, (p, t) = _prep(rewards_n, valid_n, prompt_ids_n=(prompt_ids_n, num_prompts),
                         traj_ids_n=(traj_ids_n, num_trajs))
    n_t, ret_t, _ = segment_stats(r, t, v, num_segments=num_trajs)
    traj_prompt = jax.ops.segment_max(jnp.where(v, p, 0), t, num_segments=num_trajs)
    traj_prompt = jnp.clip(traj_prompt, 0, num_prompts - 1)       # empty trajectories: any id
    a_t = group_advantages(ret_t, traj_prompt, num_groups=num_prompts, eps=eps, ddof=ddof,
                           valid_n=n_t > 0, singleton=singleton)
    return jnp.where(v, a_t[t], 0.0)


def global_step_advantages(rewards_n, prompt_ids_n, valid_n=None, *, num_prompts: int,
                           eps: float = 1e-6, ddof: int = 1, singleton: str = "raw"):
    """All valid steps of all agents pooled per prompt: A = (R - mu) / (sigma + eps). [N] -> [N]."""
    r, v, (p,) = _prep(rewards_n, valid_n, prompt_ids_n=(prompt_ids_n, num_prompts))
    return group_advantages(r, p, num_groups=num_prompts, eps=eps, ddof=ddof, valid_n=v,
                            singleton=singleton)


def drmas_advantages(rewards_n, prompt_ids_n, agent_ids_n, valid_n=None, *, num_prompts: int,
                     num_agents: int, eps: float = 1e-6, ddof: int = 1, singleton: str = "raw"):
    """Dr. MAS (Eq. 5): A = (R - mu_k) / (sigma_k + eps) over agent k's valid steps in the prompt.

    The group key is (prompt, agent) = prompt * num_agents + agent (never agent alone). [N] -> [N].
    """
    r, v, (p, a) = _prep(rewards_n, valid_n, prompt_ids_n=(prompt_ids_n, num_prompts),
                         agent_ids_n=(agent_ids_n, num_agents))
    return group_advantages(r, p * num_agents + a, num_groups=num_prompts * num_agents, eps=eps,
                            ddof=ddof, valid_n=v, singleton=singleton)


def step_advantages(mode: str, rewards_n, prompt_ids_n, agent_ids_n, traj_ids_n, valid_n=None, *,
                    num_prompts: int, num_agents: int, num_trajs: int, eps: float = 1e-6,
                    ddof: int = 1, singleton: str = "raw"):
    """Dispatch on `mode` in ADV_MODES ("grpo_traj" | "global_step" | "drmas"). [N] -> [N]."""
    if mode not in ADV_MODES:
        raise ValueError(f"mode: unknown advantage mode {mode!r}; expected one of {ADV_MODES}")
    if singleton not in SINGLETON_RULES:
        raise ValueError(f"singleton: expected one of {SINGLETON_RULES}, got {singleton!r}")
    kw = dict(eps=eps, ddof=ddof, singleton=singleton)
    _prep(rewards_n, valid_n, agent_ids_n=(agent_ids_n, num_agents))
    if mode == "grpo_traj":
        return grpo_traj_advantages(rewards_n, prompt_ids_n, traj_ids_n, valid_n,
                                    num_prompts=num_prompts, num_trajs=num_trajs, **kw)
    if mode == "global_step":
        return global_step_advantages(rewards_n, prompt_ids_n, valid_n, num_prompts=num_prompts,
                                      **kw)
    return drmas_advantages(rewards_n, prompt_ids_n, agent_ids_n, valid_n, num_prompts=num_prompts,
                            num_agents=num_agents, **kw)


def agent_moments(adv_n, rewards_n, prompt_ids_n, agent_ids_n, valid_n=None, *, num_prompts: int,
                  num_agents: int) -> dict:
    """Per-agent diagnostics of one batch (spec §7 metrics), each [num_agents]:

      adv_sq      E[A^2] over agent k's valid steps (pooled over prompts)
      lemma       mean over prompts of (sigma_k^2 + (mu_k - mu)^2) / sigma^2 (population stats;
                  the E[A^2] that global_step would give agent k with eps = 0)
      shift       mean over prompts of (mu_k - mu) / sigma
      var_ratio   mean over prompts of sigma_k^2 / sigma^2
      count       number of valid steps
    Prompts with sigma = 0 or without a step of agent k are left out of the prompt means; a mean
    over no prompt (or E[A^2] of an agent without steps) is reported as 0, never NaN.
    """
    r, v, (p, a) = _prep(rewards_n, valid_n, prompt_ids_n=(prompt_ids_n, None),
                         agent_ids_n=(agent_ids_n, None))
    adv = jnp.asarray(adv_n, jnp.float32)
    K, P = num_agents, num_prompts
    n_k, asq_k, _ = segment_stats(jnp.square(adv), a, v, num_segments=K)
    _, mu_p, var_p = segment_stats(r, p, v, num_segments=P)
    n_pk, mu_pk, var_pk = segment_stats(r, p * K + a, v, num_segments=P * K)
    n_pk, mu_pk, var_pk = (x.reshape(P, K) for x in (n_pk, mu_pk, var_pk))
    ok = (n_pk > 0) & (var_p[:, None] > 0)
    safe = jnp.where(var_p > 0, var_p, 1.0)[:, None]
    shift = (mu_pk - mu_p[:, None]) / jnp.sqrt(safe)
    ratio = var_pk / safe

    def pmean(x):
        return jnp.sum(jnp.where(ok, x, 0.0), 0) / jnp.maximum(ok.sum(0), 1)

    return {"adv_sq": jnp.where(n_k > 0, asq_k, 0.0), "lemma": pmean(ratio + shift ** 2),
            "shift": pmean(shift), "var_ratio": pmean(ratio), "count": n_k}


def spike_stats(norms_t, *, threshold: float, window: int = 20, factor: float = 5.0) -> dict:
    """Spike summary of one gradient-norm series [T] (host-side, numpy).

    spikes: steps above `factor` x the median of the previous `window` steps;
    frac_above: share of steps with norm > `threshold` (a fixed norm level); median: median norm.
    No max: heavy tails make a max meaningless across seeds.
    """
    x = np.asarray(norms_t, np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"spikes": 0, "frac_above": float("nan"), "median": float("nan")}
    n = 0
    for i in range(1, len(x)):
        n += bool(x[i] > factor * np.median(x[max(0, i - window):i]))
    return {"spikes": int(n), "frac_above": float(np.mean(x > threshold)),
            "median": float(np.median(x))}
