"""The strict verdict rule (issue 13): one-sided t lower bounds, stated margins, untestable claims."""

import math

import numpy as np
import pytest
from scipy import stats

from jaxlab.core import summary


def test_mean_std_uses_sample_std():
    m, s = summary.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)               # ddof = 1
    assert math.isnan(summary.mean_std([4.0])[1])


def test_welch_bound_hand_computed():
    # ours [3, 4, 5] vs base [1, 2, 3]: d = 2, s² = 1 each, se = sqrt(2/3), df = 4 (equal n and variances).
    c = summary.compare([3, 4, 5], [1, 2, 3], higher_is_better=True)
    se = math.sqrt(2 / 3)
    assert c["improvement"] == pytest.approx(2.0) and c["se"] == pytest.approx(se)
    assert c["df"] == pytest.approx(4.0)
    t95 = 2.131846786                                             # t_{0.95, 4}
    assert c["ci_low"] == pytest.approx(2.0 - t95 * se, rel=1e-6)
    assert c["p"] == pytest.approx(stats.t.sf(2.0 / se, 4), rel=1e-9)
    assert c["verdict"] == "reproduced" and c["test"] == "welch"
    assert c["ci"][1] == pytest.approx(2.0 + t95 * se, rel=1e-6)
    # Lower is better flips the sign: ours is then worse.
    assert summary.compare([3, 4, 5], [1, 2, 3], higher_is_better=False)["verdict"] == "not reproduced"


def test_ten_percent_deficit_with_tight_seeds_is_not_no_worse():
    ours, base = [0.90, 0.901, 0.899], [1.0, 1.001, 0.999]     # 10% worse, tiny spread
    c = summary.compare(ours, base, higher_is_better=True, kind="no_worse", margin=0.05)
    assert c["verdict"] == "not reproduced" and c["ci_low"] < -0.05
    with pytest.raises(ValueError, match="margin"):               # margin 0 is not a no-worse claim
        summary.compare(ours, base, higher_is_better=True, kind="no_worse", margin=0.0)
    # The old rule (d >= -(margin + 2 se)) counted the same numbers as reproduced at margin 0.1:
    assert summary.compare(ours, base, higher_is_better=True, kind="no_worse", margin=0.11)["verdict"] == "reproduced"


def test_large_noisy_improvement_with_three_seeds_is_not_better():
    ours, base = [0.3, 0.9, 1.5], [0.0, 0.1, 0.2]              # mean gain 0.8, large spread
    c = summary.compare(ours, base, higher_is_better=True)
    assert c["improvement"] == pytest.approx(0.8)
    assert c["ci_low"] < 0 and c["verdict"] == "not reproduced"
    # z = 2 with a normal approximation would have passed it: 0.8 > 2 * se.
    assert c["improvement"] > 2 * c["se"]


def test_paired_and_welch_agree_when_pairing_carries_no_information():
    # Paired differences have the same variance as Welch's sum when the arms are uncorrelated:
    # a = m + e_a, b = e_b with independent equal-variance noise and a large n.
    rng = np.random.default_rng(0)
    a = 0.3 + rng.normal(size=4000)
    b = rng.normal(size=4000)
    w = summary.compare(a, b, higher_is_better=True)
    p = summary.compare(a, b, higher_is_better=True, paired=True)
    assert p["test"] == "paired" and p["df"] == 3999
    assert p["se"] == pytest.approx(w["se"], rel=0.05)
    assert p["ci_low"] == pytest.approx(w["ci_low"], abs=0.01)
    assert p["verdict"] == w["verdict"] == "reproduced"


def test_paired_uses_the_shared_noise():
    base = np.array([0.1, 0.5, 0.9, 0.3])
    ours = base + np.array([0.02, 0.021, 0.019, 0.02])          # a small, very consistent gain
    assert summary.compare(ours, base, higher_is_better=True, paired=True)["verdict"] == "reproduced"
    assert summary.compare(ours, base, higher_is_better=True)["verdict"] == "not reproduced"
    with pytest.raises(ValueError, match="paired"):
        summary.compare([1, 2, 3], [1, 2], higher_is_better=True, paired=True)


def test_untestable_when_both_arms_at_chance_or_one_seed():
    c = summary.claim("x", "ours beats base", "acc", ours=("a", [0.49, 0.52, 0.50]),
                      baselines={"b": [0.50, 0.48, 0.51]}, higher_is_better=True, chance=0.5)
    assert c["verdict"] == "untestable here" and "chance" in c["reason"]
    above = summary.claim("y", "", "acc", ours=("a", [0.8, 0.82, 0.81]), baselines={"b": [0.5, 0.49, 0.51]},
                          higher_is_better=True, chance=0.5)
    assert above["verdict"] == "reproduced"
    one = summary.compare([0.9], [0.1], higher_is_better=True)
    assert one["verdict"] == "untestable here" and "2 seeds" in one["reason"]
    u = summary.untestable("z", "IC is positive", "ic", "the power check failed: Original IC 0.001")
    assert u["verdict"] == "untestable here" and u["block"] == "paper"
    with pytest.raises(ValueError, match="reason"):
        summary.untestable("z", "", "ic", "")


def test_overall_blocks_and_paper_verdict():
    good = summary.claim("g", "", "acc", ours=("a", [0.9, 0.91, 0.92]), baselines={"b": [0.5, 0.5, 0.51]},
                         higher_is_better=True)
    bad = summary.claim("b", "", "acc", ours=("a", [0.5, 0.5, 0.51]), baselines={"b": [0.9, 0.91, 0.92]},
                        higher_is_better=True)
    sanity = summary.claim("s", "", "acc", ours=("a", [0.5, 0.5, 0.51]), baselines={"b": [0.9, 0.91, 0.92]},
                           higher_is_better=True, block="sanity")
    mixed = summary.claim("m", "", "acc", ours=("a", [0.9, 0.91, 0.92]),
                          baselines={"weak": [0.5, 0.5, 0.51], "strong": [0.95, 0.96, 0.95]}, higher_is_better=True)
    assert mixed["verdict"] == "mixed"
    assert summary.paper_verdict([good, sanity]) == "reproduced"          # sanity checks do not count
    assert summary.paper_verdict([good, bad, sanity]) == "mixed"
    assert summary.paper_verdict([sanity]) == "untestable here"
    assert summary.overall(["untestable here", "reproduced"]) == "reproduced"
    assert summary.overall(["untestable here"]) == "untestable here"
    parts = summary.combine_claims("c", "", [good, mixed])
    assert parts["verdict"] == "mixed" and parts["block"] == "paper" and parts["n_seeds"] == 3
    two = summary.claim("w", "", "acc", ours=("a", [0.9, 0.91]), baselines={"b": [0.5, 0.5]}, higher_is_better=True)
    assert summary.combine_claims("n", "", [parts, two])["n_seeds"] == 2
    with pytest.raises(ValueError, match="blocks"):
        summary.combine_claims("bad", "", [good, sanity])
    with pytest.raises(ValueError, match="block"):
        summary.claim("x", "", "m", ours=("a", [1.0, 2.0]), baselines={"b": [1.0, 2.0]}, higher_is_better=True,
                      block="appendix")


def test_better_with_a_size_margin_and_threshold_claims():
    # "accuracy drops by more than 0.01": a constant threshold series is a one-sample t test.
    c = summary.compare([0.05, 0.06, 0.055], [0.0, 0.0, 0.0], higher_is_better=True, margin=0.01)
    assert c["df"] == pytest.approx(2.0) and c["verdict"] == "reproduced"
    assert summary.compare([0.015, 0.02, 0.01], [0.0] * 3, higher_is_better=True, margin=0.01)["verdict"] == \
        "not reproduced"


def test_bad_inputs():
    with pytest.raises(ValueError, match="ours"):
        summary.compare([], [1.0], higher_is_better=True)
    with pytest.raises(ValueError, match="baseline"):
        summary.compare([1.0], [np.nan], higher_is_better=True)
    with pytest.raises(ValueError, match="kind"):
        summary.compare([1.0], [1.0], higher_is_better=True, kind="maybe")
    with pytest.raises(ValueError, match="alpha"):
        summary.compare([1.0, 2.0], [1.0, 2.0], higher_is_better=True, alpha=0.7)
    with pytest.raises(ValueError, match="baselines"):
        summary.claim("x", "", "m", ours=("a", [1.0]), baselines={}, higher_is_better=True)


def test_mean_interval_hand_computed():
    # values 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t_{0.975, 2} = 4.302653
    lo, hi = summary.mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert lo == pytest.approx(2 - half, rel=1e-9) and hi == pytest.approx(2 + half, rel=1e-9)
    assert all(math.isnan(v) for v in summary.mean_interval([1.0]))
    with pytest.raises(ValueError, match="level"):
        summary.mean_interval([1.0, 2.0], level=1.5)


def test_untestable_reason_keeps_the_values_and_sets_every_comparison_aside():
    c = summary.claim("mi", "audio > vision", "nats", ours=("audio", [2.6, 2.5, 2.7]),
                      baselines={"vision": [-0.04, 0.01, -0.05]}, higher_is_better=True, paired=True,
                      untestable_reason="the estimator failed on seed indices [0, 2]")
    assert c["verdict"] == "untestable here" and c["reason"] == "the estimator failed on seed indices [0, 2]"
    assert c["baselines"][0]["verdict"] == "untestable here" and c["baselines"][0]["improvement"] > 2.5
    assert summary.n_seeds([c]) == 3 and summary.paper_verdict([c]) == "untestable here"
    same = summary.claim("mi", "audio > vision", "nats", ours=("audio", [2.6, 2.5, 2.7]),
                         baselines={"vision": [-0.04, 0.01, -0.05]}, higher_is_better=True, paired=True)
    assert same["verdict"] == "reproduced"                          # without the reason the rule applies as usual
