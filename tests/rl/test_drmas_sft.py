"""SFT of the tiny LM on arbitrary (prompt, completion) rows with the data recipe in the model-cache key
(issue 14, substrate addition to jaxlab.lm used by the Dr. MAS warm start)."""

import os

import jax
import numpy as np
import pytest

from experiments.configs.lm_sft import get_config
from jaxlab.lm import CharTokenizer, cache, init, rows_arrays
from jaxlab.lm.train import model_config, sft_spec
from jaxlab.rl import orchestra as orc
from jaxlab.lm import Problem

TOK = CharTokenizer()
P1 = Problem("47+85", "7+5=12,4+8+1=13;47+85=132", 132, "addsub", 1, 2)


def tiny_config():
    c = get_config("quick")
    c.model.update(d_model=16, num_layers=1, num_heads=2, d_ff=32, max_len=64)
    c.data.seq_len = 64
    c.optim.update(steps=10, batch_size=8, lr=0.0, warmup=1, weight_decay=0.0)
    c.train.update(chunk=10, eval_every=100_000)
    return c


def test_rows_arrays_mask_exactly_the_completion():
    rows = orc.sft_rows([P1, P1], seed=0)
    toks, mask = rows_arrays(rows, TOK, seq_len=64)
    for (pr, co), t, m in zip(rows, toks, mask):
        assert TOK.decode(t[m]) == co and TOK.decode(t[~m]) == pr
    with pytest.raises(ValueError, match="seq_len"):
        rows_arrays(rows, TOK, seq_len=20)
    with pytest.raises(ValueError, match="rows"):
        rows_arrays([], TOK, seq_len=64)


def test_recipe_enters_the_cache_key_and_the_stock_key_is_unchanged(tmp_path):
    c = tiny_config()
    stock = cache.model_key(sft_spec(c), 0)
    assert cache.model_key(sft_spec(c), 0, recipe=None) == stock
    assert cache.model_key(sft_spec(c), 0, recipe={"name": "roles"}) != stock
    assert cache.model_key(sft_spec(c), 0, recipe={"name": "roles"}) != cache.model_key(sft_spec(c), 0, recipe={"name": "x"})
    rows = orc.sft_rows([P1] * 4, seed=0)
    assert cache.rows_digest(rows) != cache.rows_digest(rows[::-1])
    with pytest.raises(ValueError, match="recipe"):
        cache.load_or_train(sft_spec(c), 0, root=str(tmp_path), rows=rows)
    with pytest.raises(ValueError, match="init_key"):
        cache.load_or_train(sft_spec(c), 0, root=str(tmp_path), rows=rows, recipe={"name": "roles"},
                            init_params={})


def test_rows_sft_warm_starts_and_is_cached_under_its_own_key(tmp_path):
    c = tiny_config()
    base = init(jax.random.PRNGKey(3), model_config(c))
    rows = orc.sft_rows([P1] * 4, seed=0)
    kw = dict(root=str(tmp_path), rows=rows, recipe={"name": "roles"}, init_params=base,
              init_key="stock")
    p1, info1 = cache.load_or_train(sft_spec(c), 0, **kw)
    assert not info1["cached"] and info1["key"] != cache.model_key(sft_spec(c), 0)
    assert info1["recipe"]["rows_digest"] == cache.rows_digest(rows)
    # lr = 0: the warm start is returned unchanged (the rows' SFT starts from init_params)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(base)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p2, info2 = cache.load_or_train(sft_spec(c), 0, **kw)
    assert info2["cached"] and info2["key"] == info1["key"]
    assert not os.path.exists(os.path.join(str(tmp_path), cache.model_key(sft_spec(c), 0)))
    # other rows -> another key (never the cached entry of these rows)
    assert cache.load(sft_spec(c), 0, root=str(tmp_path), rows=rows[:-1], recipe={"name": "roles"},
                      init_key="stock") is None


def test_role_sft_knobs_enter_the_recipe_and_the_sft_config():
    """Every role-SFT knob changes the model-cache key of the warm start (a changed recipe never reuses a
    cached model); the verdict weight reaches the SFT as data.token_weights."""
    from experiments import drmas as ex
    from experiments.configs.drmas import get_config
    c = get_config("quick")
    c.role_sft.n_problems = 20

    def key(cfg):
        return cache.model_key(sft_spec(ex.role_sft_config(cfg)), 0,
                               recipe={**ex.role_recipe(cfg),
                                       "rows_digest": cache.rows_digest(ex.role_rows(cfg))})

    keys = {key(c)}
    for knob, value in [("verdict_weight", c.role_sft.verdict_weight + 5.0),
                        ("compare_width", c.role_sft.compare_width + 1),
                        ("verdict_rows", c.role_sft.verdict_rows + 5)]:
        d = c.copy_and_resolve_references()
        d.role_sft[knob] = value
        assert ex.role_recipe(d)[knob] == value
        keys.add(key(d))
    assert len(keys) == 4
    d = c.copy_and_resolve_references()
    d.role_sft.verdict_weight = 7.0
    d.lock()                           # as config_flags hands it to the experiment
    assert dict(ex.role_sft_config(d).data.token_weights) == {"<yes>": 7.0, "<no>": 7.0}
    d.role_sft.verdict_weight = 1.0
    assert "token_weights" not in ex.role_sft_config(d).data
    d.role_sft.verdict_rows = 5
    assert len(ex.role_rows(d)) == 3 * 20 + 5


def test_default_role_rows_fit_the_model_and_the_rl_sampling_budget():
    """With the default recipe every role row fits seq_len, and a checker's whole gold output (with the
    compare section) fits rl.max_new_tokens, so a verdict is never cut off in the RL turns."""
    from experiments import drmas as ex
    from experiments.configs.drmas import get_config
    c = get_config("full")
    rows = ex.role_rows(c)
    assert max(len(TOK.encode(a + b)) for a, b in rows) <= c.role_sft.seq_len
    longest = max(len(TOK.encode(b)) for a, b in rows if a.startswith("<bos><C>") and a.endswith("T:"))
    assert longest <= c.rl.max_new_tokens
    train_p, eval_p = ex.problems(c)
    cfg = model_config(ex.role_sft_config(c), TOK)
    assert orc.max_prompt_len(train_p + eval_p, TOK) + c.rl.max_new_tokens <= cfg.max_len
