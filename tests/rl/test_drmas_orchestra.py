"""Solver -> Checker -> retry orchestra on hand-built transcripts (spec drmas §8 test 9)."""

import numpy as np
import pytest

from jaxlab.lm import CharTokenizer, LMConfig, Problem
from jaxlab.lm.sampler import SampleOutput
from jaxlab.rl import orchestra as orc

TOK = CharTokenizer()
CFG = LMConfig(vocab_size=TOK.vocab_size, d_model=16, num_layers=1, num_heads=2, d_ff=32, max_len=64,
               pad_id=TOK.pad_id, bos_id=TOK.bos_id, eos_id=TOK.eos_id)
P1 = Problem("47+85", "7+5=12,4+8+1=13;47+85=132", 132, "addsub", 1, 2)
P2 = Problem("12-5", "12-5=7", 7, "addsub", 1, 2)


class Script:
    """A `lm.sample` stand-in that returns scripted texts turn by turn and records the prompts."""

    def __init__(self, turns):
        self.turns, self.prompts, self.params = list(turns), [], []

    def __call__(self, params, key, prompts_bp, *, cfg, max_new_tokens, num_samples, temperature,
                 greedy):
        assert num_samples == 1
        self.params.append(params)
        self.prompts.append([TOK.decode(r) for r in np.asarray(prompts_bp)])
        texts = self.turns.pop(0)
        B, N = len(texts), max_new_tokens
        toks = np.full((B, 1, N), TOK.pad_id, np.int32)
        mask = np.zeros((B, 1, N), bool)
        for b, t in enumerate(texts):
            ids = TOK.encode(t)
            toks[b, 0, :len(ids)] = ids
            mask[b, 0, :len(ids)] = True
        lp = np.where(mask, -0.5, 0.0).astype(np.float32)
        return SampleOutput(toks, lp, lp, mask, mask.sum(-1), mask.any(-1))


SOLVER = ["7+5=12;47+85=132 A:132<eos>", "47+85=131 A:131<eos>", "12-5=7 A:7<eos>", "12-5 A:x<eos>"]
CHECKER = ["47+85=132 <yes><eos>", "47+85=132 <no><eos>", "12-5=7 7<eos>", "12-5=7 <no><eos>"]
RETRY = ["47+85=132 A:132<eos>", "47+85=132 A:132<eos>", "12-5=8 A:8<eos>", "12-5=7 A:7<eos>"]


def _episode(**kw):
    script = Script([SOLVER, CHECKER, RETRY])
    L = orc.max_prompt_len([P1, P2], TOK)
    ep = orc.run_orchestra(("S", "C"), np.zeros(2, np.uint32), [P1, P2], cfg=CFG,
                           tok=TOK, group_size=2, max_new_tokens=24, prompt_len=L, sample_fn=script,
                           **kw)
    return ep, script, L


def test_routing_of_hand_built_transcripts():
    ep, script, L = _episode()
    r = ep.routing
    # rollout 0: yes ends; 1: no -> one retry; 2: malformed verdict -> retry (penalized); 3: unparseable
    np.testing.assert_array_equal(r.verdict, [1, 0, -1, 0])
    np.testing.assert_array_equal(r.retried, [False, True, True, True])
    assert list(r.final) == [132, 132, 8, 7]
    np.testing.assert_array_equal(r.correct, [True, True, False, True])
    np.testing.assert_array_equal(r.correct1, [True, False, True, False])
    np.testing.assert_array_equal(r.verdict_right, [True, True, False, True])
    np.testing.assert_array_equal(r.invalid, [[False, False, False, True],
                                              [False, False, True, False],
                                              [False, False, False, False]])
    # the checker sees the solver's answer ('?' when unparseable); retries see the candidate + <no>
    assert script.prompts[1][0].endswith("<bos><C>Q:47+85= A:132 T:")
    assert script.prompts[1][3].endswith("<bos><C>Q:12-5= A:? T:")
    assert script.prompts[2][1].endswith("<bos><S>Q:47+85= A:131<no> T:")
    assert script.prompts[0][2].endswith("<bos><S>Q:12-5= T:")
    # roles use the right weights: solver, checker, solver
    assert script.params == ["S", "C", "S"]


def test_step_rows_agent_ids_masks_and_fixed_shapes():
    ep, _, L = _episode()
    R, N = 4, 24
    assert ep.seq.shape == (3 * R, L + N) and ep.mask.shape == (3 * R, L + N)
    assert ep.old_logp.shape == (3 * R, N)
    np.testing.assert_array_equal(ep.agent, [0] * 4 + [1] * 4 + [0] * 4)
    np.testing.assert_array_equal(ep.prompt, [0, 0, 1, 1] * 3)
    np.testing.assert_array_equal(ep.traj, [0, 1, 2, 3] * 3)
    np.testing.assert_array_equal(ep.valid, [True] * 8 + [False, True, True, True])
    assert not ep.mask[8].any() and ep.mask[9].any()            # absent retry row is fully masked
    assert not ep.mask[:, :L].any()                             # prompts are never targets
    # per-turn solver steps in {1, 2}, checker steps == 1
    solver_steps = np.bincount(ep.traj[ep.valid & (ep.agent == 0)], minlength=4)
    checker_steps = np.bincount(ep.traj[ep.valid & (ep.agent == 1)], minlength=4)
    assert set(solver_steps) <= {1, 2} and np.all(checker_steps == 1)
    # the response tokens are the scripted texts
    assert TOK.decode(ep.seq[4, L:], stop_at_eos=True) == CHECKER[0]


def test_rewards_faithful_and_stress():
    ep, _, _ = _episode()
    f = orc.step_rewards(ep.routing, regime="faithful")
    np.testing.assert_allclose(f, [[1, 1, 0, 0.9], [1, 1, -0.1, 1], [0, 1, 0, 1]], atol=1e-6)
    s = orc.step_rewards(ep.routing, regime="stress", checker_bonus=5.0)
    np.testing.assert_allclose(s[1], [6, 6, -0.1, 6], atol=1e-6)
    np.testing.assert_allclose(s[[0, 2]], f[[0, 2]])
    with pytest.raises(ValueError, match="regime"):
        orc.step_rewards(ep.routing, regime="harsh")


def test_system_metrics():
    ep, _, _ = _episode()
    m = orc.system_metrics(ep.routing, 2)
    assert m["avg@2"] == 0.75 and m["pass@2"] == 1.0 and m["retry_rate"] == 0.75
    assert m["checker_precision"] == 1.0 and m["checker_recall"] == 0.5 and m["reject_recall"] == 1.0
    assert m["malformed_rate"] == 0.25 and m["collapsed"] == 0.0


def test_verdict_and_answer_parsing():
    assert orc.parse_verdict("1+2=3 <yes><eos>") is True
    assert orc.parse_verdict("1+2=3 <no><eos><pad>") is False
    assert orc.parse_verdict("<yes> <no><eos>") is None
    assert orc.parse_verdict("<yes>3<eos>") is None
    assert orc.parse_verdict("") is None
    assert orc.solver_answer("1+2=3 A:3<eos>") == 3 and orc.solver_answer("1+2=3<eos>") is None
    assert orc.candidate_text(None) == "?" and orc.candidate_text(123456) == "?"


def test_sft_rows_fit_and_half_the_checker_candidates_are_wrong():
    probs = [P1, P2] * 100
    rows = orc.sft_rows(probs, seed=0)
    assert len(rows) == 600
    assert max(len(TOK.encode(a + b)) for a, b in rows) <= 64
    checker = [b for a, b in rows if a.startswith("<bos><C>")]
    frac_no = np.mean([b.endswith("<no><eos>") for b in checker])
    assert 0.4 < frac_no < 0.6
    for a, b in rows:
        if a.startswith("<bos><C>"):
            cand = a.split("A:")[1].split(" ")[0]
            gold = P1.answer if "47+85" in a else P2.answer
            assert b.endswith("<yes><eos>") == (cand == str(gold))


def test_prompt_that_does_not_fit_raises():
    L = orc.max_prompt_len([P1, P2], TOK)
    with pytest.raises(ValueError, match="max_len"):
        orc.run_orchestra(("S", "C"), None, [P1], cfg=CFG, tok=TOK, group_size=2,
                          max_new_tokens=64 - L + 1, prompt_len=L, sample_fn=Script([]))
    with pytest.raises(ValueError, match="prompt_len"):
        orc.run_orchestra(("S", "C"), None, [P1], cfg=CFG, tok=TOK, group_size=2,
                          max_new_tokens=8, prompt_len=L - 1, sample_fn=Script([]))
    with pytest.raises(ValueError, match="agent_params"):
        orc.run_orchestra(("S",), None, [P1], cfg=CFG, tok=TOK, group_size=2, max_new_tokens=8,
                          prompt_len=L, sample_fn=Script([]))


def test_compare_format_puts_digit_i_of_both_numbers_a_fixed_distance_apart():
    assert orc.checker_completion(P1, "131") == "7+5=12,4+8+1=13;47+85=132 <no><eos>"
    assert (orc.checker_completion(P1, "131", compare_width=4)
            == "7+5=12,4+8+1=13;47+85=132 _132/_131 <no><eos>")
    assert (orc.checker_completion(P2, "7", compare_width=4)
            == "12-5=7 ___7/___7 <yes><eos>")
    for cand in ["-9", "1322", "?", "13", "132"]:
        text = orc.checker_completion(P1, cand, compare_width=4)
        ids = TOK.encode(text)
        start = len(TOK.encode(P1.steps + " "))
        rec, slash, cnd = ids[start:start + 4], ids[start + 4], ids[start + 5:start + 9]
        assert TOK.decode(rec) == "_132" and TOK.decode([slash]) == "/"
        assert TOK.decode(cnd).lstrip("_") == cand and len(TOK.decode(cnd)) == 4
        assert orc.parse_verdict(text) is (cand == "132")
    assert orc.pad_number("12345", 4) == "12345"
    with pytest.raises(ValueError, match="compare_width"):
        orc.checker_completion(P1, "1", compare_width=-1)
    with pytest.raises(ValueError, match="compare_width"):
        orc.checker_completion(P1, "1", compare_width=2)         # 132 does not fit


def test_checker_rows_supervise_only_the_comparison_and_the_verdict():
    probs = [P1, P2] * 100
    rows = orc.checker_rows(probs, seed=0, compare_width=4)
    assert len(rows) == 200
    yes = []
    for p, (pr, co) in zip(probs, rows):
        cand = pr.split(" A:")[1].split(" T:")[0]
        assert pr + co == orc.checker_prompt(p, cand) + orc.checker_completion(p, cand, compare_width=4)
        assert pr.endswith(p.steps + " ") and not any(ch in co for ch in "+;,")
        yes.append(co.endswith("<yes><eos>"))
        assert yes[-1] == (cand == str(p.answer))
    assert 0.4 < np.mean(yes) < 0.6
    assert orc.checker_rows([P1], seed=0)[0][1] in ("<yes><eos>", "<no><eos>")


def test_sft_rows_with_the_default_format_are_unchanged():
    """The refactor that added the compare format keeps the default rows (and so the cache key of the
    models trained on them): digest of rows made before the change."""
    from jaxlab.lm import cache, tasks
    probs = tasks.generate("addsub", 50, seed=3, split="train", digits=2)
    rows = orc.sft_rows(probs, seed=5, wrong_frac=0.5, unparseable_frac=0.2)
    assert cache.rows_digest(rows) == "da4390ba0d3da5f9"
    wide = orc.sft_rows(probs, seed=5, wrong_frac=0.5, unparseable_frac=0.2, compare_width=4)
    assert [r for i, r in enumerate(wide) if i % 3 != 1] == [r for i, r in enumerate(rows) if i % 3 != 1]
    assert [w[0] for w in wide[1::3]] == [r[0] for r in rows[1::3]]     # same candidates
    for p, (pr, co) in zip(probs, wide[1::3]):
        assert co == orc.checker_completion(p, pr.split(" A:")[1].split(" T:")[0], compare_width=4)
