"""Issue 13's tuning in experiments/picce.py: per (data set, setting, method, budget) the grid point with the
lowest *validation* system error is chosen, test numbers are reported at that point, and test numbers never
enter the choice. Hand-made grids, no training."""

import numpy as np
import pytest

from experiments import picce
from experiments.configs.picce import get_config


def _config():
    c = get_config("quick")
    c.datasets = ["gmm"]
    c.num_experts = [1, 2, 8]
    c.epochs.gmm = 4
    c.budgets.gmm = [1, 2]
    return c


def _arrays(val_se, test_se, n_j=3, n_s=2, j_max=8):
    """Fake cell arrays [n_J, S, E, ...]: `val_se` / `test_se` are per-epoch system errors [E], the same for
    every J and seed (so a mean over seeds and J is that number)."""
    e = len(val_se)
    full = lambda v: np.broadcast_to(np.asarray(v, float), (n_j, n_s, e)).copy()
    a = {f"{sp}/{k}": full(np.full(e, 0.5)) for sp in ("val", "test") for k in picce.SCALARS}
    a["val/system_error"], a["test/system_error"] = full(val_se), full(test_se)
    a["test/defer_frac"] = np.full((n_j, n_s, e, j_max), 0.1)
    a["test/expert_accuracy"] = np.full((n_j, n_s, e, j_max), 0.8)
    a["mass_vanilla_theory"] = np.full((n_j, n_s), 0.3)
    a["mass_picce_theory"] = np.full((n_j, n_s), 0.5)
    return a


class _ValidationOnly(dict):
    """Cell arrays that fail the test if a test-split array is read."""

    def __getitem__(self, key):
        if key.startswith("test/"):
            raise AssertionError(f"the hyperparameter choice read a test array: {key}")
        return super().__getitem__(key)


def test_select_by_validation_takes_the_lowest_mean_and_ignores_diverged_points():
    grid = {"lr=0.001": np.array([[0.30, 0.20], [0.25, 0.25]]),      # mean 0.25
            "lr=0.003": np.array([[0.10, 0.30], [0.20, 0.20]]),      # mean 0.20  <- lowest
            "lr=0.01": np.array([[np.nan, 0.0], [0.0, 0.0]])}        # diverged: never chosen
    best, means = picce.select_by_validation(grid)
    assert best == "lr=0.003"
    assert means["lr=0.001"] == pytest.approx(0.25) and means["lr=0.003"] == pytest.approx(0.20)
    tie = {"a": np.full((2, 2), 0.2), "b": np.full((2, 2), 0.2)}
    assert picce.select_by_validation(tie)[0] == "a"                  # ties: the first point in grid order
    with pytest.raises(ValueError, match="at least one"):
        picce.select_by_validation({})


def test_the_choice_uses_validation_only_and_reports_test_at_the_chosen_point():
    """Point A is better on validation, point B on test: A must be chosen and A's test numbers reported. Using
    test numbers (or reporting the best test point) would pick B."""
    c = _config()
    grid = {"lr=0.001": _arrays(val_se=[0.30, 0.20, 0.15, 0.16], test_se=[0.40, 0.35, 0.33, 0.34]),   # A
            "lr=0.003": _arrays(val_se=[0.35, 0.25, 0.22, 0.21], test_se=[0.10, 0.10, 0.10, 0.10])}   # B
    stats, chosen = picce.tuned_stats(c, "gmm", grid)
    assert set(chosen) == {"short (1 ep)", "medium (2 ep)", "converged (best val)"}
    assert all(ch["point"] == "lr=0.001" for ch in chosen.values())
    np.testing.assert_allclose(stats["short (1 ep)"]["system_error"], 0.40)
    np.testing.assert_allclose(stats["medium (2 ep)"]["system_error"], 0.35)
    np.testing.assert_allclose(stats["converged (best val)"]["system_error"], 0.33)    # A's best-val epoch (3)
    # the choice itself never touches a test array
    guarded = {t: _ValidationOnly(a) for t, a in grid.items()}
    assert picce.choose_points(c, "gmm", guarded)[0] == chosen


def test_each_budget_gets_its_own_choice_from_the_same_runs():
    """A fast learning rate wins at the 1-epoch budget, a slow one once trained longer."""
    c = _config()
    grid = {"lr=0.001": _arrays(val_se=[0.50, 0.30, 0.15, 0.14], test_se=[0.51, 0.31, 0.16, 0.15]),
            "lr=0.003": _arrays(val_se=[0.25, 0.22, 0.21, 0.20], test_se=[0.26, 0.23, 0.22, 0.21])}
    stats, chosen = picce.tuned_stats(c, "gmm", grid)
    assert chosen["short (1 ep)"]["point"] == "lr=0.003"
    assert chosen["medium (2 ep)"]["point"] == "lr=0.003"
    assert chosen["converged (best val)"]["point"] == "lr=0.001"
    np.testing.assert_allclose(stats["short (1 ep)"]["system_error"], 0.26)
    np.testing.assert_allclose(stats["converged (best val)"]["system_error"], 0.15)
    np.testing.assert_allclose(stats["converged (best val)"]["epoch"], 4)
    rows = picce.hparam_rows({("gmm", "specialist", "ce"): chosen})
    assert [r["lr"] for r in rows] == [0.003, 0.003, 0.001]
    assert rows[0]["grid_val_system_error"] == {"lr=0.001": 0.5, "lr=0.003": 0.25}


def test_grid_points_per_method_and_bad_grids():
    c = get_config("full")
    assert picce.grid_points(c, "ce") == [{"lr": v} for v in c.lr_grid]
    real = picce.grid_points(c, "realizable")
    assert len(real) == len(c.lr_grid) * len(c.rs_alpha_grid) and {"lr", "alpha"} == set(real[0])
    dec = picce.grid_points(c, "decoupled")
    assert {p["expert_weight"] for p in dec} == set(c.decoupled_weight_grid)
    assert picce.parse_tag(picce.point_tag(real[4])) == real[4]
    cells = picce.make_cells(c)
    assert len({cell.id for cell in cells}) == len(cells)
    assert len(cells) == 2 * 3 * len(c.lr_grid) * (4 + len(c.rs_alpha_grid) + len(c.decoupled_weight_grid))
    c.lr_grid = [1e-3, 0.0]
    with pytest.raises(ValueError, match="lr_grid"):
        picce.grid_points(c, "ce")
    c.lr_grid = [1e-3]
    c.rs_alpha_grid = []
    with pytest.raises(ValueError, match="rs_alpha_grid"):
        picce.grid_points(c, "realizable")
