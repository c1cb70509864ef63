"""Population theory: Lemma 4 (exact), minimizers (Eq. 6, eta/(1+V), audit + erratum instances),
Condition 1 and the Bayes-optimal deferral learned under it."""

import itertools
from fractions import Fraction

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.l2d import decision, losses as L, theory as T


def _random_joint(rng, num_experts, denom=97):
    w = rng.integers(0, 20, 2 ** num_experts)
    w[rng.integers(0, 2 ** num_experts)] += 1
    return [Fraction(int(v), int(w.sum())) for v in w]


@pytest.mark.parametrize("num_experts", [1, 2, 3, 4, 5, 6])
def test_lemma4_first_correct_masses_sum_to_union_exactly(num_experts):
    rng = np.random.default_rng(num_experts)
    for _ in range(3 if num_experts < 6 else 1):
        probs = _random_joint(rng, num_experts)
        assert sum(probs) == 1
        union = T.union_mass_exact(probs)
        orders = list(itertools.permutations(range(num_experts)))
        for order in orders:
            masses = T.first_correct_masses_exact(probs, order)
            assert sum(masses) == union                               # exact rational equality
            assert all(m >= 0 for m in masses)
        # the float version agrees with the rational one
        order = orders[len(orders) // 2]
        np.testing.assert_allclose(T.first_correct_masses(np.array([float(p) for p in probs]), order),
                                   [float(m) for m in T.first_correct_masses_exact(probs, order)], atol=1e-6)


def test_union_mass_differs_from_vanilla_aggregation():
    accs = np.array([0.75, 0.5, 0.6])
    probs = T.independent_pattern_probs(accs)
    np.testing.assert_allclose(T.expert_accuracies(probs), accs, atol=1e-6)
    np.testing.assert_allclose(T.union_mass(probs), 1 - 0.25 * 0.5 * 0.4, atol=1e-6)
    assert float(T.union_mass(probs)) < accs.sum()


def _softmax(theta):
    return np.asarray(jax.nn.softmax(theta))


def test_vanilla_ce_minimizer_matches_eq6():
    eta = np.array([0.5, 0.3, 0.2])
    accs = np.array([0.75, 0.6, 0.4])
    theta = T.population_minimizer(eta, T.independent_pattern_probs(accs), loss_fn=L.multi_expert_ce_loss,
                                   num_classes=3)
    q = _softmax(theta)
    np.testing.assert_allclose(q, T.vanilla_ce_optimum(eta, accs), atol=2e-3)
    np.testing.assert_allclose(q[:3].sum(), 1 / (1 + accs.sum()), atol=2e-3)   # class mass 1/(1+A)


def test_picce_ce_minimizer_is_eta_over_one_plus_v():
    eta = np.array([0.5, 0.3, 0.2])
    accs = np.array([0.6, 0.75, 0.4])                    # best expert is index 1
    probs = T.independent_pattern_probs(accs)
    theta = T.population_minimizer(eta, probs, loss_fn=L.picce_ce_loss, num_classes=3)
    q = _softmax(theta)
    v = float(T.union_mass(probs))
    np.testing.assert_allclose(q[:3], eta / (1 + v), atol=2e-3)
    np.testing.assert_allclose(q, T.picce_ce_optimum(eta, probs, [1, 0, 2]), atol=2e-3)   # ranked by accuracy
    assert q[:3].sum() >= 0.5
    rec = decision.recover_probabilities(theta[None], num_classes=3)
    np.testing.assert_allclose(rec["eta"][0], eta, atol=3e-3)
    np.testing.assert_allclose(rec["union"][0], v, atol=5e-3)
    assert int(rec["top"][0]) == 1
    np.testing.assert_allclose(rec["acc_top"][0], 0.75, atol=5e-3)


def test_picce_wrong_ranking_is_a_local_minimum_with_the_same_class_scores():
    """Each ranking's piece of the objective has its own minimum; gradient descent started with the wrong
    expert on top stays there (higher loss), yet the class part is still eta/(1+V) (Lemma 5)."""
    eta = np.array([0.5, 0.3, 0.2])
    probs = T.independent_pattern_probs(np.array([0.6, 0.75, 0.4]))
    starts = T.ranking_inits(3, 3)
    best, (thetas, vals) = T.population_minimizer(eta, probs, loss_fn=L.picce_ce_loss, num_classes=3,
                                                  inits=starts, return_all=True)
    v = float(T.union_mass(probs))
    for th, val in zip(np.asarray(thetas), np.asarray(vals)):
        q = _softmax(th)
        order = list(np.argsort(-th[3:]))
        np.testing.assert_allclose(q[:3], eta / (1 + v), atol=2e-3)
        np.testing.assert_allclose(q, T.picce_ce_optimum(eta, probs, order), atol=2e-3)
    tops = np.argmax(np.asarray(thetas)[:, 3:], -1)
    assert set(tops.tolist()) >= {0, 1}                                  # several rankings survive
    assert np.all(np.asarray(vals)[tops != 1] > np.asarray(vals).min() + 1e-3)


def test_audit_instance_class_scores():
    """eta=(1/2,3/10,1/5), first-correct masses (3/5,1/4,1/20), V=9/10 -> class scores (5/19,3/19,2/19).
    Experts 1 and 2 overlap (A = 1 > V), so vanilla CE gives a different answer (eta/2)."""
    eta = np.array([0.5, 0.3, 0.2])
    probs = np.zeros(8)
    probs[0b001], probs[0b011], probs[0b010], probs[0b100], probs[0] = 0.5, 0.1, 0.25, 0.05, 0.1
    np.testing.assert_allclose(T.first_correct_masses(probs, [0, 1, 2]), [0.6, 0.25, 0.05], atol=1e-7)
    q = _softmax(T.population_minimizer(eta, probs, loss_fn=L.picce_ce_loss, num_classes=3))
    np.testing.assert_allclose(q[:3], [5 / 19, 3 / 19, 2 / 19], atol=2e-3)
    np.testing.assert_allclose(q[3:], np.array([0.6, 0.25, 0.05]) / 1.9, atol=2e-3)
    q_van = _softmax(T.population_minimizer(eta, probs, loss_fn=L.multi_expert_ce_loss, num_classes=3))
    np.testing.assert_allclose(q_van[:3], eta / 2.0, atol=2e-3)


def test_erratum_instance_two_fifths_not_seven_twentieths():
    """eta=(3/5,2/5), independent Acc=(3/4,1/2): masses (00,01,10,11)=(1,1,3,3)/8, V=7/8.
    The minimizer's top expert score is 2/5 (proof), not the printed Acc V/(1+V) = 7/20."""
    eta = np.array([0.6, 0.4])
    probs = np.array([1, 3, 1, 3]) / 8.0          # index = bit0 (expert 0) + 2*bit1 (expert 1)
    np.testing.assert_allclose(T.expert_accuracies(probs), [0.75, 0.5])
    theta = T.population_minimizer(eta, probs, loss_fn=L.picce_ce_loss, num_classes=2)
    q = _softmax(theta)
    assert abs(q[2] - 2 / 5) < 2e-3 and abs(q[2] - 7 / 20) > 0.04
    rec = decision.recover_probabilities(theta[None], num_classes=2)
    assert int(rec["top"][0]) == 0
    np.testing.assert_allclose(rec["acc_top"][0], 0.75, atol=5e-3)        # Acc recovered = 3/4
    np.testing.assert_allclose(rec["eta"][0], eta, atol=3e-3)
    theta_ova = T.population_minimizer(eta, probs, loss_fn=L.picce_ova_loss, num_classes=2)
    rec_ova = decision.recover_probabilities(theta_ova[None], num_classes=2, kind="sigmoid")
    np.testing.assert_allclose(rec_ova["acc_top"][0], 0.75, atol=5e-3)     # OvA sigmoid = 3/4
    np.testing.assert_allclose(rec_ova["eta"][0], eta, atol=5e-3)
    # the non-top head estimates the first-correct mass (1/8), not the accuracy (1/2)
    np.testing.assert_allclose(jax.nn.sigmoid(theta_ova[3]), 1 / 8, atol=5e-3)
    theta_vova = T.population_minimizer(eta, probs, loss_fn=L.multi_expert_ova_loss, num_classes=2)
    np.testing.assert_allclose(jax.nn.sigmoid(theta_vova[2:]), [0.75, 0.5], atol=5e-3)


def test_condition1():
    assert T.satisfies_condition1(T.independent_pattern_probs([0.9, 0.7, 0.6, 0.5]))
    assert not T.satisfies_condition1(T.independent_pattern_probs([0.8, 0.8, 0.6]))   # identical copies
    # unique best by accuracy but a redundant partner: {0,1} always agree, 2 covers the rest
    probs = np.zeros(8)
    probs[0b011], probs[0b100], probs[0b001] = 0.5, 0.3, 0.2
    assert not T.satisfies_condition1(probs)


def test_bayes_deferral_rule():
    eta = jnp.asarray([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7]])
    accs = jnp.asarray([[0.8, 0.6], [0.6, 0.8], [0.7, 0.7]])
    np.testing.assert_array_equal(T.bayes_deferral(eta, accs), [0, 3, 1])


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(32)(x))
        x = nn.tanh(nn.Dense(32)(x))
        return nn.Dense(5)(x)


@pytest.mark.parametrize("loss_name", ["picce_ce", "picce_ova"])
def test_trained_minimizer_ranks_best_expert_and_matches_bayes_rule(loss_name):
    """Condition 1 (independent experts, Acc = (0.7, 0.8, 0.6), best = 1); eta_1(x) = sigmoid(3x), x in [-2, 2].
    An MLP trained on the exact expected loss to convergence, from one start per expert on top (the
    objective has a local minimum per ranking), keeping the lowest loss: the minimizer ranks expert 1
    first and its deferral matches the Bayes rule on >= 95% of test points."""
    accs = np.array([0.7, 0.8, 0.6])
    probs = T.independent_pattern_probs(accs)
    assert T.satisfies_condition1(probs)
    x_tr = jnp.linspace(-2, 2, 256)[:, None]
    eta_of = lambda x: jnp.concatenate([1 - jax.nn.sigmoid(3 * x), jax.nn.sigmoid(3 * x)], -1)
    net = _Net()
    loss_fn = L.LOSSES[loss_name]
    obj = lambda p: T.expected_loss(net.apply(p, x_tr), eta_of(x_tr), probs, loss_fn=loss_fn, num_classes=2)
    opt = optax.adam(optax.exponential_decay(1e-2, 3000, 0.05))

    def fit(start):
        p = net.init(jax.random.PRNGKey(0), x_tr)
        p = jax.tree_util.tree_map(lambda a: a, p)
        bias = p["params"]["Dense_2"]["bias"]
        p["params"]["Dense_2"]["bias"] = bias.at[2 + start].add(2.0)

        def step(c, _):
            p, s = c
            g = jax.grad(obj)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        p = jax.lax.scan(step, (p, opt.init(p)), None, length=3000)[0][0]
        return p, obj(p)

    params_r, vals = jax.jit(jax.vmap(fit))(jnp.arange(3))
    best = int(jnp.argmin(vals))
    params = jax.tree_util.tree_map(lambda a: a[best], params_r)
    x_te = jnp.linspace(-1.97, 1.97, 401)[:, None]
    logits = net.apply(params, x_te)
    kind = L.SCORE_KIND[loss_name]
    dec = decision.decide(decision.deferral_scores(logits, num_classes=2, kind=kind), num_classes=2)
    bayes = T.bayes_deferral(eta_of(x_te), jnp.broadcast_to(accs, (401, 3)))
    top = jnp.argmax(logits[:, 2:], -1)
    assert float(jnp.mean(top == 1)) >= 0.95
    assert float(jnp.mean(dec.action == bayes)) >= 0.95
    assert 0.2 < float(jnp.mean(dec.defer)) < 0.6          # the rule really defers on part of the space
