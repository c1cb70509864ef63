import math

import numpy as np
import pytest

from jaxlab.core import summary


def test_mean_std_uses_population_std():
    m, s = summary.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(math.sqrt(2 / 3))


def test_better_verdict_hand_computed():
    # ours [3, 4, 5] vs base [1, 2, 3]: d = 2, se = sqrt(1/3 + 1/3) = 0.8165, z*se = 1.633 < 2 -> reproduced.
    c = summary.compare([3, 4, 5], [1, 2, 3], higher_is_better=True)
    assert c["improvement"] == pytest.approx(2.0)
    assert c["se"] == pytest.approx(math.sqrt(2 / 3))
    assert c["verdict"] == "reproduced"
    # With z = 3, 3*0.8165 = 2.449 > 2 -> not reproduced.
    assert summary.compare([3, 4, 5], [1, 2, 3], higher_is_better=True, z=3)["verdict"] == "not reproduced"
    # Lower is better flips the sign.
    assert summary.compare([3, 4, 5], [1, 2, 3], higher_is_better=False)["verdict"] == "not reproduced"


def test_no_worse_and_overall():
    c = summary.claim("x", "ours no worse", "err", ours=("a", [0.10, 0.11, 0.12]),
                      baselines={"b": [0.10, 0.10, 0.10], "c": [0.5, 0.5, 0.5]},
                      higher_is_better=False, kind="no_worse", margin=0.005)
    # vs b: d = -0.01, se = 0.00577, margin + 2se = 0.0165 -> reproduced; vs c: clearly better -> reproduced.
    assert [b["verdict"] for b in c["baselines"]] == ["reproduced", "reproduced"]
    assert c["verdict"] == "reproduced"
    assert c["ours"]["mean"] == pytest.approx(0.11)
    mixed = summary.claim("y", "", "acc", ours=("a", [0.9, 0.91, 0.92]),
                          baselines={"weak": [0.5, 0.5, 0.51], "strong": [0.95, 0.96, 0.95]},
                          higher_is_better=True)
    assert mixed["verdict"] == "mixed"
    assert summary.overall(["not reproduced", "not reproduced"]) == "not reproduced"
    parts = summary.combine_claims("z", "", [c, mixed])
    assert parts["verdict"] == "mixed"
    assert parts["n_seeds"] == min(len(c["ours"]["values"]), 3)
    two = summary.claim("w", "", "acc", ours=("a", [0.9, 0.91]), baselines={"b": [0.5, 0.5]},
                        higher_is_better=True)
    nested = summary.combine_claims("n", "", [parts, two])
    assert nested["n_seeds"] == 2        # the weakest leaf, through the nesting


def test_bad_inputs():
    with pytest.raises(ValueError, match="ours"):
        summary.compare([], [1.0], higher_is_better=True)
    with pytest.raises(ValueError, match="baseline"):
        summary.compare([1.0], [np.nan], higher_is_better=True)
    with pytest.raises(ValueError, match="kind"):
        summary.compare([1.0], [1.0], higher_is_better=True, kind="maybe")
    with pytest.raises(ValueError, match="baselines"):
        summary.claim("x", "", "m", ours=("a", [1.0]), baselines={}, higher_is_better=True)
