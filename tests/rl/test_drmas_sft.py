"""SFT of the tiny LM on arbitrary (prompt, completion) rows with the data recipe in the model-cache key
(issue 14, substrate addition to jaxlab.lm used by the Dr. MAS warm start)."""

import os

import jax
import numpy as np
import pytest

from experiments.configs.lm_sft import get_config
from jaxlab.lm import CharTokenizer, cache, init, rows_arrays
from jaxlab.lm.train import model_config
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
    stock = cache.model_key(c, 0)
    assert cache.model_key(c, 0, recipe=None) == stock
    assert cache.model_key(c, 0, recipe={"name": "roles"}) != stock
    assert cache.model_key(c, 0, recipe={"name": "roles"}) != cache.model_key(c, 0, recipe={"name": "x"})
    rows = orc.sft_rows([P1] * 4, seed=0)
    assert cache.rows_digest(rows) != cache.rows_digest(rows[::-1])
    with pytest.raises(ValueError, match="recipe"):
        cache.load_or_train(c, 0, root=str(tmp_path), rows=rows)
    with pytest.raises(ValueError, match="init_key"):
        cache.load_or_train(c, 0, root=str(tmp_path), rows=rows, recipe={"name": "roles"},
                            init_params={})


def test_rows_sft_warm_starts_and_is_cached_under_its_own_key(tmp_path):
    c = tiny_config()
    base = init(jax.random.PRNGKey(3), model_config(c))
    rows = orc.sft_rows([P1] * 4, seed=0)
    kw = dict(root=str(tmp_path), rows=rows, recipe={"name": "roles"}, init_params=base,
              init_key="stock")
    p1, info1 = cache.load_or_train(c, 0, **kw)
    assert not info1["cached"] and info1["key"] != cache.model_key(c, 0)
    assert info1["recipe"]["rows_digest"] == cache.rows_digest(rows)
    # lr = 0: the warm start is returned unchanged (the rows' SFT starts from init_params)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(base)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p2, info2 = cache.load_or_train(c, 0, **kw)
    assert info2["cached"] and info2["key"] == info1["key"]
    assert not os.path.exists(os.path.join(str(tmp_path), cache.model_key(c, 0)))
    # other rows -> another key (never the cached entry of these rows)
    assert cache.load(c, 0, root=str(tmp_path), rows=rows[:-1], recipe={"name": "roles"},
                      init_key="stock") is None
