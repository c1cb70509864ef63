"""Kuhn poker: exact payoffs and best responses (hand derivations, OpenSpiel's reference value, the Nash
family, brute force over pure strategies) and tabular NFSP self-play driving exploitability down."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.finance import kuhn as K

UNIFORM = jnp.full((2, 6, 2), 0.5)


def _bet(*probs_bet):
    """[6] probabilities of action 1 (bet/call) -> [6, 2] action probabilities."""
    q = np.asarray(probs_bet, np.float64)
    return np.stack([1.0 - q, q], -1)


def _profile(p0_bet, p1_bet):
    """Player 0's and player 1's bet probabilities per infoset (index 3 h + card) -> policy [2, 6, 2]."""
    return jnp.asarray(np.stack([_bet(*p0_bet), _bet(*p1_bet)]), jnp.float32)


def _nash(alpha):
    """Kuhn's equilibrium family: player 0 bets J w.p. alpha, checks Q, bets K w.p. 3 alpha; after "pb" folds
    J, calls Q w.p. alpha + 1/3, calls K. Player 1 after "p" bets J w.p. 1/3, checks Q, bets K; facing a bet
    folds J, calls Q w.p. 1/3, calls K."""
    return _profile([alpha, 0.0, 3 * alpha, 0.0, alpha + 1 / 3, 1.0], [1 / 3, 0.0, 1.0, 0.0, 1 / 3, 1.0])


def _random_policies(n, seed=0, scale=2.0):
    logits = scale * jax.random.normal(jax.random.PRNGKey(seed), (n, 2, 6, 2))
    return jax.nn.softmax(logits, -1)


def test_uniform_policy_value_and_openspiel_exploitability():
    # by hand, for a deal with s = +-1: pass -> (s + (-1/2 + s)) / 2 = s - 1/4; bet -> (1 + 2 s) / 2;
    # each w.p. 1/2 -> s + 1/8, and E[s] = 0 over the 6 deals -> 1/8.
    assert float(K.kuhn_expected_payoff(UNIFORM)) == pytest.approx(1 / 8, abs=1e-6)
    assert float(K.kuhn_exploitability(UNIFORM)) == pytest.approx(0.4583333, abs=1e-6)   # OpenSpiel: 11/24
    assert float(K.kuhn_nash_conv(UNIFORM)) == pytest.approx(11 / 12, abs=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 1 / 6, 1 / 3])
def test_nash_family_has_zero_exploitability_and_game_value(alpha):
    pi = _nash(alpha)
    assert float(K.kuhn_expected_payoff(pi)) == pytest.approx(-1 / 18, abs=1e-6)
    assert abs(float(K.kuhn_exploitability(pi))) < 1e-6
    assert float(K.kuhn_best_response_value(pi, 0)) == pytest.approx(-1 / 18, abs=1e-6)
    assert float(K.kuhn_best_response_value(pi, 1)) == pytest.approx(1 / 18, abs=1e-6)


def test_perturbed_nash_is_exploitable():
    pi = _nash(0.0).at[1, 4].set(jnp.array([0.0, 1.0]))   # player 1 now always calls a bet with Q
    assert float(K.kuhn_exploitability(pi)) > 0.01


def test_hand_computed_pure_profile():
    # player 0 always bets (and calls after "pb"); player 1 checks after "p", folds J / calls Q and K to a bet.
    pi = _profile([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1])
    # deals: (Q,J) (K,J): player 1 folds, +1 each; (J,Q) -2, (K,Q) +2, (J,K) -2, (Q,K) -2 -> -2 / 6
    assert float(K.kuhn_expected_payoff(pi)) == pytest.approx(-1 / 3, abs=1e-6)
    # player 0's best response: J checks (-1), Q checks (0), K bets (+1.5) -> (-1 + 0 + 1.5) / 3
    assert float(K.kuhn_best_response_value(pi, 0)) == pytest.approx(1 / 6, abs=1e-6)
    # player 1's best response facing a bet: J folds (-1), Q calls (0), K calls (+2) -> 1 / 3
    assert float(K.kuhn_best_response_value(pi, 1)) == pytest.approx(1 / 3, abs=1e-6)
    assert float(K.kuhn_exploitability(pi)) == pytest.approx(0.5 * (1 / 6 + 1 / 3), abs=1e-6)


def test_best_response_matches_brute_force_over_pure_strategies():
    pure = jax.nn.one_hot(jnp.asarray(list(itertools.product([0, 1], repeat=6))), 2)     # [64, 6, 2]
    pols = _random_policies(4, seed=3)

    def brute(pi):
        v0 = jax.vmap(lambda s: K.kuhn_expected_payoff(pi.at[0].set(s)))(pure)
        v1 = jax.vmap(lambda s: -K.kuhn_expected_payoff(pi.at[1].set(s)))(pure)
        return jnp.max(v0), jnp.max(v1)

    b0, b1 = jax.jit(jax.vmap(brute))(pols)
    e0 = jax.vmap(lambda p: K.kuhn_best_response_value(p, 0))(pols)
    e1 = jax.vmap(lambda p: K.kuhn_best_response_value(p, 1))(pols)
    np.testing.assert_allclose(np.asarray(e0), np.asarray(b0), atol=1e-5)
    np.testing.assert_allclose(np.asarray(e1), np.asarray(b1), atol=1e-5)


def test_best_response_beats_the_policy_and_brackets_the_game_value():
    pols = _random_policies(32, seed=1)
    u = jax.vmap(K.kuhn_expected_payoff)(pols)
    br0 = jax.vmap(lambda p: K.kuhn_best_response_value(p, 0))(pols)
    br1 = jax.vmap(lambda p: K.kuhn_best_response_value(p, 1))(pols)
    nc = jax.jit(jax.vmap(K.kuhn_nash_conv))(pols)                # jit: the traced path skips value checks
    assert bool(jnp.all(br0 >= u - 1e-6)) and bool(jnp.all(br1 >= -u - 1e-6))
    assert bool(jnp.all(nc > 1e-3))                                 # random policies are not equilibria
    # u and the game value -1/18 both lie in [-br1, br0], an interval of width NashConv
    assert bool(jnp.all(jnp.abs(u - K.GAME_VALUE) <= nc + 1e-6))
    np.testing.assert_allclose(np.asarray(jax.vmap(K.kuhn_exploitability)(pols)), np.asarray(nc) / 2, rtol=1e-6)


def test_nfsp_average_policy_exploitability_falls_on_three_seeds():
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(3)])
    run = jax.jit(jax.vmap(lambda k: K.nfsp_kuhn(k, iters=20000, log_every=2000)[1]))
    h = run(keys)
    e = np.asarray(h["exploitability"])                           # [3 seeds, 11]
    assert e.shape == (3, 11)
    np.testing.assert_allclose(e[:, 0], 11 / 24, atol=1e-6)      # starts from the uniform policy
    assert np.all(e[:, -1] < 0.5 * e[:, 0]), e[:, -1]
    assert np.all(e[:, -1] < 0.1), e[:, -1]
    value = np.asarray(h["value"])[:, -1]
    assert np.all(np.abs(value - K.GAME_VALUE) <= 2 * e[:, -1] + 1e-6)     # bracketed as above
    assert np.all(np.asarray(h["reservoir_count"])[:, -1] > 1000)          # eta = 0.1 of 20k episodes


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="policy"):
        K.kuhn_exploitability(jnp.full((2, 4, 2), 0.5))
    with pytest.raises(ValueError, match="policy"):
        K.kuhn_expected_payoff(jnp.full((2, 6, 2), 0.3))            # sums to 0.6
    with pytest.raises(ValueError, match="policy"):
        K.kuhn_nash_conv(UNIFORM.at[0, 0].set(jnp.array([1.5, -0.5])))
    with pytest.raises(ValueError, match="player"):
        K.kuhn_best_response_value(UNIFORM, 2)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="iters"):
        K.nfsp_kuhn(key, iters=1500, log_every=1000)
    with pytest.raises(ValueError, match="eta"):
        K.nfsp_kuhn(key, iters=1000, log_every=1000, eta=1.5)
    with pytest.raises(ValueError, match="eta"):
        K.nfsp_kuhn(key, iters=1000, log_every=1000, eta=-0.1)
