from benchmarks.lm_sampling import FAST, run


def test_benchmark_tiny_parity_and_record(tmp_path):
    """The tiny benchmark checks cache vs recompute parity, then runs today's decoder against the fast options
    in this process and in a child process on 2 host devices; every option row must keep today's greedy tokens
    (the benchmark raises otherwise) and log-probs within float32 rounding."""
    res = run("tiny", str(tmp_path / "b.json"))
    row = res["rows"][0]
    assert row["same_tokens"] and row["max_logit_diff"] < 1e-4
    assert (tmp_path / "b.json").exists() and row["median_s"] > 0
    opts = [r for r in res["rows"] if r["impl"] != "kv_cache"]
    assert [r["devices"] for r in opts] == [1, 2] and all(str(FAST["segments"]) in r["impl"] for r in opts)
    for r in opts:
        assert r["same_tokens"] and r["max_logprob_diff_vs_default"] < 1e-4
        assert abs(r["ratio_to_default"] - row["median_s"] / r["median_s"]) < 1e-12
    assert opts[0]["xla_flags"] == "" and "multi_thread_eigen=false" in opts[1]["xla_flags"]
