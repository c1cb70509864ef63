"""Modality encoders and the fusion variants compared in the HAVP reproduction.

Our reading of arXiv 2602.13640 (the paper body is not available, see notes/fusion.md):
stage 1 ("binary-branched fusion"): for X in {vision, proprio}, X' = X + CrossAttn(Q=X, K=V=audio) and
X'' = FiLM(X'; mean-pooled audio) — the attention output projection and the FiLM projection are
zero-initialised, so stage 1 is the identity at initialisation; stage 2 ("interaction modelling"):
low-rank multimodal fusion (LMF, Liu et al. 2018) over [a; 1] (x) [v; 1] (x) [p; 1], which contains the
uni-, bi- and tri-modal product terms. We call the result "HAVP-style", a reconstruction.

Variants (``FUSION_VARIANTS``): concat, transformer, stage1, havp, each also with the suffix ``_noaudio``
(the audio encoder is removed entirely — no parameters, no zero inputs).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.diffusion.nets import FiLM

BASE_VARIANTS = ("concat", "transformer", "stage1", "havp")
FUSION_VARIANTS = BASE_VARIANTS + tuple(v + "_noaudio" for v in BASE_VARIANTS)


class PolicyObs(NamedTuple):
    """Policy input over an observation horizon To.
    image: [B, H, W, To]; logmel: [B, F, M] (normalised log-mel of the last To audio windows);
    proprio: [B, To * P]."""

    image: jnp.ndarray
    logmel: jnp.ndarray
    proprio: jnp.ndarray


def parse_variant(variant: str) -> tuple[str, bool]:
    """'havp_noaudio' -> ('havp', False). Raises ValueError on unknown names."""
    if variant not in FUSION_VARIANTS:
        raise ValueError(f"variant must be one of {FUSION_VARIANTS}, got {variant!r}")
    base = variant.removesuffix("_noaudio")
    return base, not variant.endswith("_noaudio")


def _mish(x):
    return x * jnp.tanh(nn.softplus(x))


class VisionEncoder(nn.Module):
    """3 x (conv3x3 stride 2) + GroupNorm -> tokens. image: [B, H, W, C] -> [B, (H/8)(W/8), d]."""

    d: int = 32

    @nn.compact
    def __call__(self, x):
        for f in (16, 32, self.d):
            x = nn.Conv(f, (3, 3), strides=(2, 2), padding="SAME")(x)
            x = _mish(nn.GroupNorm(num_groups=8)(x))
        return x.reshape(x.shape[0], -1, self.d)


class AudioEncoder(nn.Module):
    """CNN on the log-mel image. logmel: [B, F, M] -> tokens [B, ceil(F/8) ceil(M/8), d]."""

    d: int = 32

    @nn.compact
    def __call__(self, x):
        x = x[..., None]
        for f in (16, 32, self.d):
            x = nn.Conv(f, (3, 3), strides=(2, 2), padding="SAME")(x)
            x = _mish(nn.GroupNorm(num_groups=8)(x))
        return x.reshape(x.shape[0], -1, self.d)


class PatchVisionEncoder(nn.Module):
    """ViT-style patch embedding (cheap on CPU): non-overlapping p x p patches -> Dense + learned position ->
    mish -> Dense. image: [B, H, W, C] (H, W divisible by p) -> tokens [B, (H/p)(W/p), d]."""

    d: int = 32
    patch: int = 6

    @nn.compact
    def __call__(self, x):
        B, H, W, C = x.shape
        p = self.patch
        if H % p or W % p:
            raise ValueError(f"image side must be divisible by patch={p}, got {H}x{W}")
        x = x.reshape(B, H // p, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, (H // p) * (W // p), -1)
        pos = self.param("pos", nn.initializers.normal(0.02), (x.shape[1], self.d))
        return nn.Dense(self.d)(_mish(nn.Dense(self.d)(x) + pos))


class PatchAudioEncoder(nn.Module):
    """Log-mel -> n_tokens time tokens: frames edge-padded to a multiple of n_tokens and mean-pooled in groups,
    then Dense over the mel axis + learned position -> mish -> Dense. logmel: [B, F, M] -> [B, n_tokens, d]."""

    d: int = 32
    n_tokens: int = 8

    @nn.compact
    def __call__(self, x):
        B, F, M = x.shape
        g = -(-F // self.n_tokens)
        x = jnp.pad(x, ((0, 0), (0, g * self.n_tokens - F), (0, 0)), mode="edge")
        x = x.reshape(B, self.n_tokens, g, M).mean(axis=2)
        pos = self.param("pos", nn.initializers.normal(0.02), (self.n_tokens, self.d))
        return nn.Dense(self.d)(_mish(nn.Dense(self.d)(x) + pos))


class ProprioEncoder(nn.Module):
    """MLP -> one token. proprio: [B, P] -> [B, 1, d]."""

    d: int = 32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.d)(_mish(nn.Dense(64)(x)))[:, None, :]


class AudioConditionedBranch(nn.Module):
    """Stage-1 branch: X' = X + CrossAttn(X, audio) (output projection zero-init), X'' = FiLM(X'; mean audio).
    x: [B, N, d]; audio: [B, Na, d]. Returns [B, N, d]; equals x at initialisation."""

    d: int = 32
    heads: int = 4
    use_film: bool = True

    @nn.compact
    def __call__(self, x, audio):
        attn = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.d, out_features=self.d,
                                               out_kernel_init=nn.initializers.zeros, name="cross_attn")
        x = x + attn(nn.LayerNorm(name="ln_q")(x), nn.LayerNorm(name="ln_kv")(audio))
        if self.use_film:
            x = FiLM(self.d, name="film")(x, jnp.mean(audio, axis=1))
        return x


def lmf(z_list, factors, bias=None):
    """Low-rank multimodal fusion: h = sum_r prod_m (W_m^r [z_m; 1]) + b.

    Args:
      z_list: M arrays [B, d_m]; factors: M arrays [R, d_m + 1, O]; bias: [O] or None.
    Returns:
      h: [B, O].
    """
    if len(z_list) != len(factors):
        raise ValueError(f"need one factor per modality, got {len(z_list)} inputs and {len(factors)} factors")
    prod = None
    for z, w in zip(z_list, factors):
        z1 = jnp.concatenate([z, jnp.ones(z.shape[:-1] + (1,), z.dtype)], axis=-1)
        term = jnp.einsum("bi,rio->bro", z1, w)
        prod = term if prod is None else prod * term
    h = prod.sum(axis=1)
    return h if bias is None else h + bias


def lmf_full_tensor(factors):
    """The full fusion tensor W[i, j, (k,) o] = sum_r prod_m W_m^r[., o] implied by LMF factors (2 or 3 modalities)."""
    if len(factors) == 2:
        return jnp.einsum("rio,rjo->ijo", *factors)
    if len(factors) == 3:
        return jnp.einsum("rio,rjo,rko->ijko", *factors)
    raise ValueError(f"lmf_full_tensor supports 2 or 3 modalities, got {len(factors)}")


def tensor_fusion(z_list, w_full, bias=None):
    """Explicit tensor fusion (Zadeh et al. 2017): h = W . vec([z_1;1] (x) ... (x) [z_M;1]) + b.
    z_list: 2 or 3 arrays [B, d_m]; w_full: [d_1+1, ..., O]. Returns [B, O]."""
    z1 = [jnp.concatenate([z, jnp.ones(z.shape[:-1] + (1,), z.dtype)], axis=-1) for z in z_list]
    if len(z1) == 2:
        h = jnp.einsum("bi,bj,ijo->bo", *z1, w_full)
    elif len(z1) == 3:
        h = jnp.einsum("bi,bj,bk,ijko->bo", *z1, w_full)
    else:
        raise ValueError(f"tensor_fusion supports 2 or 3 modalities, got {len(z1)}")
    return h if bias is None else h + bias


class LowRankFusion(nn.Module):
    """Flax wrapper of :func:`lmf`: z_list of [B, d_m] -> [B, out]."""

    out: int = 64
    rank: int = 4

    @nn.compact
    def __call__(self, z_list):
        factors = [self.param(f"factor_{m}", nn.initializers.variance_scaling(1.0, "fan_in", "normal",
                                                                             in_axis=1, out_axis=2),
                              (self.rank, z.shape[-1] + 1, self.out)) for m, z in enumerate(z_list)]
        bias = self.param("bias", nn.initializers.zeros, (self.out,))
        return lmf(z_list, factors, bias)


class TransformerLayer(nn.Module):
    d: int = 32
    heads: int = 4

    @nn.compact
    def __call__(self, x):
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.d)(nn.LayerNorm()(x))
        h = nn.LayerNorm()(x)
        return x + nn.Dense(self.d)(_mish(nn.Dense(2 * self.d)(h)))


class FusionEncoder(nn.Module):
    """Observation -> conditioning vector [B, out] for one of ``FUSION_VARIANTS``."""

    variant: str = "havp"
    d: int = 32
    out: int = 64
    rank: int = 4
    image_size: int = 24
    proprio_dim: int = 6
    tokenizer: str = "patch"   # "patch" (patch/time-group embeddings, default) or "conv" (3-layer CNNs)

    def setup(self):
        self.base, self.use_audio = parse_variant(self.variant)
        if self.tokenizer == "patch":
            self.vision = PatchVisionEncoder(self.d)
        elif self.tokenizer == "conv":
            self.vision = VisionEncoder(self.d)
        else:
            raise ValueError(f"tokenizer must be 'patch' or 'conv', got {self.tokenizer!r}")
        self.proprio_enc = ProprioEncoder(self.d)
        if self.use_audio:
            self.audio = PatchAudioEncoder(self.d) if self.tokenizer == "patch" else AudioEncoder(self.d)
        if self.base in ("stage1", "havp") and self.use_audio:
            self.branch_v = AudioConditionedBranch(self.d)
            self.branch_p = AudioConditionedBranch(self.d)
        if self.base == "transformer":
            self.layers = [TransformerLayer(self.d) for _ in range(2)]
            self.n_mod = 3 if self.use_audio else 2
            self.mod_emb = self.param("modality_emb", nn.initializers.normal(0.02), (self.n_mod, self.d))
        if self.base == "havp":
            self.proj_v = nn.Dense(self.d)
            self.proj_p = nn.Dense(self.d)
            self.proj_a = nn.Dense(self.d) if self.use_audio else None
            self.fusion = LowRankFusion(self.out, self.rank)
        else:
            self.head = nn.Sequential([nn.Dense(128), _mish, nn.Dense(self.out)])

    def check(self, obs: PolicyObs):
        if obs.image.ndim != 4 or obs.image.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"obs.image must be [B, {self.image_size}, {self.image_size}, To], "
                             f"got {obs.image.shape}")
        if obs.proprio.ndim != 2 or obs.proprio.shape[-1] != self.proprio_dim:
            raise ValueError(f"obs.proprio must be [B, {self.proprio_dim}], got {obs.proprio.shape}")
        if self.use_audio and obs.logmel.ndim != 3:
            raise ValueError(f"obs.logmel must be [B, frames, mels], got {obs.logmel.shape}")

    def tokens(self, obs: PolicyObs):
        """Per-modality tokens (a or None, v, p), each [B, N_m, d]."""
        self.check(obs)
        v = self.vision(obs.image)
        p = self.proprio_enc(obs.proprio)
        a = self.audio(obs.logmel) if self.use_audio else None
        return a, v, p

    def stage1(self, a, v, p):
        """Audio-conditioned vision and proprio branches (identity without audio)."""
        if a is None:
            return v, p
        return self.branch_v(v, a), self.branch_p(p, a)

    def __call__(self, obs: PolicyObs):
        a, v, p = self.tokens(obs)
        B = v.shape[0]
        if self.base == "concat":
            parts = [v.reshape(B, -1), p.reshape(B, -1)] + ([a.reshape(B, -1)] if a is not None else [])
            return self.head(jnp.concatenate(parts, axis=-1))
        if self.base == "transformer":
            toks = [v + self.mod_emb[0], p + self.mod_emb[1]] + ([a + self.mod_emb[2]] if a is not None else [])
            x = jnp.concatenate(toks, axis=1)
            for layer in self.layers:
                x = layer(x)
            return self.head(jnp.mean(x, axis=1))
        v2, p2 = self.stage1(a, v, p)
        if self.base == "stage1":
            parts = [v2.reshape(B, -1), p2.reshape(B, -1)] + ([a.mean(axis=1)] if a is not None else [])
            return self.head(jnp.concatenate(parts, axis=-1))
        zs = [self.proj_v(v2.reshape(B, -1)), self.proj_p(p2.reshape(B, -1))]
        if a is not None:
            zs = [self.proj_a(a.mean(axis=1))] + zs
        return self.fusion(zs)

    def embeddings(self, obs: PolicyObs):
        """Embeddings for the MI analysis: dict of [B, k] (audio, vision, fused) — audio only if present."""
        a, v, p = self.tokens(obs)
        out = {"vision": v.mean(axis=1), "fused": self(obs)}
        if a is not None:
            out["audio"] = a.mean(axis=1)
        return out


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
