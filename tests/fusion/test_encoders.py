"""Fusion encoders: stage-1 identity at init and audio wiring, LMF == explicit tensor fusion, no-audio variants
have no audio parameters, bad inputs (spec tests 9-11)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.fusion import encoders as E

B = 3


def _obs(key=0, To=2):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(key), 3)
    return E.PolicyObs(jax.random.normal(k1, (B, 24, 24, To)), jax.random.normal(k2, (B, 26, 32)),
                       jax.random.normal(k3, (B, 3 * To)))


def test_stage1_branch_identity_at_init_and_permutation_invariance():
    br = E.AudioConditionedBranch(16)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, 9, 16))
    a = jax.random.normal(jax.random.PRNGKey(1), (B, 8, 16))
    p = br.init(jax.random.PRNGKey(2), x, a)
    np.testing.assert_allclose(br.apply(p, x, a), x, atol=1e-6)
    # perturb the zero-initialised parts: conditioning now acts, and is invariant to audio token order
    p = jax.tree.map(lambda w: w + 0.1 * jax.random.normal(jax.random.PRNGKey(3), w.shape), p)
    out = br.apply(p, x, a)
    perm = jnp.array([3, 1, 7, 0, 2, 6, 5, 4])
    np.testing.assert_allclose(br.apply(p, x, a[:, perm]), out, atol=1e-5)
    assert float(jnp.abs(br.apply(p, x, a + 1.0) - out).max()) > 1e-3


def test_audio_changes_vision_branch_in_havp_encoder():
    enc = E.FusionEncoder("havp")
    obs = _obs()
    p = enc.init(jax.random.PRNGKey(0), obs)
    p = jax.tree.map(lambda w: w + 0.05 * jax.random.normal(jax.random.PRNGKey(4), w.shape), p)

    def vision_branch(params, o):
        def f(m, o):
            a, v, pp = m.tokens(o)
            return m.stage1(a, v, pp)[0]
        return enc.apply(params, o, method=f)

    v1 = vision_branch(p, obs)
    v2 = vision_branch(p, obs._replace(logmel=obs.logmel + 1.0))
    assert float(jnp.abs(v1 - v2).max()) > 1e-3


def test_lmf_equals_explicit_tensor_fusion_and_has_unimodal_terms():
    ks = jax.random.split(jax.random.PRNGKey(0), 7)
    dims, R, O = (2, 3, 2), 4, 5
    zs = [jax.random.normal(ks[m], (6, d)) for m, d in enumerate(dims)]
    fac = [jax.random.normal(ks[3 + m], (R, d + 1, O)) for m, d in enumerate(dims)]
    bias = jax.random.normal(ks[6], (O,))
    np.testing.assert_allclose(E.lmf(zs, fac, bias), E.tensor_fusion(zs, E.lmf_full_tensor(fac), bias),
                               rtol=1e-5, atol=1e-5)
    # bimodal case too
    np.testing.assert_allclose(E.lmf(zs[:2], fac[:2]), E.tensor_fusion(zs[:2], E.lmf_full_tensor(fac[:2])),
                               rtol=1e-5, atol=1e-5)
    # zero two modalities: output is a non-constant affine function of the third
    zero = lambda z: jnp.zeros_like(z)  # noqa: E731
    f = lambda a: E.lmf([a, zero(zs[1]), zero(zs[2])], fac)  # noqa: E731
    a0, a1 = zs[0][:1], zs[0][1:2]
    mid = f(0.5 * (a0 + a1))
    np.testing.assert_allclose(mid, 0.5 * (f(a0) + f(a1)), rtol=1e-5, atol=1e-5)  # affine
    assert float(jnp.abs(f(a0) - f(a1)).max()) > 1e-3  # non-constant
    with pytest.raises(ValueError, match="factor"):
        E.lmf(zs, fac[:2])


@pytest.mark.parametrize("variant", E.BASE_VARIANTS)
def test_noaudio_variant_has_no_audio_parameters(variant):
    obs = _obs()
    p_a = E.FusionEncoder(variant).init(jax.random.PRNGKey(0), obs)
    p_n = E.FusionEncoder(variant + "_noaudio").init(jax.random.PRNGKey(0), obs)
    assert "audio" in p_a["params"] and "audio" not in p_n["params"]
    assert not any("branch" in k for k in p_n["params"])
    assert E.count_params(p_n) < E.count_params(p_a)
    # a no-audio encoder ignores the audio input entirely
    enc = E.FusionEncoder(variant + "_noaudio")
    o1 = enc.apply(p_n, obs)
    o2 = enc.apply(p_n, obs._replace(logmel=jnp.zeros((B, 5, 7))))
    np.testing.assert_array_equal(o1, o2)
    assert o1.shape == (B, 64)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="variant"):
        E.parse_variant("late_fusion")
    enc = E.FusionEncoder("concat")
    obs = _obs()
    p = enc.init(jax.random.PRNGKey(0), obs)
    with pytest.raises(ValueError, match="obs.image"):
        enc.apply(p, obs._replace(image=jnp.zeros((B, 32, 32, 2))))
    with pytest.raises(ValueError, match="obs.proprio"):
        enc.apply(p, obs._replace(proprio=jnp.zeros((B, 4))))


@pytest.mark.parametrize("tokenizer,n_v,n_a", [("patch", 16, 8), ("conv", 9, 16)])
def test_tokenizers_token_counts_and_patch_layout(tokenizer, n_v, n_a):
    enc = E.FusionEncoder("havp", tokenizer=tokenizer)
    obs = _obs()
    p = enc.init(jax.random.PRNGKey(0), obs)
    a, v, pp = enc.apply(p, obs, method=lambda m, o: m.tokens(o))
    assert a.shape == (B, n_a, 32) and v.shape == (B, n_v, 32) and pp.shape == (B, 1, 32)
    if tokenizer == "patch":
        # changing one pixel changes exactly one vision token (non-overlapping 6x6 patches, row-major)
        v2 = enc.apply(p, obs._replace(image=obs.image.at[:, 7, 13, 0].add(1.0)), method=lambda m, o: m.tokens(o)[1])
        changed = np.nonzero(np.abs(np.asarray(v2 - v)).max(axis=(0, 2)) > 1e-6)[0]
        np.testing.assert_array_equal(changed, [1 * 4 + 2])
    with pytest.raises(ValueError, match="tokenizer"):
        E.FusionEncoder("havp", tokenizer="vit").init(jax.random.PRNGKey(0), obs)
