"""The experiment's rules and bookkeeping (closed forms and hand-made cases; no training): the eps rule, trace
reshaping, key roles, the PPO-Lagrangian step rule, calibration failures in the totals, evaluation keys."""
import types

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import farl
from experiments.farl import choose_eps, choose_lagrange_lr, key_roles, trace_time_major
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


@pytest.mark.parametrize("size", ["quick", "full"])
def test_config_fixes_the_rules_and_keeps_key_roles_disjoint(size):
    c = get_config(size)
    assert c.target_recall == 0.9 and sorted(c.eps_grid) == list(c.eps_grid)
    assert len(c.seeds) >= 3 and {"vanilla", "ppo_lagrangian", "recovery_rl", "farl", "farl_no_rec"} <= set(c.arms)
    assert len(c.tune_seeds) == len(c.seeds)      # one compiled (vmapped) program serves tuning and the arms
    roles = key_roles(c)
    for a in roles:
        for b in roles:
            if a < b:
                assert not set(roles[a]) & set(roles[b]), (a, b)
    assert c.cal_iterations <= c.iterations and c.success_margin > 0


def test_lagrange_rule_picks_the_hand_made_best():
    grid = [0.5, 5.0, 50.0, 500.0]
    # returns within 10% of the best (10.0): steps 0.5, 5 and 50; of those, 50 fails least
    assert choose_lagrange_lr(grid, [40, 30, 20, 5], [10.0, 9.5, 9.1, 2.0], return_tol=0.1) == 2
    # 500 fails least but its return collapsed: not eligible; a failure tie goes to the smaller step
    assert choose_lagrange_lr(grid, [40, 20, 20, 5], [10.0, 9.5, 9.2, 2.0], return_tol=0.1) == 1
    # negative returns: the tolerance is relative to |best|
    assert choose_lagrange_lr(grid, [9, 8, 7, 1], [-1.0, -1.05, -2.0, -3.0], return_tol=0.1) == 1


class _MW:
    def write(self, *a, **k):
        pass


def _fake_ctx(calls, s_n=2, it=3):
    """train_seeds / eval_seeds stand-ins that record what they were called with."""
    def train_seeds(keys, arm, pre):
        calls.append(("train", np.asarray(keys), float(arm.eps_safe)))
        cum = np.tile(np.array([1.0, 3.0, 4.0]), (s_n, 1))
        m = {"failures": np.diff(cum, prepend=0, axis=1), "cum_failures": cum, "ep_return": np.ones((s_n, it)),
             "success": np.zeros((s_n, it)), "trigger_rate": np.zeros((s_n, it)), "lam": np.cumsum(cum, 1)}
        return types.SimpleNamespace(params={"pi": jnp.zeros((s_n, 1))}), m

    def eval_seeds(keys, arm, pre, pi):
        calls.append(("eval", np.asarray(keys), float(arm.eps_safe)))
        return {k: np.full(s_n, 1.0 if np.isfinite(float(arm.eps_safe)) else 2.0)
                for k in ("failures", "episodes", "return", "success", "trigger_rate")}
    return {"train_seeds": train_seeds, "eval_seeds": eval_seeds, "pre": None}


OFF = {"eps_wm": 0.5, "eps_q": 0.1, "eps_wm_oncal": 0.7, "eps_q_oncal": 0.2, "cal_failures": {"0": 7.0, "1": 3.0}}


def test_calibration_failures_are_added_to_the_oncal_totals_only():
    cc = {"final_window": 2}
    for arm, eps, cal in (("farl_oncal", 0.7, [7.0, 3.0]), ("recovery_rl_oncal", 0.2, [7.0, 3.0]),
                          ("farl", 0.5, [0.0, 0.0]), ("vanilla", np.inf, [0.0, 0.0])):
        calls = []
        recs = farl.run_arm("t", cc, arm, [0, 1], OFF, _fake_ctx(calls), _MW())
        assert calls[0][2] == np.float32(eps)
        assert [r["cal_failures"] for r in recs] == cal
        assert [r["total_failures"] for r in recs] == [4.0 + c for c in cal]
        assert recs[0]["lam_curve"] == [1.0, 4.0, 8.0]


def test_evaluation_uses_fresh_keys_with_and_without_the_filter():
    calls = []
    recs = farl.run_arm("t", {"final_window": 2}, "farl", [0, 1], OFF, _fake_ctx(calls), _MW())
    (_, k_train, _), (_, k_ev, eps_on), (_, k_ev2, eps_off) = calls
    train_keys = {tuple(k) for k in k_train.tolist()}
    assert not train_keys & {tuple(k) for k in k_ev.tolist()}
    np.testing.assert_array_equal(k_ev, k_ev2)                  # the same fresh episodes, filter on and off
    assert eps_on == np.float32(0.5) and eps_off == np.inf
    assert recs[0]["eval_return"] == 1.0 and recs[0]["eval_nofilter_return"] == 2.0
    calls = []
    farl.run_arm("t", {"final_window": 2}, "vanilla", [0, 1], OFF, _fake_ctx(calls), _MW())
    assert len(calls) == 2                                       # no filter: one evaluation serves both


def test_online_calibration_counts_the_failures_of_its_first_iterations_per_seed():
    s_n, it, l, n = 2, 3, 4, 2
    cost = np.zeros((s_n, it, l, n))
    cost[0, 0, 1, 0] = cost[0, 1, 2, 1] = cost[1, 1, 0, 0] = 1.0
    cost[1, 2, 0, 0] = 1.0                                       # after cal_iterations: not spent, not counted
    trace = {"cost": cost, "done": cost.copy(), "risk_wm": cost * 3.0, "risk_q": cost * 0.5}

    def train_seeds(keys, arm, pre):
        assert np.asarray(keys).shape[0] == s_n and float(arm.learn) == 0.0
        return None, {"trace": trace}

    cc = {"val_seeds": [0, 1], "cal_iterations": 2, "horizon": 0, "eps_grid": [0.1, 1.0, 2.0, 4.0],
          "target_recall": 0.9}
    out = farl.calibrate_online(train_seeds, None, cc)
    assert out["cal_failures"] == {"0": 2.0, "1": 1.0} and out["val_failures"] == 3
    assert out["farl"]["eps_safe"] == 2.0 and out["recovery_rl"]["eps_safe"] == 0.1
