"""REPORT.md from two hand-made summaries: the expected table rows and verdicts."""

import json
import os

import pytest

from jaxlab.core import registry, report, summary


@pytest.fixture
def fake_registry(monkeypatch):
    exps = (
        registry.Experiment("alpha", "Alpha paper", "2601.00001", "jaxlab.alpha", "Alpha beats beta.",
                            runner="x:run", config="x.py", budget_s=100),
        registry.Experiment("gamma", "Gamma paper", "", "jaxlab.gamma", "Gamma is stable.",
                            runner="y:run", config="y.py", budget_s=10),
        registry.Experiment("delta", "Delta paper", "", "jaxlab.delta", "Delta is new."),
        registry.Experiment("eps", "Eps paper", "", "jaxlab.eps", "Eps.", runner="z:run", config="z.py"),
    )
    monkeypatch.setattr(registry, "EXPERIMENTS", exps)
    return exps


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def test_report_renders_tables_and_verdicts(tmp_path, fake_registry):
    c1 = summary.claim("acc", "alpha is more accurate", "accuracy", ours=("alpha", [0.9, 0.92, 0.94]),
                       baselines={"beta": [0.5, 0.52, 0.54]}, higher_is_better=True)
    _write(tmp_path / "alpha" / "summary.json",
           {"paper": "alpha", "seeds": [0, 1, 2], "wall_time_s": 42.0, "config_hash": "abc", "claims": [c1],
            "tables": {"main": [{"method": "alpha", "acc_mean": 0.92}, {"method": "beta", "acc_mean": 0.52}]},
            "figures": ["figures/curve.png"], "headline": "alpha 0.92 vs beta 0.52"})
    c2 = summary.claim("stab", "gamma collapses less", "collapse_rate", ours=("gamma", [0.3, 0.4, 0.5]),
                       baselines={"base": [0.3, 0.35, 0.4]}, higher_is_better=False)
    _write(tmp_path / "gamma" / "summary.json",
           {"paper": "gamma", "seeds": [0, 1, 2], "wall_time_s": 20.0, "config_hash": "def", "claims": [c2],
            "tables": {}, "figures": []})
    _write(tmp_path / "eps" / "failed.json", {"error": "exit code 1\nZeroDivisionError: boom", "wall_time_s": 3.0})
    text = report.render(str(tmp_path), "quick")
    assert ("| alpha | [Alpha paper](#alpha) (arXiv 2601.00001) | done | **reproduced** (1/1 paper claims) | "
            "1/1 reproduced | 42 s (100 s) |") in text
    assert "| gamma | [Gamma paper](#gamma) | done | **not reproduced** (0/1 paper claims) | 0/1 reproduced | " \
           "20 s (10 s) **over budget** |" in text
    assert "| delta | [Delta paper](#delta) | not implemented | | | |" in text
    assert "| eps | [Eps paper](#eps) | **FAILED** | exit code 1 ZeroDivisionError: boom | | 3 s |" in text
    assert "- [alpha](#alpha)" in text                                   # table of contents
    # d = 0.4, se = sqrt(2 * 0.0004 / 3), df = 4: 90% CI 0.4 ± 2.1318 * 0.01633.
    assert ("| acc | alpha is more accurate | accuracy ↑ | alpha: 0.92 ± 0.02 (n=3) | beta: 0.52 ± 0.02 (n=3) | "
            "0.4 [0.3652, 0.4348] | 8.242e-06 | reproduced |") in text
    assert "| stab | gamma collapses less | collapse_rate ↓ | gamma: 0.4 ± 0.1 (n=3) |" in text
    assert "### alpha: Paper claims" in text and "**Paper-level verdict: **reproduced** (1/1 paper claims)**" in text
    assert "| method | acc_mean |\n|---|---|\n| alpha | 0.92 |\n| beta | 0.52 |" in text
    assert "![curve.png](alpha/figures/curve.png)" in text
    assert "**Headline:** alpha 0.92 vs beta 0.52" in text
    path = report.write_report(str(tmp_path), "quick")
    assert open(path).read() == text


def test_blocks_are_separate_and_only_paper_claims_decide(tmp_path, fake_registry):
    paper = summary.claim("p", "alpha beats beta", "acc", ours=("alpha", [0.5, 0.51, 0.52]),
                          baselines={"beta": [0.9, 0.91, 0.92]}, higher_is_better=True)
    sanity = summary.claim("s", "alpha learns", "acc", ours=("alpha", [0.5, 0.51, 0.52]),
                           baselines={"start": [0.1, 0.1, 0.1]}, higher_is_better=True, block="sanity")
    variant = summary.claim("v", "ours-TR beats alpha", "acc", ours=("tr", [0.95, 0.96, 0.97]),
                            baselines={"alpha": [0.5, 0.51, 0.52]}, higher_is_better=True, block="variant")
    none = summary.untestable("u", "IC > 0", "ic", "power check failed")
    _write(tmp_path / "alpha" / "summary.json", {"paper": "alpha", "seeds": [0, 1, 2], "wall_time_s": 1.0,
                                                 "claims": [paper, sanity, variant, none]})
    text = report.render(str(tmp_path), "quick")
    assert "**not reproduced** (0/2 paper claims) | 2/4 reproduced" in text
    i_p, i_s, i_v = (text.index(f"### alpha: {t}") for t in ("Paper claims", "Sanity checks", "Our own variants"))
    assert i_p < text.index("| p | alpha beats beta") < i_s < text.index("| s | alpha learns") < i_v
    assert "| u | IC > 0 | ic | | | | | untestable here: power check failed |" in text
    (tmp_path / "alpha" / "summary.json").write_text('{"paper": "alpha", "claims": [')      # cut mid-write
    _write(tmp_path / "gamma" / "summary.json", {"paper": "gamma", "seeds": [0], "wall_time_s": 1.0,
                                                 "claims": [sanity]})
    text = report.render(str(tmp_path), "quick")
    assert "| alpha | [Alpha paper](#alpha) (arXiv 2601.00001) | **FAILED** | summary.json is unreadable" in text
    assert "| gamma | [Gamma paper](#gamma) | done | **untestable here** (0/0 paper claims)" in text


def test_single_run_report(tmp_path, fake_registry):
    c = summary.claim("acc", "alpha is more accurate", "accuracy", ours=("alpha", [0.9, 0.92, 0.94]),
                      baselines={"beta": [0.5, 0.52, 0.54]}, higher_is_better=True)
    _write(tmp_path / "run" / "summary.json", {"paper": "alpha", "seeds": [0, 1, 2], "wall_time_s": 2.0,
                                               "claims": [c], "figures": ["figures/a.png"]})
    path = report.write_run_report(str(tmp_path / "run"))
    text = open(path).read()
    assert text.startswith("## alpha") and "![a.png](figures/a.png)" in text and "| acc |" in text
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        report.render_run(str(tmp_path / "nothing"))


def test_update_docs_rewrites_only_the_marked_block(tmp_path, fake_registry):
    _write(tmp_path / "full" / "alpha" / "summary.json",
           {"seeds": [0, 1, 2], "claims": [], "headline": "alpha wins by 0.4"})
    doc = tmp_path / "README.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n")
    changed = report.update_docs([str(doc)], full_dir=str(tmp_path / "full"))
    text = doc.read_text()
    assert changed == [str(doc)]
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| full results (3 seeds) | **untestable here** (0/0 paper claims). alpha wins by 0.4 |" in text
    assert "| Delta paper | `jaxlab.delta` | — | — | not implemented |" in text


def test_report_cli_missing_folders_are_one_error_line(tmp_path, capsys):
    """Issue 20 sweep: `--run` on a missing run (a FileNotFoundError traceback before) and a missing results
    workdir (an empty REPORT.md written silently before) are one `error:` line and exit 2."""
    for argv in (["--run", str(tmp_path / "missing")], ["--workdir", str(tmp_path / "nothing")]):
        with pytest.raises(SystemExit) as exc:
            report.main(argv)
        assert exc.value.code == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and argv[1] in err[0], err
    assert not (tmp_path / "nothing").exists()
