import json

import jax
import numpy as np
import pytest

from experiments.configs.lm_sft import get_config
from jaxlab.core.testing import run_with_fake_devices
from jaxlab.lm import all_add1, apply, generate_answers, make_train, sft_arrays, sft_loss
from jaxlab.lm import cache


def tiny_config(**optim):
    c = get_config("quick")
    c.model.update(d_model=64, num_layers=2, num_heads=4, d_ff=128, max_len=32)
    c.data.weights = type(c.data.weights)(dict(add1=1.0))
    c.data.digits = type(c.data.digits)(dict(add1=1))
    c.data.update(n_train=2000, seq_len=24, direct_frac=0.0)
    c.optim.update(steps=400, batch_size=64, lr=3e-3, warmup=30)
    c.optim.update(**optim)
    c.train.update(chunk=100, eval_every=100_000)
    return c


def test_sft_arrays_mask_exactly_the_completion(tok):
    probs = all_add1()[:5]
    toks, mask = sft_arrays(probs, tok, seq_len=24, direct_frac=0.0)
    for p, t, m in zip(probs, toks, mask):
        assert tok.decode(t[m]) == p.completion("cot")
        assert tok.decode(t[~m]) == "<bos>" + p.prompt("cot")
    with pytest.raises(ValueError, match="seq_len"):
        sft_arrays(probs, tok, seq_len=8)
    _, md = sft_arrays(probs, tok, seq_len=24, direct_frac=1.0)
    assert (md.sum(1) <= 3).all()


def test_sft_loss_is_token_mean_nll(tok, cfg, params):
    toks, mask = sft_arrays(all_add1()[:4], tok, seq_len=24)
    loss = float(sft_loss(params, toks, mask, cfg=cfg))
    logits = np.asarray(apply(params, toks, cfg=cfg), np.float64)[:, :-1]
    logits[..., :2] = -np.inf
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = lse - np.take_along_axis(logits, toks[:, 1:, None], -1)[..., 0]
    assert abs(loss - nll[mask[:, 1:]].mean()) < 1e-5


def test_learns_one_digit_addition_with_cot():
    """Learning check: >= 90% greedy CoT accuracy on the 100 one-digit facts (chance ~ 5%)."""
    c = tiny_config()
    train = make_train(c)
    params, hist = train(jax.random.PRNGKey(0))
    assert hist["loss"][-1] < hist["loss"][0] / 3
    r = generate_answers(params, all_add1(), cfg=train.cfg, tok=train.tokenizer, mode="cot",
                         max_new_tokens=12, batch_size=100)
    assert r["correct"].mean() >= 0.9, r["correct"].mean()


def test_model_cache_round_trip(tmp_path):
    c = tiny_config(steps=20)
    c.model.update(d_model=16, d_ff=32)
    assert cache.model_key(c, 0) != cache.model_key(c, 1)
    c2 = tiny_config(steps=21)
    assert cache.model_key(c, 0) != cache.model_key(c2, 0)
    c3 = tiny_config(steps=20)
    c3.model.update(d_model=16, d_ff=32)
    c3.train.n_devices = 1                              # device count does not change the key
    assert cache.model_key(c, 0) == cache.model_key(c3, 0)
    p1, info1 = cache.load_or_train(c, 0, root=str(tmp_path))
    p2, info2 = cache.load_or_train(c, 0, root=str(tmp_path))
    assert not info1["cached"] and info2["cached"]
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sft_on_8_fake_devices_matches_one_device():
    code = r"""
import json, jax, numpy as np
from tests.lm.test_train import tiny_config
from jaxlab.lm import make_train
assert jax.device_count() == 8
out = {}
for n in (8, 1):
    c = tiny_config(steps=6)
    c.model.update(d_model=16, d_ff=32, num_layers=1)
    c.optim.batch_size = 16
    c.train.update(chunk=3, n_devices=n)
    p, h = make_train(c)(jax.random.PRNGKey(0))
    out[n] = (p, h["loss"])
diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
           zip(jax.tree_util.tree_leaves(out[8][0]), jax.tree_util.tree_leaves(out[1][0])))
print(json.dumps({"diff": diff, "loss8": out[8][1], "loss1": out[1][1]}))
"""
    proc = run_with_fake_devices(code, n=8, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["diff"] < 1e-5, res
    np.testing.assert_allclose(res["loss8"], res["loss1"], rtol=1e-5)
