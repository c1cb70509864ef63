import re

import numpy as np
import pytest

from jaxlab.lm import tasks


def test_generators_are_deterministic_per_seed():
    for fam in tasks.FAMILIES:
        a = tasks.generate(fam, 20, seed=3, split="train")
        b = tasks.generate(fam, 20, seed=3, split="train")
        c = tasks.generate(fam, 20, seed=4, split="train")
        assert a == b
        assert fam == "add1" or a != c


@pytest.mark.parametrize("fam", tasks.FAMILIES)
def test_gold_cot_is_correct_arithmetic(fam):
    rng = np.random.default_rng(1)
    step_re = re.compile(r"^\(?(\d+)([+\-*])(\d+)=(-?\d+)$")
    for _ in range(200):
        p = tasks.sample_problem(rng, fam)
        assert eval(p.question) == p.answer                      # question text means the answer
        assert tasks.parse_answer(p.completion("cot")) == p.answer
        assert tasks.parse_answer(p.completion("direct")) == p.answer
        assert tasks.verify(p.text("cot"), p.answer) and tasks.verify(p.text("direct"), p.answer)
        summaries = [s for s in p.steps.split(";") if "," not in s]
        assert summaries, p
        for s in summaries:                                      # every summary is true
            m = step_re.match(s)
            if m:                                                 # column steps of single digits
                a, op, b, r = m.groups()
                assert eval(f"{a}{op}{b}") == int(r), s
        for col in ",".join(s for s in p.steps.split(";") if "," in s).split(","):
            if col:                                               # every column is true
                lhs, rhs = col.split("=")
                assert eval(lhs) == int(rhs), col


def test_columns_show_carries_and_borrows():
    assert tasks.add_step(47, 85) == "7+5=12,4+8+1=13;47+85=132"
    assert tasks.sub_step(82, 47) == "12-7=5,7-4=3;82-47=35"
    assert tasks.sub_step(47, 82) == "12-7=5,7-4=3;47-82=-35"
    assert tasks.mul_step(68, 9) == "8*9=72,6*9+7=61;68*9=612"
    assert tasks.mul2_steps(47, 36, detail="steps") == "47*6=282;47*30=1410;282+1410=1692"


def test_parser_handles_malformed_output():
    bad = ["", "A:", "A:12x", "T:3+4=7", "A: -", "A:1 2", "A:99999999999999999", "<eos>A:3",
           "A:+5", "garbage<pad>"]
    for text in bad:
        assert tasks.parse_answer(text) is tasks.UNPARSEABLE, text
    assert tasks.parse_answer(None) is None
    assert tasks.parse_answer("3+4=7 A:7<eos>A:8") == 7
    assert tasks.parse_answer("A:1 A:-12") == -12
    assert not tasks.verify("A:", 0) and tasks.verify(" 5 ", 5)


def test_splits_are_disjoint_and_overlap_check_detects_planted_duplicate():
    train = tasks.generate_mix({"addsub": 1, "mul1": 1, "chain2": 1}, 3000, seed=0, split="train")
    test = tasks.generate_mix({"addsub": 1, "mul1": 1, "chain2": 1}, 300, seed=1, split="test")
    val = tasks.generate_mix({"addsub": 1, "mul1": 1, "chain2": 1}, 300, seed=2, split="val")
    assert tasks.find_overlap(train, test) == [] and tasks.find_overlap(train, val) == []
    assert all(tasks.split_of(p.question) == "test" for p in test)
    tasks.check_disjoint(train, test)
    planted = test + [train[17]]
    assert tasks.find_overlap(train, planted) == [train[17].question]
    with pytest.raises(ValueError, match="test problems also appear in training"):
        tasks.check_disjoint(train, planted)
    # add1 facts are exempt (they appear as CoT columns everywhere); all 100 exist in every split
    assert len({p.question for p in tasks.generate("add1", 500, seed=0, split="test")}) == 100
    assert len(tasks.all_add1()) == 100


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="family"):
        tasks.generate("division", 3, seed=0)
    with pytest.raises(ValueError, match="split"):
        tasks.generate("addsub", 3, seed=0, split="dev")
    with pytest.raises(ValueError, match="mode"):
        tasks.generate("addsub", 1, seed=0)[0].prompt("think")
    with pytest.raises(ValueError, match="n: could not find"):
        tasks.generate("mul1", 200, seed=0, split="test", digits=1, unique=True)
    with pytest.raises(ValueError, match="weights"):
        tasks.generate_mix({}, 3, seed=0)


def test_group_ids_and_formats():
    p = tasks.generate("chain2", 1, seed=0)[0]
    assert p.group == tasks.FAMILIES.index("chain2") and p.digits == 2
    assert p.prompt("cot").endswith("= T:") and p.prompt("direct").endswith("= A:")
    assert p.completion("direct") == f"{p.answer}<eos>"
