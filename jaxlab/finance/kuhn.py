"""Kuhn poker: exact payoffs, best responses and exploitability, and tabular NFSP self-play on it.

Used by the robust-trading paper's NFSP check ("exploitability on small games with OpenSpiel's convention").

Rules (OpenSpiel's `kuhn_poker`, two players): a deck of three cards J < Q < K (cards 0, 1, 2); each player
antes 1 and is dealt one card (6 equally likely deals). Player 0 acts first. Actions: 0 = pass (check or
fold), 1 = bet (bet or call); a bet is 1 chip. Terminal histories and player 0's payoff, with
s = +1 if player 0 holds the higher card else -1:

    pp  -> s        (check, check: showdown for the antes)
    pbp -> -1       (player 0 folds to a bet)
    pbb -> 2 s      (showdown after bet and call)
    bp  -> +1       (player 1 folds)
    bb  -> 2 s

The game is zero-sum; player 1 receives minus player 0's payoff.

Policy layout: a behaviour policy is an array `policy [2, 6, 2]` = [player, infoset, action] of action
probabilities. Each player has 6 information states, infoset = 3 * h + card:

    player 0:  h = 0 -> history ""  (first move),      h = 1 -> history "pb" (facing a bet after checking)
    player 1:  h = 0 -> history "p" (after a check),   h = 1 -> history "b"  (facing a bet)

so `policy.reshape(2, 2, 3, 2)` is [player, h, card, action]; `INFOSET_NAMES` gives OpenSpiel's info-state
strings ("0", "1pb", "2b", ...) in this order. The uniform random policy is `jnp.full((2, 6, 2), 0.5)`.

Exploitability (OpenSpiel's convention): NashConv(pi) = sum_i [max_{pi_i'} u_i(pi_i', pi_-i) - u_i(pi)],
exploitability = NashConv / 2. It is 0 exactly at a Nash equilibrium; the uniform policy has 11/24 =
0.458333 (OpenSpiel's reference value). The game value for player 0 is -1/18 (Kuhn 1950).

`nfsp_kuhn`: tabular NFSP (Heinrich & Silver 2016) in self-play, one chunked `lax.scan` over episodes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.finance.dqn import epsilon_schedule
from jaxlab.finance.nfsp import nfsp_action, reservoir_add, reservoir_init, reservoir_sample, reservoir_size

NUM_CARDS = 3
NUM_INFOSETS = 6
POLICY_SHAPE = (2, NUM_INFOSETS, 2)
INFOSET_NAMES = (("0", "1", "2", "0pb", "1pb", "2pb"), ("0p", "1p", "2p", "0b", "1b", "2b"))
GAME_VALUE = -1.0 / 18.0            # player 0's value at every Nash equilibrium

# The 6 deals as (card of player 0, card of player 1), each with probability 1/6.
_C0 = np.array([0, 0, 1, 1, 2, 2])
_C1 = np.array([1, 2, 0, 2, 0, 1])


# ------------------------------------------------------------------------------------ validation
def _check_policy(policy, name="policy", atol=1e-4):
    """Shape check always; non-negativity and sum-to-one only when the values are concrete."""
    policy = jnp.asarray(policy)
    if policy.shape != POLICY_SHAPE:
        raise ValueError(f"{name}: expected shape {POLICY_SHAPE} = [player, infoset, action], got {policy.shape}")
    try:
        p = np.asarray(policy, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return policy                                       # traced under jit: values cannot be checked
    if np.any(p < -atol) or not np.allclose(p.sum(-1), 1.0, atol=atol):
        raise ValueError(f"{name}: expected non-negative action probabilities summing to 1 over the last "
                         f"axis, got sums {p.sum(-1).round(4).tolist()}")
    return policy


def _split(policy):
    """policy [2, 6, 2] -> (x_root, x_pb, y_p, y_b), each [3, 2] indexed by the acting player's card."""
    return policy[0, :3], policy[0, 3:], policy[1, :3], policy[1, 3:]


def _sign():
    """s[c0, c1] = +1 if c0 > c1, -1 if c0 < c1 (0 on the impossible diagonal); [3, 3]."""
    c = jnp.arange(NUM_CARDS)
    return jnp.sign(c[:, None] - c[None, :]).astype(jnp.float32)


def _chance():
    """P(c0, c1) = 1/6 off the diagonal; [3, 3]."""
    return (1.0 - jnp.eye(NUM_CARDS)) / 6.0


# --------------------------------------------------------------------------------- exact values
def kuhn_expected_payoff(policy):
    """Player 0's expected payoff u_0(pi) under the behaviour profile, exact over the 6 deals.

    u_0 = sum_{deals} 1/6 [x(p) (y_p(p) s + y_p(b) (x_pb(p) (-1) + x_pb(b) 2 s)) + x(b) (y_b(p) + y_b(b) 2 s)].

    Args:
      policy: [2, 6, 2] action probabilities (layout in the module docstring).
    Returns:
      [] float: player 0's value (player 1's is its negative).

    >>> round(float(kuhn_expected_payoff(jnp.full((2, 6, 2), 0.5))), 6)   # uniform vs uniform: 1/8
    0.125
    """
    policy = _check_policy(policy)
    x, x_pb, y_p, y_b = _split(policy)
    x, x_pb, y_p, y_b = x[_C0], x_pb[_C0], y_p[_C1], y_b[_C1]     # each [6 deals, 2]
    s = _sign()[_C0, _C1]                                           # [6]
    after_pb = x_pb[:, 0] * -1.0 + x_pb[:, 1] * 2.0 * s
    v_pass = y_p[:, 0] * s + y_p[:, 1] * after_pb
    v_bet = y_b[:, 0] * 1.0 + y_b[:, 1] * 2.0 * s
    return jnp.mean(x[:, 0] * v_pass + x[:, 1] * v_bet)


def _best_response_values_0(y_p, y_b):
    """Player 0's best response to player 1's (y_p, y_b) [3, 2]: counterfactual action values [3, 2] at
    "" and at "pb" (rows = player 0's card), summed over player 1's cards with weight 1/6 x opponent reach."""
    P, s = _chance(), _sign()                                       # [c0, c1]
    reach_pb = P * y_p[None, :, 1]                                  # player 1 bet after the check
    q_pb = jnp.stack([-jnp.sum(reach_pb, 1), jnp.sum(reach_pb * 2.0 * s, 1)], -1)          # [c0, 2]
    v_pass = jnp.sum(P * y_p[None, :, 0] * s, 1) + jnp.max(q_pb, -1)
    v_bet = jnp.sum(P * (y_b[None, :, 0] + y_b[None, :, 1] * 2.0 * s), 1)
    return jnp.stack([v_pass, v_bet], -1), q_pb


def _best_response_values_1(x, x_pb):
    """Player 1's best response to player 0's (x, x_pb) [3, 2]: counterfactual action values [3, 2] at "p"
    and at "b" for player 1 (rows = player 1's card), weight 1/6 x player 0's reach."""
    P, s = _chance().T, -_sign().T                                  # [c1, c0]; s = +1 if player 1 is higher
    reach_p, reach_b = P * x[None, :, 0], P * x[None, :, 1]
    after_bet = x_pb[None, :, 0] * 1.0 + x_pb[None, :, 1] * 2.0 * s  # player 1's payoff after "pb"
    q_p = jnp.stack([jnp.sum(reach_p * s, 1), jnp.sum(reach_p * after_bet, 1)], -1)
    q_b = jnp.stack([-jnp.sum(reach_b, 1), jnp.sum(reach_b * 2.0 * s, 1)], -1)
    return q_p, q_b


def kuhn_best_response_value(policy, player):
    """max_{pi'} u_player(pi', pi_-player): the value a best response earns against the other player's policy.

    A best response chooses per information state: at each infoset it takes the action with the largest
    counterfactual value (sum over the deals consistent with the infoset, weighted by chance and the
    opponent's reach); player 0's "pb" choice is made first and its value backs up into "".

    Args:
      policy: [2, 6, 2] behaviour profile (only the opponent's part matters).
      player: 0 or 1 (a Python int), the best-responding player.
    Returns:
      [] float, from `player`'s point of view (>= u_player(policy)).
    """
    policy = _check_policy(policy)
    if player not in (0, 1):
        raise ValueError(f"player: expected 0 or 1, got {player!r}")
    x, x_pb, y_p, y_b = _split(policy)
    if player == 0:
        q_root, _ = _best_response_values_0(y_p, y_b)
        return jnp.sum(jnp.max(q_root, -1))
    q_p, q_b = _best_response_values_1(x, x_pb)
    return jnp.sum(jnp.max(q_p, -1)) + jnp.sum(jnp.max(q_b, -1))


def kuhn_nash_conv(policy):
    """NashConv = sum_i [BR_i value - u_i(policy)] = BR_0 + BR_1 (zero-sum). policy [2, 6, 2] -> []."""
    return kuhn_best_response_value(policy, 0) + kuhn_best_response_value(policy, 1)


def kuhn_exploitability(policy):
    """OpenSpiel's exploitability = NashConv / 2; 0 at a Nash equilibrium. policy [2, 6, 2] -> [].

    >>> round(float(kuhn_exploitability(jnp.full((2, 6, 2), 0.5))), 6)   # OpenSpiel: 0.4583333
    0.458333
    """
    return 0.5 * kuhn_nash_conv(policy)


# ------------------------------------------------------------------------------------------- NFSP
class KuhnNFSPState(NamedTuple):
    q: jax.Array          # [2, 6, 2] best-response Q-values, same layout as a policy
    logits: jax.Array     # [2, 6, 2] average-policy logits; the average policy is softmax(logits, -1)
    res: tuple            # (Reservoir, Reservoir): per player, items (infoset int32, action int32)
    key: jax.Array
    t: jax.Array          # [] int32 episodes played


class _HP(NamedTuple):
    eta: float
    q_lr: float
    sl_lr: float
    sl_batch: int
    eps_start: float
    eps_end: float
    eps_decay: int


def _act(key, q_s, logits_s, use_br, eps):
    """One decision at an infoset (`nfsp.nfsp_action` on q_s, logits_s [2])."""
    return nfsp_action(*jax.random.split(key, 3), q_s, logits_s, use_br, eps)


def _play_episode(key, q, logits, eps, eta):
    """Deal and play one hand. Returns infosets i [3] and actions a [3] of the decision slots
    (player 0 at "", player 1 at "p"/"b", player 0 at "pb"), greedy flags [3], whether "pb" was reached,
    and player 0's payoff."""
    kd, km, k0, k1, k2 = jax.random.split(key, 5)
    cards = jax.random.permutation(kd, NUM_CARDS)[:2]
    use_br = jax.random.uniform(km, (2,)) < eta                    # NFSP: one mode per player per episode
    i0, i2 = cards[0], cards[0] + 3
    a0, g0 = _act(k0, q[0, i0], logits[0, i0], use_br[0], eps)
    i1 = cards[1] + 3 * a0                                          # "p" if player 0 passed, "b" if it bet
    a1, g1 = _act(k1, q[1, i1], logits[1, i1], use_br[1], eps)
    a2, g2 = _act(k2, q[0, i2], logits[0, i2], use_br[0], eps)
    reached_pb = (a0 == 0) & (a1 == 1)
    s = jnp.where(cards[0] > cards[1], 1.0, -1.0)
    r_pb = jnp.where(a2 == 1, 2.0 * s, -1.0)
    r_p = jnp.where(a1 == 1, r_pb, s)
    r_b = jnp.where(a1 == 1, 2.0 * s, 1.0)
    r0 = jnp.where(a0 == 1, r_b, r_p)
    return jnp.stack([i0, i1, i2]), jnp.stack([a0, a1, a2]), jnp.stack([g0, g1, g2 & reached_pb]), reached_pb, r0


def _q_update(q, i, a, reached_pb, r0, lr):
    """Q-learning on infosets (off-policy, every episode): terminal targets are the payoff; player 0's
    first move after a check-bet bootstraps on max_a Q_0("pb", a)."""
    q = q.at[1, i[1], a[1]].add(lr * (-r0 - q[1, i[1], a[1]]))
    q = q.at[0, i[2], a[2]].add(jnp.where(reached_pb, lr * (r0 - q[0, i[2], a[2]]), 0.0))
    target0 = jnp.where(reached_pb, jnp.max(q[0, i[2]]), r0)
    return q.at[0, i[0], a[0]].add(lr * (target0 - q[0, i[0], a[0]]))


def _sl_step(key, logits_p, res, hp):
    """One cross-entropy SGD step of player logits [6, 2] on a reservoir batch of (infoset, action) pairs."""
    s, a = reservoir_sample(res, key, hp.sl_batch)
    g = (jax.nn.softmax(logits_p[s], -1) - jax.nn.one_hot(a, 2)) / hp.sl_batch
    new = logits_p - hp.sl_lr * jnp.zeros_like(logits_p).at[s].add(g)
    return jnp.where(reservoir_size(res) > 0, new, logits_p)


def _nfsp_episode(st: KuhnNFSPState, hp: _HP) -> KuhnNFSPState:
    """One NFSP self-play episode: play, Q-update, reservoir adds of greedy best-response pairs, SL steps."""
    key, kp, kr0, kr1, kr2, ks0, ks1 = jax.random.split(st.key, 7)
    eps = epsilon_schedule(st.t, start=hp.eps_start, end=hp.eps_end, decay_steps=hp.eps_decay)
    i, a, greedy, reached_pb, r0 = _play_episode(kp, st.q, st.logits, eps, hp.eta)
    q = _q_update(st.q, i, a, reached_pb, r0, hp.q_lr)
    res0 = reservoir_add(st.res[0], (i[0], a[0]), kr0, valid=greedy[0])
    res0 = reservoir_add(res0, (i[2], a[2]), kr2, valid=greedy[2])
    res1 = reservoir_add(st.res[1], (i[1], a[1]), kr1, valid=greedy[1])
    logits = jnp.stack([_sl_step(ks0, st.logits[0], res0, hp), _sl_step(ks1, st.logits[1], res1, hp)])
    return KuhnNFSPState(q, logits, (res0, res1), key, st.t + 1)


def _validate_nfsp_args(iters, log_every, eta, capacity, sl_batch):
    for name, v in (("iters", iters), ("log_every", log_every), ("capacity", capacity), ("sl_batch", sl_batch)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if iters % log_every:
        raise ValueError(f"iters: expected a multiple of log_every={log_every}, got {iters}")
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta: expected a probability in [0, 1], got {eta}")


def _kuhn_metrics(st: KuhnNFSPState):
    avg = jax.nn.softmax(st.logits, -1)
    greedy = jax.nn.one_hot(jnp.argmax(st.q, -1), 2)
    return {"exploitability": kuhn_exploitability(avg), "value": kuhn_expected_payoff(avg),
            "br_exploitability": kuhn_exploitability(greedy),
            "reservoir_count": jnp.stack([st.res[0].count, st.res[1].count])}


def nfsp_kuhn(key, *, iters=30000, eta=0.1, q_lr=0.1, sl_lr=0.5, sl_batch=32, eps_start=0.2, eps_end=0.0,
              eps_decay=None, capacity=20000, log_every=1000):
    """Tabular NFSP self-play on Kuhn poker, one chunked `lax.scan` of `iters` episodes.

    Each episode deals two cards; each player independently plays the whole hand with its best response
    (eps-greedy on a tabular Q [6, 2]) with probability `eta`, else samples its average policy
    softmax(logits [6, 2]). Q is learned off-policy by Q-learning on infosets (lr `q_lr`, every episode);
    non-random best-response (infoset, action) pairs enter that player's reservoir (`capacity`); the
    average-policy logits take one cross-entropy SGD step (lr `sl_lr`, batch `sl_batch`) on a reservoir
    batch per episode. eps decays linearly from `eps_start` to `eps_end` over `eps_decay` episodes (default
    `iters`). Logits start at zero (the uniform policy), Q at zero.

    Args:
      key: PRNG key.
      iters: episodes, a multiple of `log_every`.
    Returns:
      (final KuhnNFSPState, history) with history arrays of length iters // log_every + 1 (entry 0 is the
      initial state): "exploitability" and "value" (player 0) of the average policy, "br_exploitability"
      of the greedy best-response profile argmax Q, "reservoir_count" [n, 2] items offered per player.
      The average policy [2, 6, 2] is `jax.nn.softmax(state.logits, -1)`.
    """
    _validate_nfsp_args(iters, log_every, eta, capacity, sl_batch)
    hp = _HP(float(eta), q_lr, sl_lr, sl_batch, eps_start, eps_end, iters if eps_decay is None else eps_decay)
    item = (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    st = KuhnNFSPState(jnp.zeros(POLICY_SHAPE), jnp.zeros(POLICY_SHAPE),
                       (reservoir_init(capacity, item), reservoir_init(capacity, item)), key, jnp.zeros((), jnp.int32))

    def chunk(s, _):
        s, _ = jax.lax.scan(lambda c, _: (_nfsp_episode(c, hp), None), s, None, length=log_every)
        return s, _kuhn_metrics(s)

    m0 = _kuhn_metrics(st)
    st, hist = jax.lax.scan(chunk, st, None, length=iters // log_every)
    return st, jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), m0, hist)
