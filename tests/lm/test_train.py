import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.lm_sft import get_config
from jaxlab.core.testing import run_with_fake_devices
from jaxlab.lm import (all_add1, apply, generate_answers, init, make_train, rows_arrays, sft_arrays, sft_loss,
                       sft_spec)
from jaxlab.lm import cache
from jaxlab.lm.train import token_weights_array


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


def _nll(params, toks, cfg):
    logits = np.asarray(apply(params, toks, cfg=cfg), np.float64)[:, :-1]
    logits[..., :2] = -np.inf
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    return lse - np.take_along_axis(logits, toks[:, 1:, None], -1)[..., 0]


def test_sft_loss_weights_give_the_weighted_token_mean(tok, cfg, params):
    """Weight w on one target token = that token counted w times: sum(w * nll) / sum(w) over the mask."""
    toks, mask = sft_arrays(all_add1()[:4], tok, seq_len=24)
    nll = _nll(params, toks, cfg)
    w = np.ones(toks.shape, np.float32)
    i = np.nonzero(mask[1])[0][2]
    w[1, i] = 7.0                      # one token x7
    w[2, np.nonzero(mask[2])[0][0]] = 0.0
    w[0, 0] = 100.0                    # off the mask: ignored
    m = mask[:, 1:]
    want = (w[:, 1:] * nll)[m].sum() / w[:, 1:][m].sum()
    got = float(sft_loss(params, toks, mask, cfg=cfg, weights_bt=w))
    assert abs(got - want) < 1e-5
    assert abs(got - nll[m].mean()) > 1e-3          # the weights are not ignored
    plain = sft_loss(params, toks, mask, cfg=cfg)
    ones = sft_loss(params, toks, mask, cfg=cfg, weights_bt=np.ones(toks.shape, np.float32))
    assert float(ones) == float(plain)              # all-ones weights: the plain token mean


def test_token_weights_array_weights_only_the_named_target_tokens(tok):
    rows = [("<bos><no>Q:1+2= T:", "1+2=3 <yes><eos>"), ("<bos>Q:1+1= T:", "1+1=2 <no><eos>")]
    toks, mask = rows_arrays(rows, tok, seq_len=24)
    w = token_weights_array(toks, mask, {"<yes>": 5.0, "<no>": 3.0}, tok)
    assert w.dtype == np.float32 and w.shape == toks.shape
    assert w[0, np.nonzero(toks[0] == tok.yes_id)[0]].tolist() == [5.0]
    assert w[0, np.nonzero(toks[0] == tok.no_id)[0]].tolist() == [1.0]      # in the prompt: not a target
    assert w[1, np.nonzero(toks[1] == tok.no_id)[0]].tolist() == [3.0]
    assert (w == 1).sum() == w.size - 2
    assert token_weights_array(toks, mask, None, tok) is None
    assert token_weights_array(toks, mask, {}, tok) is None
    with pytest.raises(ValueError, match="token_weights"):
        token_weights_array(toks, mask, {"<yes>": -1.0}, tok)
    with pytest.raises(ValueError, match="token"):
        token_weights_array(toks, mask, {"<maybe>": 2.0}, tok)


def test_token_weights_knob_changes_training_and_the_cache_key():
    """config.data.token_weights reaches the SGD step (other params) and the model-cache key; absent
    or empty it trains bitwise as without the knob and keeps the stock key."""
    c = tiny_config(steps=20)
    c.model.update(d_model=16, d_ff=32, num_layers=1, max_len=32)
    c.train.update(chunk=10)
    rows = [(f"<bos>Q:{a}+{b}= T:", f"{a}+{b}={a + b} " + ("<yes>" if (a + b) % 2 else "<no>") + "<eos>")
            for a in range(10) for b in range(10)]

    def run(cfg):
        p, _ = make_train(sft_spec(cfg), rows=rows, progress=False)(jax.random.PRNGKey(0))
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(p)]

    stock_key = cache.model_key(sft_spec(c), 0)
    plain = run(c)
    c_empty = c.copy_and_resolve_references()
    c_empty.data.token_weights = {}
    assert all(np.array_equal(a, b) for a, b in zip(plain, run(c_empty)))
    c_w = c.copy_and_resolve_references()
    c_w.data.token_weights = {"<yes>": 10.0, "<no>": 10.0}
    assert make_train(sft_spec(c_w), rows=rows, progress=False).weights is not None
    assert not all(np.array_equal(a, b) for a, b in zip(plain, run(c_w)))
    assert cache.model_key(sft_spec(c_w), 0) != stock_key
    c_w.data.token_weights = {"<yes>": 20.0, "<no>": 10.0}
    assert cache.model_key(sft_spec(c_w), 0) not in (stock_key, cache.model_key(sft_spec(c_empty), 0))


def test_learns_one_digit_addition_with_cot():
    """Learning check: >= 90% greedy CoT accuracy on the 100 one-digit facts (chance ~ 5%)."""
    c = tiny_config()
    train = make_train(sft_spec(c))
    params, hist = train(jax.random.PRNGKey(0))
    assert hist["loss"][-1] < hist["loss"][0] / 3
    r = generate_answers(params, all_add1(), cfg=train.cfg, tok=train.tokenizer, mode="cot",
                         max_new_tokens=12, batch_size=100)
    assert r["correct"].mean() >= 0.9, r["correct"].mean()


def test_model_cache_round_trip(tmp_path):
    c = tiny_config(steps=20)
    c.model.update(d_model=16, d_ff=32)
    assert cache.model_key(sft_spec(c), 0) != cache.model_key(sft_spec(c), 1)
    c2 = tiny_config(steps=21)
    assert cache.model_key(sft_spec(c), 0) != cache.model_key(sft_spec(c2), 0)
    c3 = tiny_config(steps=20)
    c3.model.update(d_model=16, d_ff=32)
    c3.train.n_devices = 1                              # device count does not change the key
    assert cache.model_key(sft_spec(c), 0) == cache.model_key(sft_spec(c3), 0)
    p1, info1 = cache.load_or_train(sft_spec(c), 0, root=str(tmp_path))
    p2, info2 = cache.load_or_train(sft_spec(c), 0, root=str(tmp_path))
    assert not info1["cached"] and info2["cached"]
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sft_on_8_fake_devices_matches_one_device():
    code = r"""
import json, jax, numpy as np
from tests.lm.test_train import tiny_config
from jaxlab.lm import make_train, sft_spec
assert jax.device_count() == 8
out = {}
for n in (8, 1):
    c = tiny_config(steps=6)
    c.model.update(d_model=16, d_ff=32, num_layers=1)
    c.optim.batch_size = 16
    c.train.update(chunk=3, n_devices=n)
    p, h = make_train(sft_spec(c))(jax.random.PRNGKey(0))
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


def _nano_config(**optim):
    c = tiny_config(steps=20)
    c.model.update(d_model=16, num_layers=1, num_heads=2, d_ff=32)
    c.data.n_train = 200
    c.optim.update(batch_size=16, **optim)
    c.train.chunk = 5
    return c


@pytest.mark.parametrize("lr", [float("nan"), 1e30])
def test_non_finite_training_stops_at_once_and_caches_nothing(tmp_path, lr):
    """Issue 20 item 5: a NaN / diverging learning rate stops at the first bad step with a NonFiniteError
    naming the step and the quantity; no params or info.json reach the model cache (it used to cache a
    NaN model)."""
    from jaxlab.core.loop import NonFiniteError
    c = _nano_config(lr=lr, warmup=1)
    with pytest.raises(NonFiniteError, match=r"non-finite .* at step \d+"):
        cache.load_or_train(sft_spec(c), 0, root=str(tmp_path), progress=False)
    folder = tmp_path / cache.model_key(sft_spec(c), 0)
    assert not (folder / "info.json").exists() and not (folder / "params").exists()
    assert cache.load(sft_spec(c), 0, root=str(tmp_path)) is None


def test_cached_nan_model_is_refused(tmp_path):
    """An entry cached before the check existed (NaN params) is never handed out."""
    from jaxlab.core.checkpoint import Checkpointer
    from jaxlab.core.metrics import write_json_atomic
    from jaxlab.lm import init
    from jaxlab.lm.train import model_config
    c = _nano_config()
    params = init(jax.random.PRNGKey(0), model_config(c))
    folder = tmp_path / cache.model_key(sft_spec(c), 1)
    ckpt = Checkpointer(str(folder / "params"), save_every=1, keep=1)
    ckpt.maybe_save(1, jax.tree_util.tree_map(lambda x: x * np.nan, params), force=True)
    ckpt.close()
    write_json_atomic(folder / "info.json", {"key": folder.name})
    with pytest.raises(ValueError, match="non-finite parameters"):
        cache.load(sft_spec(c), 1, root=str(tmp_path))


def test_history_survives_a_resume_whole(tmp_path):
    """Issue 20 item 8: a run interrupted after some chunks and resumed returns the whole history (every
    chunk's step and loss, the first ones as the interrupted run logged them), not only the resumed chunks
    (it used to return the resumed chunks only)."""
    c = _nano_config()
    logged = []

    def stop_after_two_chunks(step, **s):
        logged.append((step, s["loss"]))
        if len(logged) == 2:
            raise KeyboardInterrupt          # before chunk 2 is checkpointed: resumes from step 5
    with pytest.raises(KeyboardInterrupt):
        make_train(sft_spec(c), ckpt_dir=str(tmp_path / "ckpt"), log_fn=stop_after_two_chunks,
                   progress=False)(jax.random.PRNGKey(0))
    _, hist = make_train(sft_spec(c), ckpt_dir=str(tmp_path / "ckpt"), progress=False)(jax.random.PRNGKey(0))
    assert hist["step"] == [5, 10, 15, 20] and hist["steps_done"] == 20
    np.testing.assert_allclose(hist["loss"][:2], [x for _, x in logged], rtol=1e-5)
    assert all(np.isfinite(hist["loss"]))


def test_sft_prints_progress_with_rate_and_eta():
    import io
    import contextlib
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        make_train(sft_spec(_nano_config()), progress="sft test")(jax.random.PRNGKey(0))
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("sft test:")]
    assert lines and "it/s" in lines[-1] and "ETA" in lines[-1] and "20/20" in lines[-1]


def test_lm_sft_cli_with_diverging_lr_is_one_error_line(tmp_path):
    """`experiments/lm_sft.py --config.optim.lr=1e30`: exit 2, the last stderr line is one `error:` naming the
    step and the quantity, no traceback, and nothing in the model cache."""
    import os
    import subprocess
    import sys
    args = ["--config.optim.lr=1e30", "--config.optim.steps=20", "--config.optim.warmup=1",
            "--config.optim.batch_size=16", "--config.train.chunk=5", "--config.train.eval_every=20",
            "--config.data.n_train=200", "--config.model.d_model=16", "--config.model.num_layers=1",
            "--config.model.d_ff=32", "--config.model.num_heads=2", "--config.eval.n_test=4"]
    env = {**os.environ, "JAXLAB_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "experiments/lm_sft.py", *args, f"--workdir={tmp_path / 'w'}"],
                          capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("error: NonFiniteError") and "at step" in lines[-1], lines[-1]
    assert sum(ln.startswith("error:") for ln in lines) == 1
    models = tmp_path / "cache" / "models"
    assert not any(p.name == "info.json" for p in models.rglob("*")) if models.exists() else True
    assert not (tmp_path / "w" / "summary.json").exists()


def test_sft_trainer_on_loop_run_is_make_train():
    """The typed front door: `sft_hparams` converts the config once, and `loop.run(sft_trainer(...),
    data=...)` gives bit for bit the parameters of `make_train(sft_spec(config))` (same warm start, same key).
    The library takes the typed spec only, and the spec keeps the model cache's keys of the configs."""
    from jaxlab.core import loop
    from jaxlab.lm import OptimHParams, sft_hparams, sft_trainer
    from jaxlab.lm.train import model_config
    c = _nano_config(lr=3e-3)
    hp = sft_hparams(c)
    assert hp.optim == OptimHParams(**{k: c.optim[k] for k in OptimHParams._fields})
    assert (hp.chunk, hp.eval_every, hp.target_acc) == (c.train.chunk, c.train.eval_every, c.train.target_acc)
    cfg = model_config(c)
    p0 = init(jax.random.PRNGKey(5), cfg)
    with pytest.raises(TypeError, match="spec: expected an SFTSpec"):
        make_train(c)
    with pytest.raises(TypeError, match="spec: expected an SFTSpec"):
        cache.model_key(c, 0)
    from jaxlab.core.config import config_hash, load_config
    for size in ("quick", "full"):     # the key = the hash of the sections, as before the typed spec
        lc = load_config("experiments/configs/lm_sft.py", size)
        d = {k: lc[k].to_dict() for k in ("model", "data", "optim")}
        d["train"] = {k: lc.train[k] for k in ("target_acc", "target_family", "target_mode", "eval_n", "eval_every")}
        assert cache.model_key(sft_spec(lc), 3) == f"lm_{config_hash(d)}_s3"
    p_make, hist = make_train(sft_spec(c), init_params=p0, progress=False)(jax.random.PRNGKey(1))
    train = make_train(sft_spec(c), progress=False)
    toks, mask = train.data
    state, h = loop.run(sft_trainer(cfg, hp, init_params=p0), jax.random.PRNGKey(1), steps=hp.optim.steps,
                        chunk=hp.chunk, data=(jnp.asarray(toks), jnp.asarray(mask), None), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(p_make), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(state.step) == hp.optim.steps and hist["steps_done"] == hp.optim.steps
    np.testing.assert_allclose(hist["loss"][-1], np.mean(h["loss"][-hp.chunk:]), rtol=1e-6)
    assert not np.array_equal(np.asarray(jax.tree_util.tree_leaves(p0)[0]),
                              np.asarray(jax.tree_util.tree_leaves(state.params)[0]))   # it trained
