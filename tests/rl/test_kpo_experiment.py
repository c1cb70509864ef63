"""experiments/kpo.py on jaxlab.core.study: a changed hyperparameter never reuses a run computed under the old
one, a summary-only setting reuses every run, and in-run checkpoints are named by the config hash. The SFT model,
the problems and the RL run are replaced by fakes (a run's history is a deterministic function of its cell config
and seed), so no LM is trained here."""

import json
import zlib

import numpy as np
import pytest

from experiments import kpo
from experiments.configs.kpo import get_config


def _fake_run_one(calls, avg_of=None):
    def run_one(cell, seed, eval_p=None, **_):
        calls.append((cell.id, cell.config["rl"]["lr"], seed))
        rng = np.random.default_rng(zlib.crc32((json.dumps(cell.config, sort_keys=True) + str(seed)).encode()))
        k, steps = cell.config["rl"]["eval_samples"], cell.config["rl"]["steps"]
        avg = avg_of(cell, eval_p) if avg_of is not None else None
        return {"eval": [{"step": s, f"avg@{k}": float(rng.uniform()) if avg is None or s == 0 else avg,
                          f"pass@{k}": float(rng.uniform()),
                          "greedy_acc": float(rng.uniform())} for s in (0, steps)],
                "entropy": rng.uniform(0.5, 1.0, steps).tolist(), "reward": rng.uniform(size=steps).tolist(),
                "grad_norm_max": rng.uniform(1, 20, steps).tolist(),
                "grad_norms": rng.uniform(1, 20, (steps, 2)).tolist(),
                **{key: rng.uniform(size=steps).tolist() for key in (
                    "clip_frac", "switch_raw", "switch_filt", "runlen_raw", "runlen_filt", "lowfreq_raw",
                    "lowfreq_filt", "log_ratio_var")}}
    return run_one


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(kpo.cache, "load_or_train", lambda *a, **k: ({"w": np.ones(3)}, {"cached": True,
                                                                                        "key": "lm_fake"}))
    monkeypatch.setattr(kpo, "model_config", lambda *a, **k: None)
    monkeypatch.setattr(kpo, "problems", lambda config: (list(range(8)), list(range(4))))
    monkeypatch.setattr(kpo, "val_problems", lambda config, train: ["val"] * 4)
    monkeypatch.setattr(kpo.plots, "curves", lambda path, *a, **k: path)

    def install(calls, avg_of=None):
        monkeypatch.setattr(kpo, "run_one", _fake_run_one(calls, avg_of))
    return install


def _n_tune(c):
    return sum(len(points) for points in c.tune.grids.to_dict().values()) * len(c.tune.seeds)


def _dump(x):
    return json.dumps(x, sort_keys=True, default=str)


def test_changed_hyperparameter_recomputes_and_summary_settings_reuse(fake, tmp_path):
    calls = []
    fake(calls)
    c = get_config("quick")
    first = kpo.run(c, str(tmp_path))
    n = len(c.methods) * len(c.seeds) + _n_tune(c)
    assert _n_tune(c) == 2 and len(calls) == n
    c.big_norm = 5.0                                   # read by the summary only: every run is reused
    kpo.run(c, str(tmp_path))
    assert len(calls) == n
    c.rl.lr = 1e-4                                     # a training hyperparameter: every run is recomputed
    changed = kpo.run(c, str(tmp_path))
    assert len(calls) == 2 * n and all(lr == 1e-4 for _, lr, _ in calls[n:])
    fake([])
    fresh = kpo.run(c, str(tmp_path / "fresh"))
    assert _dump(changed["tables"]) == _dump(fresh["tables"])
    assert _dump(changed["tables"]["main"]) != _dump(first["tables"]["main"])


def test_condition_overrides_enter_the_cell_config_and_checkpoint_names():
    c = get_config("quick")
    cells = kpo.make_cells(c, kpo.run_specs(c))
    assert {cell.config["rl"]["noise"] for cell in cells} == {"student_t"}      # the noise condition's override
    c2 = get_config("quick")
    c2.task.n_train = 999
    cells2 = kpo.make_cells(c2, kpo.run_specs(c2))
    assert [x.id for x in cells] == [x.id for x in cells2]
    assert kpo._ckpt_dir("w", cells[0], 0) != kpo._ckpt_dir("w", cells2[0], 0)


def test_summarize_only_reports_the_finished_cells(fake, tmp_path):
    calls = []
    fake(calls)
    c = get_config("quick")
    c.methods = ["grpo", "kpo_clipped"]
    kpo.run(c, str(tmp_path))
    c.methods = ["grpo", "kpo_clipped", "grpo_dual"]
    c.summarize_only = True
    out = kpo.run(c, str(tmp_path))
    assert len(calls) == 2 * len(c.seeds) + _n_tune(c)
    assert {r["method"] for r in out["tables"]["main"]} == {"grpo", "kpo_clipped"}


def test_user_overrides_win_over_condition_settings_and_are_recorded(fake, tmp_path):
    """Issue 20 item 6: `--config.rl.<key>` of a key a condition sets (noise, noise_scale, minibatches, epochs,
    staleness, lr under drift) reaches every run, and config.json records the same value (the conditions used to
    overwrite it silently). A condition's own setting is changed through `condition_settings.<cond>.<key>`."""
    from jaxlab.core.app import run_experiment
    from jaxlab.core.config import load_config
    user = {"rl.noise": "none", "rl.noise_scale": "0.1", "rl.n_minibatches": "2", "rl.epochs": "3",
            "rl.staleness": "1", "rl.lr": "2e-4"}
    c = load_config("experiments/configs/kpo.py", "quick",
                    {**user, "conditions": "noise,drift", "methods": "grpo,kpo_clipped",
                     "condition_settings.drift.steps": "4"})
    want = {"noise": "none", "noise_scale": 0.1, "n_minibatches": 2, "epochs": 3, "staleness": 1, "lr": 2e-4}
    cells = kpo.make_cells(c, kpo.run_specs(c))
    assert {cell.config["cond"] for cell in cells} == {"noise", "drift"}
    for cell in cells:
        assert {k: cell.config["rl"][k] for k in want} == want, cell.id
        assert cell.config["rl"]["steps"] == (4 if cell.config["cond"] == "drift" else 6)
    calls = []
    fake(calls)
    run_experiment("kpo", kpo.run, c, str(tmp_path), "quick")
    recorded = json.load(open(tmp_path / "config.json"))
    assert {k: recorded["rl"][k] for k in want} == want
    assert recorded["condition_settings"]["drift"]["steps"] == 4
    assert calls and all(lr == 2e-4 for _, lr, _ in calls)


def test_rl_method_override_is_an_error_not_ignored():
    from jaxlab.core.config import load_config
    c = load_config("experiments/configs/kpo.py", "quick", {"rl.method": "gspo"})
    with pytest.raises(ValueError, match="--config.methods=gspo"):
        kpo.run_specs(c)


def test_tuning_picks_on_validation_problems_and_every_condition_uses_the_pick(fake, tmp_path):
    """The tuning stage runs each grid point on the validation problems only, picks the best mean final
    validation avg@k per method, and the final runs (on the test problems) use it; the summary records it.
    The fake makes kpo_Q = 0.1 best on validation and worst on test, so a choice made on test numbers fails."""
    calls, seen = [], []

    def avg_of(cell, eval_p):
        seen.append((cell.config.get("stage", "final"), tuple(eval_p)))
        good = cell.config["rl"]["kpo_Q"] == 0.1
        return (0.9 if good else 0.2) if eval_p == ["val"] * 4 else (0.1 if good else 0.8)
    fake(calls, avg_of)
    c = get_config("quick")
    out = kpo.run(c, str(tmp_path))
    assert out["chosen_on_validation"] == {"kpo_clipped": {"kpo_Q": 0.1}}
    assert {p for stage, p in seen if stage == "tune"} == {("val",) * 4}
    assert {p for stage, p in seen if stage == "final"} == {(0, 1, 2, 3)}
    finals = {cell.config["rl"]["kpo_Q"] for cell in kpo.make_cells(c, kpo.run_specs(c, out["chosen_on_validation"]))
              if cell.config["rl"]["method"] == "kpo_clipped"}
    assert finals == {0.1}
    rows = out["tables"]["tuning"]
    assert [r["chosen"] for r in rows] == [False, True] and rows[1]["val_avg_mean"] == 0.9


def test_choose_takes_the_best_mean_and_the_earlier_point_on_ties():
    specs = [dict(cond="c", label=f"tune_m_{j}", method="m", point={"q": q}) for j, q in enumerate((1, 2, 3))]
    res = {("c", "tune_m_0", 0): {"avg": 0.5}, ("c", "tune_m_0", 1): {"avg": 0.7},
           ("c", "tune_m_1", 0): {"avg": 0.6}, ("c", "tune_m_1", 1): {"avg": 0.6},
           ("c", "tune_m_2", 0): {"avg": 0.9}, ("c", "tune_m_2", 1): {"avg": 0.1}}
    chosen, table = kpo.choose(specs, res, [0, 1])
    assert chosen == {"m": {"q": 1}} and [r["chosen"] for r in table] == [True, False, False]


def test_full_config_is_the_fair_study():
    c = get_config("full")
    assert list(c.conditions) == ["learn_noise", "learn_drift"] and len(c.seeds) == 5
    assert c.condition_settings.learn_drift.n_prompts == 32 and c.condition_settings.learn_noise.n_prompts == 32
    assert set(c.tune.grids.to_dict()) == set(c.methods) and c.sft_cache == "study"
    assert c.task.eval_seed != get_config("quick").task.eval_seed and c.tune.val_seed != c.task.eval_seed
