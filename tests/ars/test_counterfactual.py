"""Counterfactual generation at the boundary (spec §8 perturbation tests) on a tiny random LM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import lm
from jaxlab.ars import counterfactual as C

TOK = lm.CharTokenizer()
CFG = lm.LMConfig(vocab_size=TOK.vocab_size, d_model=32, num_layers=2, num_heads=2, d_ff=64, max_len=48)
BS = 16        # rows per compiled batch (the experiment uses hundreds; the semantics do not depend on it)
TEXTS = ["Q:12+34= T:2+4=6,1+3=4;12+34=46 A:46<eos>", "Q:9-5= T:9-5=4 A:4<eos>",
         "Q:71+8= T:1+8=9,7+0=7;71+8=79 A:79<eos>", "Q:30-12= T:10-2=8,2-1=1;30-12=18 A:18<eos>"]


@pytest.fixture(scope="module")
def params():
    # a random model with a larger output scale, so that its greedy choices are not all ties
    p = lm.init(jax.random.PRNGKey(0), CFG)
    return jax.tree_util.tree_map(lambda x: x * 4.0 if x.ndim == 2 else x, p)


def _prompts():
    prefixes = [C.truncate_at(t, "boundary") for t in TEXTS]
    return C.encode_prefixes(prefixes, TOK, 38)


def test_split_and_truncate():
    assert C.split_answer(TEXTS[0]) == ("Q:12+34= T:2+4=6,1+3=4;12+34=46 A:", "46")
    assert C.truncate_at(TEXTS[0], "mid_answer") == "Q:12+34= T:2+4=6,1+3=4;12+34=46 A:4"
    assert C.truncate_at(TEXTS[1], "mid_answer") == "Q:9-5= T:9-5=4 A:4"
    trace = "2+4=6,1+3=4;12+34=46"
    assert C.truncate_at(TEXTS[0], "trace_0.5") == "Q:12+34= T:" + trace[:10]
    assert C.truncate_at(TEXTS[0], "trace_0.25") == "Q:12+34= T:" + trace[:5]
    with pytest.raises(ValueError, match="marker"):
        C.split_answer("Q:1+2= T:1+2=3")
    with pytest.raises(ValueError, match="marker"):
        C.truncate_at("Q:1+2= T:1+2=3 3<eos>", "boundary")
    with pytest.raises(ValueError, match="position"):
        C.truncate_at(TEXTS[0], "middle")


def test_perturbation_scale_and_bad_rho():
    h = jax.random.normal(jax.random.PRNGKey(1), (3, 64)) * jnp.array([[0.5], [1.0], [3.0]])
    d = np.asarray(C.perturbation(jax.random.PRNGKey(2), h, rho=0.7, num_draws=400))
    sigma = 0.7 * np.sqrt(np.mean(np.square(np.asarray(h)), axis=1))
    emp = d.reshape(3, -1).std(axis=1)
    np.testing.assert_array_less(np.abs(emp / sigma - 1), 0.03)
    assert np.all(np.asarray(C.perturbation(jax.random.PRNGKey(2), h, rho=0.0, num_draws=3)) == 0)
    with pytest.raises(ValueError, match="rho"):
        C.perturbation(jax.random.PRNGKey(2), h, rho=-0.1, num_draws=3)


def test_rho_zero_reproduces_greedy_and_keys_are_reproducible(params):
    prompts = _prompts()
    ref = C.greedy_continuations(params, prompts, cfg=CFG, max_new_tokens=6, batch_size=BS)
    cf0 = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, cfg=CFG, rho=0.0, num_draws=3,
                            max_new_tokens=6, batch_size=BS)
    assert np.array_equal(cf0, np.repeat(ref[:, None], 3, axis=1))      # agreement 1
    kw = dict(cfg=CFG, num_draws=3, max_new_tokens=6, batch_size=BS)
    a = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, rho=3.0, **kw)
    b = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, rho=3.0, **kw)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="rho"):
        C.counterfactuals(params, jax.random.PRNGKey(3), prompts, rho=-1.0, **kw)


@pytest.mark.slow
def test_one_long_program_equals_the_short_one(params):
    """The experiment runs every position through one (P, N) program with N past the model's context:
    keep_tokens=n equals decoding n steps, and each row is cut where its own context ends."""
    prompts = _prompts()
    kw = dict(cfg=CFG, rho=3.0, num_draws=3, batch_size=BS)
    short = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, max_new_tokens=6, **kw)
    long = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, max_new_tokens=20, keep_tokens=6, **kw)
    assert long.shape == (4, 3, 20) and np.array_equal(long[..., :6], short) and np.all(long[..., 6:] == CFG.pad_id)
    full = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, max_new_tokens=20, **kw)
    room = CFG.max_len - (prompts != CFG.pad_id).sum(1)                 # context left after each prompt
    assert np.array_equal(full[..., :6], short)
    for i in range(4):
        assert np.all(full[i, :, room[i]:] == CFG.pad_id)


def test_forced_first_token_equals_the_delta_sampler(params):
    """The experiment's head-input path (force t0 = argmax((h + delta) W_o), continue greedily from the
    unperturbed prompt) gives the sampler's delta-intervention tokens, with or without reusing the greedy
    continuation for draws that keep the original first token."""
    prompts = _prompts()
    kw = dict(cfg=CFG, num_draws=3, max_new_tokens=6, batch_size=BS)
    greedy = C.greedy_continuations(params, prompts, cfg=CFG, max_new_tokens=6, batch_size=BS)
    flips = []
    for rho in (1.0, 8.0):
        ref = C.counterfactuals(params, jax.random.PRNGKey(3), prompts, rho=rho, **kw)
        fast = C.head_counterfactuals(params, jax.random.PRNGKey(3), prompts, rho=rho, **kw)
        reuse = C.head_counterfactuals(params, jax.random.PRNGKey(3), prompts, rho=rho, greedy_tokens=greedy, **kw)
        assert np.array_equal(fast, ref) and np.array_equal(reuse, ref)
        flips.append(ref[:, :, 0] != greedy[:, None, 0])
    assert np.any(flips) and not np.all(flips)                 # both branches are exercised


def test_first_token_agreement_does_not_increase_with_rho(params):
    """With fixed keys delta = rho * eps: the first token is argmax(l + rho eps W), and the set of rho where
    the original token wins is an interval containing 0, so agreement can only fall as rho grows."""
    prompts = _prompts()
    ref = C.greedy_continuations(params, prompts, cfg=CFG, max_new_tokens=6, batch_size=BS)[:, 0]   # (shapes shared
    rates = []                                                                        #  with the test above)
    for rho in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        cf = C.counterfactuals(params, jax.random.PRNGKey(5), prompts, cfg=CFG, rho=rho, num_draws=3,
                               max_new_tokens=6, batch_size=BS)
        agree = cf[:, :, 0] == ref[:, None]
        rates.append(agree)
    for lo, hi in zip(rates, rates[1:]):
        assert np.all(hi <= lo)                                          # per draw, not just on average
    assert rates[0].all() and rates[-1].mean() < 1.0


def test_head_intervention_changes_logits_by_w_delta_and_nothing_else(params):
    toks = jnp.asarray(_prompts())
    B, T = toks.shape
    delta = jax.random.normal(jax.random.PRNGKey(6), (B, CFG.d_model))
    pos = jnp.full((B,), T - 1)
    base = lm.apply(params, toks, cfg=CFG)
    pert = lm.apply(params, toks, cfg=CFG, delta=delta, delta_pos=pos, delta_layer=-1)
    w_out = params["head"]["kernel"]
    np.testing.assert_allclose(pert[:, -1] - base[:, -1], delta @ w_out, atol=1e-4)
    assert np.array_equal(np.asarray(pert[:, :-1]), np.asarray(base[:, :-1]))


def test_states_before_the_boundary_are_bit_identical(params):
    """Same compiled program with delta = 0 and delta != 0 at block 0 of the boundary: every state at
    positions < p is bit-identical (and equal to the delta-free program's up to float reassociation)."""
    toks = jnp.asarray(_prompts())
    B, T = toks.shape
    p = T - 1
    run = jax.jit(lambda d: lm.apply(params, toks, cfg=CFG, return_hidden=True, delta=d,
                                     delta_pos=jnp.full((B,), p), delta_layer=0)[1])
    delta = 5.0 * jax.random.normal(jax.random.PRNGKey(7), (B, CFG.d_model))
    h0, h1 = run(jnp.zeros_like(delta)), run(delta)
    real = np.asarray(toks[:, :p]) != CFG.pad_id      # (left-PAD slots are not tokens: no valid key)
    assert np.array_equal(np.asarray(h0.blocks[:, :, :p])[:, real], np.asarray(h1.blocks[:, :, :p])[:, real])
    assert np.array_equal(np.asarray(h0.head[:, :p])[real], np.asarray(h1.head[:, :p])[real])
    assert not np.array_equal(np.asarray(h0.blocks[1, :, p]), np.asarray(h1.blocks[1, :, p]))
    _, hn = lm.apply(params, toks, cfg=CFG, return_hidden=True)
    np.testing.assert_allclose(np.asarray(hn.blocks[:, :, :p])[:, real], np.asarray(h1.blocks[:, :, :p])[:, real],
                               atol=1e-5)


@pytest.mark.slow
def test_features_read_the_last_answer_token(params):
    F = C.features(params, TEXTS[:2], cfg=CFG, tok=TOK, batch_size=BS)
    ids, last, start = C.encode_full(TEXTS[:2], TOK, CFG.max_len)
    assert TOK.decode(ids[0, last[0]:last[0] + 2]) == "6<eos>" and TOK.decode(ids[1, start[1]:last[1] + 1]) == "4"
    _, hid = lm.apply(params, jnp.asarray(ids), cfg=CFG, return_hidden=True)
    np.testing.assert_allclose(F.blocks_lbd[:, 0], np.asarray(hid.blocks[:, 0, last[0]]), atol=1e-6)
    # mean NLL of the answer tokens (answer characters and EOS) equals the teacher-forced log-probs
    logp = np.asarray(lm.logprobs(params, jnp.asarray(ids), jnp.asarray(ids) != 0, cfg=CFG))
    np.testing.assert_allclose(F.nll_b[0], -logp[0, start[0]:last[0] + 2].mean(), rtol=1e-5)
    Fy = C.features(params, TEXTS[:2], cfg=CFG, tok=TOK, verdict="<yes>", batch_size=BS)
    assert not np.allclose(Fy.blocks_lbd, F.blocks_lbd)
    with pytest.raises(ValueError, match="marker"):
        C.features(params, ["Q:1+2= T:1+2=3"], cfg=CFG, tok=TOK, batch_size=BS)
