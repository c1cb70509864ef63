import pytest

from experiments.configs.lm_sft import get_config


@pytest.mark.slow
def test_quick_experiment_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_CACHE_DIR", str(tmp_path / "cache"))
    from experiments.lm_sft import run
    c = get_config("quick")
    c.optim.steps = 200
    c.eval.n_samples = 2
    s = run(c, str(tmp_path / "run"))
    ids = {cl["id"]: cl for cl in s["claims"]}
    assert set(ids) == {"cot_beats_direct", "learns_add1"}
    assert all(cl["verdict"] in ("reproduced", "mixed", "not reproduced") for cl in ids.values())
    assert (tmp_path / "run" / "figures" / "accuracy.png").exists()
    fams = {r["family"] for r in s["tables"]["main"]}
    assert fams == {"add1", "addsub", "mul1", "all"}
