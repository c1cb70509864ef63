import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.lm import LMConfig, apply as _apply, logprobs as _logprobs, sample, sequences

apply = jax.jit(_apply, static_argnames=("cfg", "return_hidden", "delta_layer"))
logprobs = jax.jit(_logprobs, static_argnames=("cfg",))

PROMPTS = ["<bos>Q:1+2= T:", "<bos>Q:47*36= T:", "<bos>Q:(12+5)*3-7= A:"]   # different lengths


@pytest.fixture(scope="module")
def prompts(tok):
    return jnp.asarray(tok.encode_batch(PROMPTS, pad_side="left")[0])


@pytest.mark.parametrize("greedy", [True, False])
def test_cache_matches_full_recompute_and_teacher_forcing(cfg, sharp_params, prompts, greedy):
    """Tokens identical; logits agree to atol 1e-4 (logits here are O(10); float32 has ~1e-6
    relative rounding and the two paths sum attention terms in different orders/lengths)."""
    kw = dict(cfg=cfg, max_new_tokens=24, num_samples=2, greedy=greedy, temperature=1.0,
              return_logits=True)
    key = jax.random.PRNGKey(7)
    c = sample(sharp_params, key, prompts, **kw)
    f = sample(sharp_params, key, prompts, use_cache=False, **kw)
    np.testing.assert_array_equal(np.asarray(c.tokens), np.asarray(f.tokens))
    lc, lf = np.asarray(c.logits), np.asarray(f.logits)
    assert np.abs(lc).max() > 5.0                       # the tolerance is tested at scale ~10
    np.testing.assert_allclose(lc, lf, atol=1e-4, rtol=0)
    # teacher-forced logits of the final sequences at the positions that produced each token
    seq, mask = sequences(prompts, c)
    tf = np.asarray(apply(sharp_params, seq, cfg=cfg))
    B, G, N = c.tokens.shape
    P = prompts.shape[1]
    tf_pred = tf[:, P - 1:P - 1 + N].reshape(B, G, N, -1)
    m = np.asarray(c.mask)
    np.testing.assert_allclose(lc[m], tf_pred[m], atol=1e-4, rtol=0)


def test_sampler_logprobs_equal_teacher_forced_and_mask_after_eos(cfg, params, prompts, tok):
    out = sample(params, jax.random.PRNGKey(1), prompts, cfg=cfg, max_new_tokens=40,
                 num_samples=8, temperature=1.0)
    toks, mask, lps = map(np.asarray, (out.tokens, out.mask, out.logprobs))
    assert np.asarray(out.finished).any() and not np.asarray(out.finished).all()
    # mask ends right after the first EOS; PAD and zero log-prob afterwards
    for b in range(toks.shape[0]):
        for g in range(toks.shape[1]):
            eos = np.flatnonzero(toks[b, g] == tok.eos_id)
            end = eos[0] + 1 if eos.size else toks.shape[2]
            assert mask[b, g, :end].all() and not mask[b, g, end:].any()
            assert (toks[b, g, end:] == tok.pad_id).all() and (lps[b, g, end:] == 0).all()
            assert out.lengths[b, g] == end
    assert not np.isin(toks[mask], [tok.pad_id, tok.bos_id]).any()
    seq, smask = sequences(prompts, out)
    tf = np.asarray(logprobs(params, seq, smask, cfg=cfg))[:, prompts.shape[1]:]
    np.testing.assert_allclose(tf, lps.reshape(tf.shape), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.model_logprobs), lps, atol=1e-6)  # T=1, top_p=1


def test_temperature_top_p_and_groups(cfg, sharp_params, prompts):
    g = sample(sharp_params, jax.random.PRNGKey(0), prompts, cfg=cfg, max_new_tokens=12,
               num_samples=3, greedy=True, return_logits=True)
    assert (np.asarray(g.tokens) == np.asarray(g.tokens)[:, :1]).all()    # greedy: G copies
    assert (np.asarray(g.logprobs) == 0).all() and (np.asarray(g.model_logprobs) <= 0).all()
    tiny_p = sample(sharp_params, jax.random.PRNGKey(5), prompts, cfg=cfg, max_new_tokens=12,
                    num_samples=3, top_p=1e-6)
    np.testing.assert_array_equal(np.asarray(tiny_p.tokens), np.asarray(g.tokens))
    assert np.allclose(np.asarray(tiny_p.logprobs), 0.0, atol=1e-6)      # nucleus of one token
    t = 2.5
    s = sample(sharp_params, jax.random.PRNGKey(9), prompts, cfg=cfg, max_new_tokens=12,
               num_samples=4, temperature=t, return_logits=True)
    lg = np.asarray(s.logits, np.float64) / t
    lg[..., :2] = -np.inf
    lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
    want = np.take_along_axis(lg, np.asarray(s.tokens)[..., None], -1)[..., 0] - lse
    m = np.asarray(s.mask)
    np.testing.assert_allclose(np.asarray(s.logprobs)[m], want[m], atol=1e-4)
    assert len({tuple(r) for r in np.asarray(s.tokens).reshape(-1, 12)}) > 3  # samples differ


def test_head_delta_forces_first_token_then_continues_from_clean_cache(cfg, sharp_params, prompts):
    B = prompts.shape[0]
    target = 20                                                      # some plain character
    w = sharp_params["head"]["kernel"]
    delta = jnp.tile(50.0 * w[:, target] / jnp.sum(w[:, target] ** 2) ** 0.5, (B, 1))
    out = sample(sharp_params, None, prompts, cfg=cfg, max_new_tokens=10, greedy=True, delta=delta)
    assert (np.asarray(out.tokens)[:, 0, 0] == target).all()
    ref = sample(sharp_params, None, jnp.concatenate([prompts, jnp.full((B, 1), target)], 1),
                 cfg=cfg, max_new_tokens=9, greedy=True)
    np.testing.assert_array_equal(np.asarray(out.tokens)[:, 0, 1:], np.asarray(ref.tokens)[:, 0])
    full = sample(sharp_params, None, prompts, cfg=cfg, max_new_tokens=10, greedy=True,
                  delta=delta, use_cache=False)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(full.tokens))
    mid = dict(cfg=cfg, max_new_tokens=10, greedy=True, delta=delta, delta_layer=0,
               return_logits=True)
    a = sample(sharp_params, None, prompts, **mid)
    b = sample(sharp_params, None, prompts, use_cache=False, **mid)
    np.testing.assert_allclose(np.asarray(a.logits), np.asarray(b.logits), atol=1e-4)


def test_bad_prompts_raise(cfg, params, tok):
    right, _ = tok.encode_batch(["<bos>Q:1+2=", "<bos>Q:1="], pad_side="right")
    with pytest.raises(ValueError, match="LEFT padding"):
        sample(params, None, right, cfg=cfg, max_new_tokens=4, greedy=True)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(params, None, right[:1], cfg=cfg, max_new_tokens=200, greedy=True)
    with pytest.raises(ValueError, match="top_p"):
        sample(params, jax.random.PRNGKey(0), right[:1], cfg=cfg, max_new_tokens=4, top_p=0.0)
    with pytest.raises(ValueError, match="at least one non-PAD"):
        sample(params, None, np.zeros((1, 3), np.int32), cfg=cfg, max_new_tokens=4, greedy=True)


def _eos_params(params, tok, c):
    """Random params whose EOS logit gets +c through the final LayerNorm bias (rows then finish at
    different steps), so decoding can stop before max_new_tokens."""
    p = jax.tree_util.tree_map(lambda x: x, params)
    p["ln_f"]["bias"] = p["ln_f"]["bias"].at[0].set(1.0)
    p["head"]["kernel"] = p["head"]["kernel"].at[0].set(0.0).at[0, tok.eos_id].set(c)
    return p


def test_decode_segments_end_at_N_and_grow():
    from jaxlab.lm.sampler import decode_segments
    for P, N in ((16, 96), (5, 1), (3, 17), (1, 40)):
        ends = decode_segments(P, N, max_segments=4)
        assert ends[-1] == N and all(b > a for a, b in zip(ends, ends[1:])) and len(ends) <= 4


@pytest.mark.parametrize("greedy", [True, False])
def test_early_stop_and_length_segments_match_full_recompute(cfg, params, prompts, tok, greedy):
    """Every row finishes well before max_new_tokens: the segmented while_loop decoder (which stops
    then) gives the same tokens, masks and lengths as the full-recompute scan over all N steps."""
    p = _eos_params(params, tok, 3.0)
    kw = dict(cfg=cfg, max_new_tokens=40, num_samples=4, greedy=greedy)
    key = jax.random.PRNGKey(5)
    c = sample(p, key, prompts, **kw)
    f = sample(p, key, prompts, use_cache=False, **kw)
    lengths = np.asarray(c.lengths)
    assert np.asarray(c.finished).all() and lengths.max() < 40
    if not greedy:
        assert len(np.unique(lengths)) > 2                # rows finish at different steps
    for name in ("tokens", "mask", "lengths", "finished"):
        np.testing.assert_array_equal(np.asarray(getattr(c, name)), np.asarray(getattr(f, name)))
    np.testing.assert_allclose(np.asarray(c.model_logprobs), np.asarray(f.model_logprobs), atol=1e-5)
    np.testing.assert_allclose(np.asarray(c.logprobs), np.asarray(f.logprobs), atol=1e-5)
    # return_logits runs every step (no early stop): the same tokens and log-probs
    r = sample(p, key, prompts, return_logits=True, **kw)
    np.testing.assert_array_equal(np.asarray(r.tokens), np.asarray(c.tokens))
    np.testing.assert_array_equal(np.asarray(r.model_logprobs), np.asarray(c.model_logprobs))


def test_length_segments_give_the_same_tokens(cfg, params, prompts, tok, monkeypatch):
    import jaxlab.lm.sampler as S
    p = _eos_params(params, tok, 1.0)
    kw = dict(cfg=cfg, max_new_tokens=40, num_samples=2, greedy=True)
    one = sample(p, None, prompts, **kw)
    monkeypatch.setattr(S, "DECODE_SEGMENTS", 3)
    assert len(S.decode_segments(prompts.shape[1], 40)) == 3
    jax.clear_caches()                                   # the segment count is read at trace time
    try:
        seg = sample(p, None, prompts, **kw)
    finally:
        monkeypatch.undo()
        jax.clear_caches()                               # later tests must not reuse this compile
    np.testing.assert_array_equal(np.asarray(seg.tokens), np.asarray(one.tokens))
    np.testing.assert_allclose(np.asarray(seg.model_logprobs), np.asarray(one.model_logprobs), atol=1e-5)


def test_policy_draw_is_jax_random_categorical(cfg, params, prompts):
    """The sampler draws argmax(lp + Gumbel noise); with the noise of `jax.random.gumbel(key, shape)` that is
    `jax.random.categorical(key, lp)` exactly (what the step-by-step loop drew), so sliced noise keeps every draw."""
    from jaxlab.lm.model import output_log_softmax
    from jaxlab.lm.sampler import _gumbel, _policy
    logits = apply(params, prompts, cfg=cfg)[:, -1] * 3.0
    for t in (1.0, 0.7, 1.3):
        lp = output_log_softmax(logits / t, cfg)
        for seed in range(4):
            key = jax.random.PRNGKey(seed)
            tok, pol, _ = _policy(logits, _gumbel(key, logits.shape), cfg=cfg, temperature=t, top_p=1.0, greedy=False)
            np.testing.assert_array_equal(np.asarray(tok), np.asarray(jax.random.categorical(key, lp, axis=-1)))
            np.testing.assert_array_equal(np.asarray(pol), np.take_along_axis(np.asarray(lp), np.asarray(tok)[:, None], 1)[:, 0])


@pytest.mark.parametrize("greedy", [True, False])
def test_row_blocks_give_the_same_tokens_and_logprobs(cfg, params, prompts, tok, greedy):
    """B*G = 12 rows decoded in blocks of 1, 5 (padded to 15) and 12 rows: identical tokens, masks and lengths,
    log-probs equal up to float32 rounding (the dense layers' matmuls see fewer rows); rows finish at different
    steps, so each block stops on its own."""
    p = _eos_params(params, tok, 2.0)
    kw = dict(cfg=cfg, max_new_tokens=40, num_samples=4, greedy=greedy, temperature=1.0, top_p=0.95)
    key = jax.random.PRNGKey(11)
    one = sample(p, key, prompts, **kw)
    assert 0 < np.asarray(one.finished).mean() and np.asarray(one.lengths).min() < 40
    if not greedy:
        assert len(np.unique(np.asarray(one.lengths))) > 2
    for rb in (1, 5, 12, 1000):
        b = sample(p, key, prompts, row_block=rb, **kw)
        for name in ("tokens", "mask", "lengths", "finished"):
            np.testing.assert_array_equal(np.asarray(getattr(b, name)), np.asarray(getattr(one, name)), err_msg=name)
        np.testing.assert_allclose(np.asarray(b.model_logprobs), np.asarray(one.model_logprobs), atol=2e-6, rtol=0)
        np.testing.assert_allclose(np.asarray(b.logprobs), np.asarray(one.logprobs), atol=2e-6, rtol=0)
    # blocks and segments together, with the full logits of every step
    r = sample(p, key, prompts, row_block=5, segments=3, return_logits=True, **kw)
    f = sample(p, key, prompts, return_logits=True, **kw)
    np.testing.assert_array_equal(np.asarray(r.tokens), np.asarray(f.tokens))
    np.testing.assert_allclose(np.asarray(r.logits), np.asarray(f.logits), atol=1e-5, rtol=0)


def test_default_row_block_fits_the_cache_budget_in_equal_blocks():
    from jaxlab.lm.sampler import ROW_BLOCK_CACHE_BYTES, default_row_block
    big = LMConfig(vocab_size=40, d_model=128, num_layers=4, num_heads=4, d_ff=512, max_len=112)
    per_row = 2 * 4 * 112 * 128 * 4                                     # 458,752 bytes of K and V per row
    assert ROW_BLOCK_CACHE_BYTES // per_row == 18
    assert default_row_block(big, 128, 112, backend="cpu") == 16        # 8 equal blocks of 16 (not 7 x 18 + 2)
    assert default_row_block(big, 20, 112, backend="cpu") == 10         # 2 blocks of 10
    assert default_row_block(big, 7, 112, backend="cpu") == 7           # one block when everything fits
    assert default_row_block(big, 128, 112, backend="gpu") == 128       # accelerators: one block
    assert default_row_block(LMConfig(d_model=1024, num_layers=64, max_len=4096), 8, 4096, backend="cpu") == 1


def test_bad_decoder_options_raise(cfg, params, prompts):
    for bad in (0, -2, "fast"):
        with pytest.raises(ValueError, match="row_block"):
            sample(params, None, prompts, cfg=cfg, max_new_tokens=4, greedy=True, row_block=bad)
    with pytest.raises(ValueError, match="segments"):
        sample(params, None, prompts, cfg=cfg, max_new_tokens=4, greedy=True, segments=0)


@pytest.mark.parametrize("opts", [dict(greedy=True), dict(greedy=True, row_block=2, segments=3),
                                  dict(greedy=False, num_samples=2), dict(greedy=True, use_cache=False)])
def test_sample_runs_under_shard_map_with_its_type_check(cfg, params, prompts, opts):
    """Under `jax.shard_map` (per-device type check on) the decoder's loop carries vary over the mesh like the rows
    they hold; greedy rows split over the mesh decode as they do unsplit."""
    from jax.sharding import PartitionSpec as P
    from jaxlab.core import sharding
    mesh = sharding.make_mesh(1)
    f = jax.jit(jax.shard_map(lambda p, k: sample(params, k, p, cfg=cfg, max_new_tokens=12, **opts),
                              mesh=mesh, in_specs=(P("data"), P()), out_specs=P("data")))
    key = jax.random.PRNGKey(3)
    out, ref = f(prompts, key), sample(params, key, prompts, cfg=cfg, max_new_tokens=12, **opts)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
