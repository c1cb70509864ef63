from benchmarks.lm_sampling import run


def test_benchmark_tiny_parity_and_record(tmp_path):
    res = run("tiny", str(tmp_path / "b.json"))
    row = res["rows"][0]
    assert row["same_tokens"] and row["max_logit_diff"] < 1e-4
    assert (tmp_path / "b.json").exists() and row["median_s"] > 0
