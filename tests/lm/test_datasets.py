from jaxlab.core.datasets import prepare, to_numpy
from jaxlab.lm import tasks
from jaxlab.lm.datasets import ArithmeticCoT


def test_tfds_builder_matches_generator(tmp_path, monkeypatch):
    monkeypatch.setattr("jaxlab.lm.datasets._SIZES", {"train": 40, "validation": 10, "test": 10})
    splits = prepare(ArithmeticCoT, data_dir=str(tmp_path), config="mul1")
    rows = to_numpy(splits["test"])
    want = tasks.generate("mul1", 10, seed=0, split="test", unique=True)
    assert [r.decode() if isinstance(r, bytes) else r for r in rows["question"]] == \
        [p.question for p in want]
    assert rows["answer"].tolist() == [p.answer for p in want]
    train = to_numpy(splits["train"])
    assert not set(map(str, train["question"])) & set(map(str, rows["question"]))
