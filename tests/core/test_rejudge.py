"""Re-judging committed summaries: numbers kept, strict rule applied, blocks and dropped claims."""

from jaxlab.core import rejudge, summary


def _old_leaf(id_, ours, base, kind="better", margin=0.0, verdict="reproduced", hib=True):
    c = summary.claim(id_, "", "m", ours=("a", ours), baselines={"b": base}, higher_is_better=hib,
                      kind="better")
    c.update(kind=kind, margin=margin, verdict=verdict)
    return c


def test_kpo_rules_and_the_strict_rule():
    old = {"paper": "kpo", "claims": [
        _old_leaf("accuracy_noise", [0.17, 0.17, 0.168], [0.207, 0.208, 0.206], kind="no_worse", margin=0.02),
        _old_leaf("stability_noise", [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]),
        _old_leaf("stability_frac_noise", [0.0, 0.01, 0.0], [0.2, 0.18, 0.16], hib=False),
        _old_leaf("ours_tr_noise", [0.2, 0.21, 0.2], [0.17, 0.17, 0.168], kind="no_worse", margin=0.02),
        _old_leaf("grpo_learns", [0.04, 0.03, 0.03], [0.0, 0.0, 0.0])]}
    new = rejudge.rejudge(old)
    ids = [c["id"] for c in new["claims"]]
    assert "stability_noise" not in ids                            # max norm: not a claim any more
    by = {c["id"]: c for c in new["claims"]}
    # 19% below dual clip with tight seeds: the old rule said reproduced at margin 0.02; the t bound does not.
    assert by["accuracy_noise"]["verdict"] == "not reproduced"
    assert by["accuracy_noise"]["verdict_before"] == "reproduced"
    assert by["accuracy_noise"]["ours"]["values"] == [0.17, 0.17, 0.168]
    assert by["ours_tr_noise"]["block"] == "variant" and by["grpo_learns"]["block"] == "sanity"
    assert summary.paper_verdict(new["claims"]) == "mixed" and "rejudged" in new


def test_threshold_claims_become_better_than_the_constant():
    old = {"paper": "lm_sft", "claims": [_old_leaf("learns_add1", [0.99, 0.995, 0.998], [0.9], kind="no_worse")]}
    c = rejudge.rejudge(old)["claims"][0]
    assert c["kind"] == "better" and c["block"] == "sanity" and c["verdict"] == "reproduced"
    assert c["baselines"][0]["values"] == [0.9, 0.9, 0.9]


def test_negative_mi_estimates_make_the_fusion_mi_claim_untestable_and_a_second_pass_is_stable():
    old = {"paper": "fusion", "claims": [
        _old_leaf("mi_audio_vs_vision", [2.6, 2.5, 2.7], [-0.04, 0.01, -0.05]),
        _old_leaf("cabinet/mi_audio_vs_vision", [0.6, 0.7, 0.65], [0.1, 0.2, 0.15]),
        _old_leaf("hier_vs_flat", [0.9, 0.8, 0.85], [0.7, 0.75, 0.72], verdict="mixed")]}
    new = rejudge.rejudge(old)
    by = {c["id"]: c for c in new["claims"]}
    mi = by["mi_audio_vs_vision"]
    assert mi["verdict"] == "untestable here" and "[0, 2]" in mi["reason"] and mi["verdict_before"] == "reproduced"
    assert mi["baselines"][0]["values"] == [-0.04, 0.01, -0.05] and mi["baselines"][0]["verdict"] == "untestable here"
    assert summary.n_seeds([mi]) == 3                                   # the values still count their seeds
    assert by["cabinet/mi_audio_vs_vision"]["paired"] is True              # one policy per seed: paired
    assert by["cabinet/mi_audio_vs_vision"]["verdict"] == "reproduced"
    again = {c["id"]: c for c in rejudge.rejudge(new)["claims"]}
    assert again["hier_vs_flat"]["verdict_before"] == "mixed"               # the first verdict is kept
    assert again["hier_vs_flat"]["verdict"] == by["hier_vs_flat"]["verdict"]
    assert again["mi_audio_vs_vision"]["verdict"] == "untestable here"
