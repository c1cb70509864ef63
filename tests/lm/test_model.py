import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.lm import LMConfig, num_params, output_log_softmax
from jaxlab.lm import apply as _apply, logprobs as _logprobs

apply = jax.jit(_apply, static_argnames=("cfg", "return_hidden", "delta_layer"))
logprobs = jax.jit(_logprobs, static_argnames=("cfg",))


def _tokens(tok, texts, **kw):
    return jnp.asarray(tok.encode_batch(texts, **kw)[0])


def test_causality_future_tokens_do_not_change_past_logits(tok, cfg, params):
    a = _tokens(tok, ["<bos>Q:47+85= T:7+5=12 A:132"])
    t = 9
    b = a.at[:, t + 1:].set(jnp.asarray(tok.encode("9" * (a.shape[1] - t - 1))))
    la, lb = apply(params, a, cfg=cfg), apply(params, b, cfg=cfg)
    np.testing.assert_array_equal(np.asarray(la[:, :t + 1]), np.asarray(lb[:, :t + 1]))
    assert np.abs(np.asarray(la[:, t + 1:] - lb[:, t + 1:])).max() > 1e-4


def test_left_padding_is_invisible(tok, cfg, params):
    text = "<bos>Q:3+4= T:"
    plain = _tokens(tok, [text])
    padded = _tokens(tok, [text, "<bos>Q:123+456= T:"], pad_side="left")
    lp, lq = apply(params, plain, cfg=cfg), apply(params, padded, cfg=cfg)
    n = plain.shape[1]
    np.testing.assert_allclose(np.asarray(lq[0, -n:]), np.asarray(lp[0]), atol=1e-6)


def test_hidden_states_shapes_and_head_identity(tok, cfg, params):
    x = _tokens(tok, ["<bos>Q:1+2= T:", "<bos>Q:7*8= A:"])
    logits, hid = apply(params, x, cfg=cfg, return_hidden=True)
    B, T = x.shape
    assert logits.shape == (B, T, cfg.vocab_size)
    assert hid.blocks.shape == (cfg.num_layers, B, T, cfg.d_model)
    assert hid.head.shape == (B, T, cfg.d_model)
    np.testing.assert_allclose(np.asarray(hid.head @ params["head"]["kernel"]), np.asarray(logits),
                               atol=1e-5)


def test_head_intervention_changes_logits_by_w_out_delta_only_at_p(tok, cfg, params):
    x = _tokens(tok, ["<bos>Q:47*36= T:47*6=282 A:", "<bos>Q:9+9= T:9+9=18 A:1"])
    B, T = x.shape
    delta = jax.random.normal(jax.random.PRNGKey(3), (B, cfg.d_model)) * 2.0
    pos = jnp.array([T - 1, 5])
    base = apply(params, x, cfg=cfg)
    for layer in (-1, cfg.num_layers):
        pert = apply(params, x, cfg=cfg, delta=delta, delta_pos=pos, delta_layer=layer)
        diff = np.asarray(pert - base)
        expect = np.asarray(delta @ params["head"]["kernel"])
        for b in range(B):
            np.testing.assert_allclose(diff[b, pos[b]], expect[b], atol=1e-5)
            others = np.delete(diff[b], int(pos[b]), axis=0)
            assert np.all(others == 0.0)


def test_block_intervention_leaves_earlier_positions_unchanged(tok, cfg, params):
    x = _tokens(tok, ["<bos>Q:47*36= T:47*6=282 A:"])
    p = 8
    delta = jnp.ones((1, cfg.d_model))
    base, hb = apply(params, x, cfg=cfg, return_hidden=True)
    pert, hp = apply(params, x, cfg=cfg, return_hidden=True, delta=delta,
                     delta_pos=jnp.array([p]), delta_layer=0)
    np.testing.assert_array_equal(np.asarray(pert[:, :p]), np.asarray(base[:, :p]))
    np.testing.assert_allclose(np.asarray(hp.blocks[0, 0, p] - hb.blocks[0, 0, p]), 1.0, atol=1e-5)
    assert np.abs(np.asarray(pert[:, p + 1:] - base[:, p + 1:])).min(axis=-1).max() > 0  # propagates


def test_logprobs_teacher_forced(tok, cfg, params):
    x = _tokens(tok, ["<bos>Q:1+2= T:1+2=3 A:3<eos>", "<bos>Q:5+5= A:10<eos>"])
    mask = x != tok.pad_id
    mask = mask.at[:, :6].set(False)
    lp = np.asarray(logprobs(params, x, mask, cfg=cfg))
    logits = np.asarray(apply(params, x, cfg=cfg), np.float64)
    logits[..., [tok.pad_id, tok.bos_id]] = -np.inf                     # never generated
    ref = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    xn, mn = np.asarray(x), np.asarray(mask)
    for b in range(2):
        for t in range(1, x.shape[1]):
            want = ref[b, t - 1, xn[b, t]] if mn[b, t] else 0.0
            assert abs(lp[b, t] - want) < 1e-5
    assert np.all(lp[~mn] == 0)
    g = jax.jit(jax.grad(lambda p: _logprobs(p, x, mask, cfg=cfg).sum()))(params)  # no NaN at pads
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree_util.tree_leaves(g))
    lsm = output_log_softmax(jnp.zeros((3, cfg.vocab_size)), cfg)
    assert np.allclose(np.exp(np.asarray(lsm)).sum(-1), 1.0) and float(jnp.exp(lsm[0, 0])) < 1e-30


def test_parameter_count_of_the_papers_sizes(tok):
    from jaxlab.lm import init
    small = LMConfig(vocab_size=tok.vocab_size, d_model=128, num_layers=4, num_heads=4, d_ff=512)
    big = LMConfig(vocab_size=tok.vocab_size, d_model=192, num_layers=6, num_heads=6, d_ff=768)
    n_small = num_params(jax.eval_shape(lambda: init(jax.random.PRNGKey(0), small)))
    n_big = num_params(jax.eval_shape(lambda: init(jax.random.PRNGKey(0), big)))
    assert 0.7e6 < n_small < 0.9e6 and 2.5e6 < n_big < 3.0e6


def test_bad_inputs_raise(tok, cfg, params):
    x = _tokens(tok, ["<bos>Q:1+2="])
    with pytest.raises(ValueError, match="tokens_bt"):
        apply(params, x[0], cfg=cfg)
    with pytest.raises(ValueError, match="delta_pos"):
        apply(params, x, cfg=cfg, delta=jnp.zeros((1, cfg.d_model)))
    with pytest.raises(ValueError, match="delta"):
        apply(params, x, cfg=cfg, delta=jnp.zeros((1, 3)), delta_pos=jnp.zeros(1, int))
    with pytest.raises(ValueError, match="mask_bt"):
        logprobs(params, x, x[:, :2], cfg=cfg)
    with pytest.raises(ValueError, match="num_heads"):
        LMConfig(d_model=30, num_heads=4)
