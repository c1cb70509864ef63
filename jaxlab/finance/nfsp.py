"""Neural fictitious self-play pieces (Heinrich & Silver 2016; as used by the robust-trading paper B).

* Reservoir buffer (Vitter's algorithm R) as pure functions: after n additions every item is held with
  probability min(1, capacity / n).
* Anticipatory mixing: with probability eta act with the best response (epsilon-greedy on Q), otherwise
  with the average policy; only non-random best-response actions enter the reservoir.
* Exploitability of a two-player zero-sum matrix game with OpenSpiel's convention:
  exploitability = NashConv / 2, NashConv = max_i (A y)_i - min_j (x^T A)_j.
* `nfsp_matrix_game`: tabular NFSP on a matrix game (matching pennies, rock-paper-scissors) as one
  `lax.scan` of `game_trainer`'s step (a `jaxlab.core.loop.Trainer` over `loop.TrainState`); the average
  policy is trained by cross-entropy on reservoir samples (canonical NFSP), the best response by bandit
  Q-learning against the sampled opponent action.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import loop
from jaxlab.finance.dqn import epsilon_schedule

MATCHING_PENNIES = np.array([[1.0, -1.0], [-1.0, 1.0]])
ROCK_PAPER_SCISSORS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])


# ---------------------------------------------------------------------------------------- reservoir
class Reservoir(NamedTuple):
    data: object          # pytree with leading axis [capacity]
    count: jax.Array      # [] int32, items offered so far


def reservoir_init(capacity: int, example) -> Reservoir:
    """An empty reservoir holding `capacity` items shaped like `example` (a pytree of arrays)."""
    if capacity < 1:
        raise ValueError(f"capacity: expected >= 1, got {capacity}")
    data = jax.tree_util.tree_map(lambda a: jnp.zeros((capacity,) + jnp.shape(a), jnp.asarray(a).dtype), example)
    return Reservoir(data, jnp.zeros((), jnp.int32))


def reservoir_add(res: Reservoir, item, key, *, valid=True) -> Reservoir:
    """Algorithm R: slot = count if count < capacity, else j ~ U{0..count} kept iff j < capacity.
    `valid` False leaves the reservoir unchanged (used inside scans)."""
    cap = jax.tree_util.tree_leaves(res.data)[0].shape[0]
    j = jax.random.randint(key, (), 0, jnp.maximum(res.count + 1, 1))
    slot = jnp.where(res.count < cap, res.count, j)
    write = jnp.asarray(valid) & (slot < cap)
    data = jax.tree_util.tree_map(
        lambda d, x: d.at[jnp.minimum(slot, cap - 1)].set(jnp.where(write, x, d[jnp.minimum(slot, cap - 1)])),
        res.data, item)
    return Reservoir(data, res.count + jnp.asarray(valid, jnp.int32))


def reservoir_size(res: Reservoir) -> jax.Array:
    cap = jax.tree_util.tree_leaves(res.data)[0].shape[0]
    return jnp.minimum(res.count, cap)


def reservoir_sample(res: Reservoir, key, batch: int):
    """Uniform batch (with replacement) from the filled part; indices [batch]."""
    idx = jax.random.randint(key, (batch,), 0, jnp.maximum(reservoir_size(res), 1))
    return jax.tree_util.tree_map(lambda d: d[idx], res.data)


# ------------------------------------------------------------------------------------- anticipatory
def anticipatory_choice(key, eta, shape=()):
    """True where the agent acts with its best response (probability eta)."""
    return jax.random.uniform(key, shape) < eta


def nfsp_action(k_explore, k_random, k_avg, q_a, logits_a, use_br, eps):
    """One NFSP decision: with `use_br` the best response (eps-greedy on q_a [A]), else a sample of the average
    policy softmax(logits_a [A]). Returns (action int32, True when it is a non-random best-response action,
    the only kind that enters the reservoir)."""
    explore = jax.random.uniform(k_explore) < eps
    a_br = jnp.where(explore, jax.random.randint(k_random, (), 0, q_a.shape[0]), jnp.argmax(q_a))
    a = jnp.where(use_br, a_br, jax.random.categorical(k_avg, logits_a))
    return a.astype(jnp.int32), use_br & ~explore


# ----------------------------------------------------------------------------------- exploitability
def nash_conv(payoff_ab, x_a, y_b):
    """NashConv of (x, y) in the zero-sum game with row payoff A: max(A y) - min(x^T A)."""
    A = jnp.asarray(payoff_ab)
    return jnp.max(A @ y_b) - jnp.min(x_a @ A)


def exploitability(payoff_ab, x_a, y_b):
    """OpenSpiel's exploitability = NashConv / 2 (0 at a Nash equilibrium)."""
    return 0.5 * nash_conv(payoff_ab, x_a, y_b)


# ------------------------------------------------------------------------------ tabular NFSP on a game
class GameNFSPHParams(NamedTuple):
    """Tabular NFSP on a matrix game: anticipatory eta, Q step q_lr, average-policy SGD step sl_lr on sl_batch
    reservoir samples, eps-greedy from eps_start to eps_end over eps_decay plays (None: the whole run), reservoir
    capacity, average-policy logits started at init_bias on the first action."""
    eta: float = 0.1
    q_lr: float = 0.02
    sl_lr: float = 0.1
    sl_batch: int = 32
    eps_start: float = 0.3
    eps_end: float = 0.0
    eps_decay: Optional[int] = None
    capacity: int = 2000
    init_bias: float = 2.0


# The game's `loop.TrainState`: params {"q": (Q1 [A], Q2 [B]), "logits": (average-policy logits per player)},
# opt_state None (tabular updates), step = plays so far, key carried (split 7 ways per play), extra {"res":
# (Reservoir of int32 actions) per player}. The step's batch is the payoff matrix A [A, B] (a jit argument).


def _init_logits(n: int, init_bias: float):
    return jnp.zeros((n,)).at[0].set(init_bias)


def _game_init(key, *, hp: GameNFSPHParams, num_actions: tuple):
    na, nb = num_actions
    _, key = jax.random.split(key)
    res = reservoir_init(hp.capacity, jnp.zeros((), jnp.int32))
    return loop.TrainState(params={"q": (jnp.zeros(na), jnp.zeros(nb)),
                                   "logits": (_init_logits(na, hp.init_bias), _init_logits(nb, hp.init_bias))},
                           opt_state=None, step=jnp.zeros((), jnp.int32), key=key, extra={"res": (res, res)})


def _game_step(st, payoff_ab, *, hp: GameNFSPHParams, eps_decay: int):
    """`loop.Trainer.step`: one simultaneous play of both players, Q and reservoir updates, one average-policy
    SGD step each -> (state, {exploitability of the average / best-response profile, player 1's greedy action})."""
    A = payoff_ab
    na, nb = A.shape

    def act(k, q, logits, eps):
        kb, ke, kr, kp = jax.random.split(k, 4)
        return nfsp_action(ke, kr, kp, q, logits, anticipatory_choice(kb, hp.eta), eps)

    def sl_step(k, logits, res):
        a = reservoir_sample(res, k, hp.sl_batch)
        target = jnp.mean(jax.nn.one_hot(a, logits.shape[0]), 0)
        g = jax.nn.softmax(logits) - target               # d CE / d logits
        return jnp.where(reservoir_size(res) > 0, logits - hp.sl_lr * g, logits)

    (q1, q2), (l1, l2), (res1, res2) = st.params["q"], st.params["logits"], st.extra["res"]
    key, k1, k2, k3, k4, k5, k6 = jax.random.split(st.key, 7)
    eps = epsilon_schedule(st.step, start=hp.eps_start, end=hp.eps_end, decay_steps=eps_decay)
    a1, keep1 = act(k1, q1, l1, eps)
    a2, keep2 = act(k2, q2, l2, eps)
    r1 = A[a1, a2]
    q1 = q1.at[a1].add(hp.q_lr * (r1 - q1[a1]))
    q2 = q2.at[a2].add(hp.q_lr * (-r1 - q2[a2]))
    res1 = reservoir_add(res1, a1, k3, valid=keep1)
    res2 = reservoir_add(res2, a2, k4, valid=keep2)
    l1, l2 = sl_step(k5, l1, res1), sl_step(k6, l2, res2)
    st = st.replace(params={"q": (q1, q2), "logits": (l1, l2)}, step=st.step + 1, key=key,
                    extra={"res": (res1, res2)})
    x, y = jax.nn.softmax(l1), jax.nn.softmax(l2)
    bx, by = jax.nn.one_hot(jnp.argmax(q1), na), jax.nn.one_hot(jnp.argmax(q2), nb)
    return st, {"exploitability": exploitability(A, x, y), "br_exploitability": exploitability(A, bx, by),
                "br_action": jnp.argmax(q1)}


def game_trainer(hp: GameNFSPHParams, *, num_actions: tuple, iters: int):
    """`loop.Trainer` of tabular NFSP self-play: `init(key) -> loop.TrainState`, `step(state, payoff [A, B]) ->
    (state, metrics)`; num_actions = (A, B); iters sets the default eps decay (hp.eps_decay None)."""
    eps_decay = int(iters if hp.eps_decay is None else hp.eps_decay)
    return loop.Trainer(init=loop.bind(_game_init, hp=hp, num_actions=tuple(int(n) for n in num_actions)),
                        step=loop.bind(_game_step, hp=hp, eps_decay=eps_decay))


def nfsp_matrix_game(payoff_ab, key, *, iters=20000, eta=0.1, q_lr=0.02, sl_lr=0.1, sl_batch=32,
                     eps_start=0.3, eps_end=0.0, eps_decay=None, capacity=2000, init_bias=2.0, log_every=500):
    """Tabular NFSP self-play on a two-player zero-sum matrix game (`game_trainer`, one lax.scan of `iters` plays).

    Each player acts with its best response (eps-greedy on bandit Q-values) with probability eta, else
    samples its average policy softmax(logits). Q <- Q + q_lr (r - Q) on the played action; non-random
    best-response actions enter the reservoir; logits take one cross-entropy SGD step (lr sl_lr) on a
    reservoir batch each play. Average-policy logits start at `init_bias` on the first action (far from
    the equilibrium), Q at zero.
    Returns (final loop.TrainState, history dict of arrays [iters // log_every]: exploitability of the average
    profile (with the start prepended), of the best-response profile, and the greedy best-response action of
    player 1, each taken at the last play of every `log_every`).
    """
    A = jnp.asarray(payoff_ab, jnp.float32)
    hp = GameNFSPHParams(eta, q_lr, sl_lr, sl_batch, eps_start, eps_end, eps_decay, capacity, init_bias)
    trainer = game_trainer(hp, num_actions=A.shape, iters=iters)
    st = trainer.init(key)

    def chunk(s, _):
        s, m = loop.scan_steps(s, A, step=trainer.step, length=log_every)
        return s, jax.tree_util.tree_map(lambda v: v[-1], m)

    st, m = jax.lax.scan(chunk, st, None, length=iters // log_every)
    start = exploitability(A, jax.nn.softmax(_init_logits(A.shape[0], init_bias)),
                           jax.nn.softmax(_init_logits(A.shape[1], init_bias)))
    return st, {"exploitability": jnp.concatenate([start[None], m["exploitability"]]),
                "br_exploitability": m["br_exploitability"], "br_action": m["br_action"]}
