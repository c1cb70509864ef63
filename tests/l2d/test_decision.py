"""Decision-rule plumbing: hand-made logits -> class / expert / coverage / system error; recovery."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.l2d import decision as D
from jaxlab.l2d import theory as T

K = 3


def _hand_case():
    # columns: 3 classes, 2 experts
    logits = jnp.asarray([
        [5.0, 1.0, 0.0, 2.0, 1.0],    # predict class 0 (correct)
        [0.0, 1.0, 3.0, 1.0, 0.0],    # predict class 2 (wrong, y=1)
        [0.0, 1.0, 0.0, 4.0, 2.0],    # defer to expert 0 (expert says 2 = y)
        [2.0, 0.0, 0.0, 1.0, 6.0],    # defer to expert 1 (expert says 0, y=1: wrong)
    ])
    y = jnp.asarray([0, 1, 2, 1])
    m = jnp.asarray([[1, 0], [1, 1], [2, 0], [1, 0]])
    return logits, y, m


def test_hand_made_decisions_and_metrics():
    logits, y, m = _hand_case()
    dec = D.decide(D.deferral_scores(logits, num_classes=K), num_classes=K)
    np.testing.assert_array_equal(dec.action, [0, 2, 3, 4])
    np.testing.assert_array_equal(dec.defer, [False, False, True, True])
    np.testing.assert_array_equal(dec.expert, [-1, -1, 0, 1])
    np.testing.assert_array_equal(dec.pred_class, [0, 2, 1, 0])
    np.testing.assert_array_equal(D.system_prediction(dec, m), [0, 2, 2, 0])
    met = D.l2d_metrics(logits, y, m, num_classes=K)
    assert float(met["system_error"]) == pytest.approx(0.5)
    assert float(met["coverage"]) == pytest.approx(0.5)
    assert float(met["classifier_accuracy"]) == pytest.approx(0.25)      # only row 0 (row 2 predicts 1, y=2)
    np.testing.assert_allclose(met["defer_frac"], [0.25, 0.25])
    np.testing.assert_allclose(met["expert_accuracy"], [0.75, 0.5])
    # sigmoid scores give the same argmax
    dec_s = D.decide(D.deferral_scores(logits, num_classes=K, kind="sigmoid"), num_classes=K)
    np.testing.assert_array_equal(dec_s.action, dec.action)


def test_deferral_target_report():
    logits, y, m = _hand_case()
    table = jnp.asarray([[0.9, 0.5, 0.9], [0.6, 0.8, 0.2]])   # P(m_j = y | y) for experts 0, 1
    met = D.l2d_metrics(logits, y, m, num_classes=K, acc_table=table)
    # row 2 (y=2): expert 0 chosen, best is 0.9 (expert 0) -> best; row 3 (y=1): expert 1 chosen (0.8 > 0.5) -> best
    assert float(met["defer_to_best"]) == pytest.approx(1.0)
    assert float(met["defer_regret"]) == pytest.approx(0.0)
    table2 = jnp.asarray([[0.9, 0.9, 0.9], [0.6, 0.8, 0.2]])
    met2 = D.l2d_metrics(logits, y, m, num_classes=K, acc_table=table2)
    assert float(met2["defer_to_best"]) == pytest.approx(0.5)
    assert float(met2["defer_regret"]) == pytest.approx(0.05)
    no_defer = logits.at[:, K:].set(-10.0)
    assert np.isnan(float(D.l2d_metrics(no_defer, y, m, num_classes=K, acc_table=table)["defer_to_best"]))


def test_masked_experts_never_chosen_and_mass_equals_slicing():
    logits, y, m = _hand_case()
    mask = jnp.asarray([True, False])
    dec = D.decide(D.deferral_scores(logits, num_classes=K, expert_mask=mask), num_classes=K)
    assert int(dec.action[3]) == 0                     # expert 1 masked -> best remaining is class 0
    np.testing.assert_allclose(D.class_mass(logits, num_classes=K, expert_mask=mask),
                               D.class_mass(logits[:, :4], num_classes=K), rtol=1e-6)
    met = D.l2d_metrics(logits, y, m, num_classes=K, expert_mask=mask)
    assert float(met["defer_frac"][1]) == 0.0 and np.isnan(float(met["expert_accuracy"][1]))


def test_decoupled_rule_compares_class_softmax_with_expert_sigmoid():
    logits = jnp.asarray([[2.0, 0.0, 0.0, 1.0],      # softmax max 0.787 vs sigmoid(1)=0.731 -> predict
                          [0.5, 0.0, 0.0, 1.0]])     # softmax max 0.45 vs 0.731 -> defer
    dec = D.decide(D.deferral_scores(logits, num_classes=K, kind="decoupled"), num_classes=K)
    np.testing.assert_array_equal(dec.defer, [False, True])
    with pytest.raises(ValueError, match="kind"):
        D.deferral_scores(logits, num_classes=K, kind="max")


def test_recovery_from_exact_minimizers():
    """CE: logits = log q* with q* = [eta, A_sigma]/(1+V); OvA: logit(eta), logit(first-correct masses)."""
    eta = np.array([0.6, 0.4])
    probs = np.array([1, 3, 1, 3]) / 8.0
    q = np.asarray(T.picce_ce_optimum(eta, probs, [0, 1]))
    rec = D.recover_probabilities(jnp.log(q)[None], num_classes=2)
    np.testing.assert_allclose(rec["eta"][0], eta, rtol=1e-5)
    np.testing.assert_allclose(rec["acc_top"][0], 0.75, rtol=1e-5)      # not 7/20 * (1+V)
    np.testing.assert_allclose(rec["union"][0], 7 / 8, rtol=1e-5)
    assert q[2] == pytest.approx(0.4) and q[2] != pytest.approx(0.35)
    ova_logits = jax.scipy.special.logit(jnp.asarray([[0.6, 0.4, 0.75, 0.125]]))
    rec_o = D.recover_probabilities(ova_logits, num_classes=2, kind="sigmoid")
    np.testing.assert_allclose(rec_o["acc_top"], [0.75], rtol=1e-5)
    np.testing.assert_allclose(rec_o["eta"][0], eta, rtol=1e-5)


def test_metrics_bad_input():
    logits, y, m = _hand_case()
    with pytest.raises(ValueError, match="acc_table"):
        D.l2d_metrics(logits, y, m, num_classes=K, acc_table=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="K\\+J"):
        D.l2d_metrics(logits, y, m[:, :1], num_classes=K)
