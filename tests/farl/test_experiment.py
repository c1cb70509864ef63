"""The experiment's eps_safe rule and trace bookkeeping (closed forms; no training)."""
import numpy as np

from experiments.farl import choose_eps, trace_time_major
from experiments.configs.farl import get_config


def test_choose_eps_is_the_largest_grid_value_meeting_the_recall_target():
    # positives have scores 0.5, 0.6, 0.9, 1.2; negatives 0.1 .. 0.4
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 1.2])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    eps, p, r = choose_eps(scores, labels, [0.05, 0.45, 0.55, 1.0], target_recall=0.75)
    assert eps == 0.55 and r == 0.75 and p == 1.0  # 0.55 flags 0.6, 0.9, 1.2
    eps, p, r = choose_eps(scores, labels, [0.05, 0.45, 0.55, 1.0], target_recall=1.0)
    assert eps == 0.45 and r == 1.0
    eps, _, r = choose_eps(scores, labels, [2.0, 3.0], target_recall=0.9)  # unreachable: the smallest value
    assert eps == 2.0 and r == 0.0


def test_trace_time_major_keeps_iterations_contiguous():
    s, it, l, n = 2, 3, 4, 5
    x = np.arange(s * it * l * n).reshape(s, it, l, n)
    out = trace_time_major({"x": x, "obs": np.stack([x, -x], -1)})
    y = out["x"]
    assert y.shape == (it * l, s * n) and out["obs"].shape == (it * l, s * n, 2)
    # time index = iteration * L + step; column = seed * N + env; trailing feature axes are kept
    assert y[1 * l + 2, 1 * n + 3] == x[1, 1, 2, 3]
    np.testing.assert_array_equal(out["obs"][..., 0], y)
    np.testing.assert_array_equal(out["obs"][..., 1], -y)


def test_config_fixes_the_eps_rule_before_any_comparison():
    for size in ("quick", "full"):
        c = get_config(size)
        assert c.target_recall == 0.9 and sorted(c.eps_grid) == list(c.eps_grid)
        assert len(c.seeds) >= 3 and len(c.arms) == 5
