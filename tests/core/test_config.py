import ml_collections
import pytest

from jaxlab.core import config as config_lib

TOY = "tests/core/toy_config.py"


def test_quick_and_full_sizes_differ_and_configs_are_locked():
    quick = config_lib.load_config(TOY, "quick")
    full = config_lib.load_config(TOY, "full")
    assert quick.steps == 40 and full.steps == 400
    with pytest.raises(AttributeError):
        quick.new_key = 1  # locked: no silent new keys


def test_overrides_are_typed():
    c = config_lib.load_config(TOY, "quick", {"lr": "0.5", "steps": "7", "seeds": "(3, 4)"})
    assert c.lr == 0.5 and isinstance(c.lr, float)
    assert c.steps == 7 and isinstance(c.steps, int)
    assert tuple(c.seeds) == (3, 4)


@pytest.mark.parametrize("overrides, needle", [
    ({"nope": 1}, "'nope'"),
    ({"steps": "abc"}, "'steps'"),
    ({"steps": 1.5}, "'steps'"),
    ({"lr": "fast"}, "'lr'"),
])
def test_bad_overrides_name_the_key(overrides, needle):
    with pytest.raises(config_lib.ConfigError, match=needle):
        config_lib.load_config(TOY, "quick", overrides)


def test_bad_size_and_missing_file():
    with pytest.raises(config_lib.ConfigError, match="size"):
        config_lib.load_config(TOY, "huge")
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        config_lib.load_config("tests/core/no_such_config.py", "quick")


def test_config_hash_is_stable_and_sensitive():
    a = config_lib.load_config(TOY, "quick")
    b = config_lib.load_config(TOY, "quick")
    c = config_lib.load_config(TOY, "quick", {"lr": 0.06})
    assert config_lib.config_hash(a) == config_lib.config_hash(b)
    assert config_lib.config_hash(a) != config_lib.config_hash(c)
    assert len(config_lib.config_hash(a)) == 12
    assert config_lib.config_hash(ml_collections.ConfigDict({"x": 1})) == config_lib.config_hash({"x": 1})


@pytest.mark.parametrize("form", ["0,1,2", "(0, 1, 2)", "[0,1,2]", " 0, 1 ,2 "])
def test_list_overrides_in_every_form(form):
    assert list(config_lib.load_config(TOY, "quick", {"seeds": form}).seeds) == [0, 1, 2]


def test_single_element_and_float_lists():
    assert list(config_lib.load_config(TOY, "quick", {"seeds": "(5,)"}).seeds) == [5]
    assert list(config_lib.load_config(TOY, "quick", {"seeds": "7"}).seeds) == [7]


@pytest.mark.parametrize("path, overrides, needle", [
    (TOY, {"batch": "0"}, "config key 'batch': expected a count >= 1"),                      # was a NaN loss
    ("experiments/configs/picce.py", {"epochs.gmm": "0"}, "config key 'epochs.gmm': expected a count >= 1"),
    ("experiments/configs/kpo.py", {"rl.n_minibatches": "0"}, "config key 'rl.n_minibatches'"),   # placeholder
    ("experiments/configs/kpo.py", {"rl.lr": "fast"}, "config key 'rl.lr': expected float"),
])
def test_issue20_counts_in_sections_and_placeholders_are_validated(path, overrides, needle):
    """Issue 20 item 4: `batch`, a dict of counts (epochs.gmm, an IndexError traceback before) and unset typed
    placeholders (kpo's per-condition rl keys) are range- and type-checked where the config is read."""
    with pytest.raises(config_lib.ConfigError, match=needle.replace("(", r"\(")):
        config_lib.load_config(path, "quick", overrides)
    ok = config_lib.load_config("experiments/configs/kpo.py", "quick", {"rl.lr": "2e-4", "rl.noise": "none"})
    assert ok.rl.lr == 2e-4 and isinstance(ok.rl.lr, float) and ok.rl.noise == "none"
