"""LM data: the population is the distinct val/test questions; U is 1 - prob of the direct answer's
tokens (EOS excluded), checked against teacher-forced log-probs, with a tiny random model."""

import jax
import numpy as np
import pytest

from jaxlab import lm
from jaxlab.lm import tasks
from jaxlab.pac import lm_data


def test_family_population_distinct_and_held_out():
    probs = lm_data.family_population({"add1": 1, "addsub": 2, "mul1": 2}, max_per_family=300)
    by = {f: [p for p in probs if p.family == f] for f in ("add1", "addsub", "mul1")}
    assert len(by["add1"]) == 100 and len(by["addsub"]) == 300
    n_mul = sum(tasks.split_of(f"{a}*{m}") in ("val", "test") for a in range(10, 100) for m in range(2, 10))
    assert len(by["mul1"]) == n_mul
    for f in ("addsub", "mul1"):
        qs = [p.question for p in by[f]]
        assert len(set(qs)) == len(qs)
        assert all(tasks.split_of(q) in ("val", "test") for q in qs)
        assert all(tasks.verify(f"A:{p.answer}", p.answer) and eval(p.question) == p.answer for p in by[f])
    with pytest.raises(ValueError, match="families"):
        lm_data.family_population({"nope": 1}, max_per_family=10)


@pytest.mark.slow      # ~23 CPU-s (four compiles of a tiny model); the U definition check runs in make test-slow
def test_answer_both_modes_scores_match_teacher_forcing():
    tok = lm.CharTokenizer()
    cfg = lm.LMConfig(vocab_size=tok.vocab_size, d_model=32, num_layers=1, num_heads=2, d_ff=64, max_len=24)
    params = lm.init(jax.random.PRNGKey(0), cfg)
    probs = lm_data.family_population({"add1": 1}, max_per_family=100)[:8]
    d = lm_data.answer_both_modes(params, probs, cfg=cfg, tok=tok, batch_size=8)
    assert d["emb"].shape == (8, 32) and np.all((d["scores"] >= 0) & (d["scores"] <= 1))
    assert set(np.unique(d["losses"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(d["losses"], d["loss_disagree"])
    # teacher-forced check of U on the greedy direct tokens
    ids = lm_data.prompts_of(probs, tok, "direct")
    toks = lm_data._direct_tokens(params, probs, cfg, tok, 8)
    out = lm.sample(params, None, ids, cfg=cfg, max_new_tokens=8, greedy=True)
    seq, mask = lm.sequences(ids, out)
    keep = np.asarray(out.mask[:, 0]) & (toks != cfg.eos_id)
    resp = np.asarray(lm.logprobs(params, seq, mask, cfg=cfg))[:, ids.shape[1]:]
    assert resp.shape == keep.shape
    np.testing.assert_allclose(d["scores"], 1 - np.exp((resp * keep).sum(-1)), atol=1e-4)
