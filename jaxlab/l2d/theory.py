"""Exact population quantities of multi-expert L2D: first-correct masses, minimizers, Bayes rule.

Notation (PiCCE paper): a joint correctness distribution over the 2^J patterns ``c in {0,1}^J``
(``c_j = 1`` iff expert j is correct) is a vector ``pattern_probs: [2^J]`` indexed by the integer whose
bit j is ``c_j``. ``Acc_j = P(c_j = 1)``, ``A = sum_j Acc_j``, ``V = P(some c_j = 1)`` (union mass) and, for an
ordering ``sigma``, the first-correct mass ``A_sigma^j = P(c_{sigma_j} = 1, c_{sigma_i} = 0 for i < j)``.
In the exact expected losses below the correctness pattern is independent of the label given x
(an expert that errs predicts ``(y+1) mod K``); the minimizers do not depend on that choice.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


def patterns(num_experts: int) -> np.ndarray:
    """All correctness patterns: ``[2^J, J]`` bool, row i has bit j of i in column j."""
    if num_experts < 1:
        raise ValueError(f"num_experts must be >= 1, got {num_experts}")
    idx = np.arange(2 ** num_experts)
    return ((idx[:, None] >> np.arange(num_experts)[None, :]) & 1).astype(bool)


def _num_experts(pattern_probs) -> int:
    n = len(pattern_probs)
    j = int(round(np.log2(n))) if n > 0 else -1
    if n < 2 or 2 ** j != n:
        raise ValueError(f"pattern_probs must have length 2^J for some J >= 1, got length {n}")
    return j


def independent_pattern_probs(accs) -> jax.Array:
    """Joint pattern distribution of independent experts with accuracies ``accs: [J]`` -> ``[2^J]``."""
    accs = jnp.asarray(accs)
    pats = jnp.asarray(patterns(accs.shape[0]))
    return jnp.prod(jnp.where(pats, accs[None, :], 1.0 - accs[None, :]), axis=-1)


def expert_accuracies(pattern_probs) -> jax.Array:
    """``Acc_j = P(c_j = 1)``: ``[2^J] -> [J]``."""
    pats = jnp.asarray(patterns(_num_experts(pattern_probs)))
    return (jnp.asarray(pattern_probs)[:, None] * pats).sum(0)


def union_mass(pattern_probs):
    """``V = P(at least one expert correct) = 1 - P(no expert correct)``."""
    return 1 - pattern_probs[0]


def first_correct_masses(pattern_probs, order) -> jax.Array:
    """``A_sigma^j`` for ``j = 1..J`` (in the order ``sigma``): ``[2^J] -> [J]`` (float version)."""
    num = _num_experts(pattern_probs)
    order = np.asarray(order)
    pats = patterns(num)[:, order]                                # columns in ranked order
    first = np.cumsum(pats, axis=1) == 1                          # the first correct one in the order
    first &= pats
    return (jnp.asarray(pattern_probs)[:, None] * jnp.asarray(first)).sum(0)


def first_correct_masses_exact(pattern_probs: Sequence[Fraction], order) -> list[Fraction]:
    """Same as :func:`first_correct_masses` with exact rationals (pure Python)."""
    num = _num_experts(pattern_probs)
    out = [Fraction(0)] * num
    for idx, p in enumerate(pattern_probs):
        for rank, j in enumerate(order):
            if (idx >> int(j)) & 1:
                out[rank] += p
                break
    return out


def union_mass_exact(pattern_probs: Sequence[Fraction]) -> Fraction:
    """``V`` summed over every pattern with at least one correct expert (not via the complement)."""
    return sum((p for idx, p in enumerate(pattern_probs) if idx != 0), Fraction(0))


def satisfies_condition1(pattern_probs, *, tol: float = 1e-12) -> bool:
    """Condition 1: a unique most-accurate expert j* and, for every other j and every subset S that
    excludes j and j*, ``P(some of S u {j*} correct) > P(some of S u {j} correct)``."""
    num = _num_experts(pattern_probs)
    probs = np.asarray(pattern_probs, dtype=np.float64)
    pats = patterns(num)
    accs = (probs[:, None] * pats).sum(0)
    order = np.argsort(-accs)
    if num > 1 and accs[order[0]] - accs[order[1]] <= tol:
        return False
    star = int(order[0])

    def p_any(subset):
        cols = list(subset)
        return probs[pats[:, cols].any(-1)].sum() if cols else 0.0

    for j in range(num):
        if j == star:
            continue
        rest = [i for i in range(num) if i not in (j, star)]
        for r in range(len(rest) + 1):
            for sub in itertools.combinations(rest, r):
                if not p_any(sub + (star,)) > p_any(sub + (j,)) + tol:
                    return False
    return True


# ----------------------------------------------------------------------------- closed forms
def vanilla_ce_optimum(eta, accs) -> jax.Array:
    """Paper Eq. 6: ``q = [eta, Acc] / (1 + A)``. ``eta: [K]``, ``accs: [J]`` -> ``[K+J]``."""
    eta, accs = jnp.asarray(eta), jnp.asarray(accs)
    return jnp.concatenate([eta, accs]) / (1.0 + accs.sum())


def picce_ce_optimum(eta, pattern_probs, order) -> jax.Array:
    """PiCCE-CE minimizer for a ranking ``order``: ``q_y = eta_y/(1+V)``, ``q_{K+sigma_j} = A_sigma^j/(1+V)``."""
    eta = jnp.asarray(eta)
    masses = first_correct_masses(pattern_probs, order)
    exp_q = jnp.zeros_like(masses).at[jnp.asarray(order)].set(masses)
    return jnp.concatenate([eta, exp_q]) / (1.0 + union_mass(jnp.asarray(pattern_probs)))


def bayes_deferral(eta, accs) -> jax.Array:
    """Bayes rule for the 0-1 deferral loss: predict ``argmax eta`` if ``max eta >= max Acc``, else defer
    to ``argmax Acc``. ``eta: [B, K]``, ``accs: [B, J]`` -> action ``[B]`` in ``[0, K+J)``."""
    eta, accs = jnp.asarray(eta), jnp.asarray(accs)
    num_classes = eta.shape[-1]
    return jnp.where(eta.max(-1) >= accs.max(-1), jnp.argmax(eta, -1), num_classes + jnp.argmax(accs, -1))


# ----------------------------------------------------------------------------- exact expected losses
def expected_loss(logits, eta, pattern_probs, *, loss_fn: Callable, num_classes: int) -> jax.Array:
    """Exact expected surrogate loss ``E_{y ~ eta, c ~ pattern_probs}[loss]`` averaged over the points.

    Args:
      logits: ``[B, K+J]`` (one row per input point x).
      eta: ``[B, K]`` class posteriors; pattern_probs: ``[2^J]`` or ``[B, 2^J]``.
      loss_fn: one of the losses in :mod:`jaxlab.l2d.losses`.
    Returns: scalar (mean over the B points of the per-point expectation).
    """
    logits = jnp.asarray(logits)
    num_experts = logits.shape[-1] - num_classes
    pats = patterns(num_experts)                                  # [P, J]
    n_pat = pats.shape[0]
    y_o = np.repeat(np.arange(num_classes), n_pat)                # [K*P]
    pat_o = np.tile(np.arange(n_pat), num_classes)                # [K*P]
    preds_o = np.where(pats[pat_o], y_o[:, None], (y_o[:, None] + 1) % num_classes)
    bsz = logits.shape[0]
    pp = jnp.broadcast_to(jnp.asarray(pattern_probs), (bsz, n_pat))
    weights = jnp.asarray(eta)[:, y_o] * pp[:, pat_o]             # [B, K*P]
    n_out = y_o.shape[0]
    tiled = jnp.repeat(logits, n_out, axis=0)                     # [B*K*P, K+J]
    per = loss_fn(tiled, jnp.asarray(np.tile(y_o, bsz), jnp.int32),
                  jnp.asarray(np.tile(preds_o, (bsz, 1)), jnp.int32),
                  num_classes=num_classes, reduction="none").reshape(bsz, n_out)
    return (weights * per).sum(-1).mean()


def ranking_inits(num_classes: int, num_experts: int, *, gap: float = 1.0) -> np.ndarray:
    """Starting points ``[R, K+J]``: zeros plus one start per ordering of the experts (J <= 5).

    PiCCE's population objective is piecewise smooth with one piece per expert ranking, and each piece
    can hold its own local minimum (a wrong ranking is self-consistent when its first-correct masses
    are decreasing), so the global minimizer is found by trying every ranking."""
    starts = [np.zeros(num_classes + num_experts)]
    if num_experts > 1 and num_experts <= 5:
        for order in itertools.permutations(range(num_experts)):
            th = np.zeros(num_classes + num_experts)
            th[num_classes + np.asarray(order)] = gap * np.arange(num_experts, 0, -1)
            starts.append(th)
    return np.stack(starts).astype(np.float32)


def population_minimizer(eta, pattern_probs, *, loss_fn: Callable, num_classes: int,
                         steps: int = 4000, lr: float = 0.1, inits=None, return_all: bool = False):
    """Minimizes the exact expected loss at a single point x over ``theta in R^{K+J}`` with Adam.

    Args:
      eta: ``[K]``; pattern_probs: ``[2^J]``.
      inits: ``[R, K+J]`` starting points optimised in parallel (``vmap``); the one with the lowest final
        expected loss is returned. Default: ``ranking_inits`` (zeros + every ranking, J <= 5).
      return_all: also return ``(thetas [R, K+J], losses [R])``.
    Returns:
      ``theta [K+J]`` (learning rate decays exponentially from ``lr`` to ``lr * 1e-3``).
    """
    eta = jnp.asarray(eta, jnp.float32)[None]
    num_experts = _num_experts(pattern_probs)
    if inits is None:
        inits = ranking_inits(num_classes, num_experts)
    inits = jnp.asarray(inits, jnp.float32).reshape(-1, num_classes + num_experts)
    opt = optax.adam(optax.exponential_decay(lr, steps, 1e-3))
    fn = lambda th: expected_loss(th[None], eta, jnp.asarray(pattern_probs, jnp.float32),
                                  loss_fn=loss_fn, num_classes=num_classes)

    def solve(theta0):
        def step(carry, _):
            th, st = carry
            g = jax.grad(fn)(th)
            upd, st = opt.update(g, st, th)
            return (optax.apply_updates(th, upd), st), None

        theta, _ = jax.lax.scan(step, (theta0, opt.init(theta0)), None, length=steps)[0]
        return theta, fn(theta)

    thetas, vals = jax.jit(jax.vmap(solve))(inits)
    best = thetas[jnp.argmin(vals)]
    return (best, (thetas, vals)) if return_all else best
