"""LM-free synthetic population with known group risk curves (spec B7) and its tfds builder.

Group g (prior weight w_g): score U | g ~ Kumaraswamy(a_g, b_g) (a Beta-like law on [0, 1]
with a closed-form inverse CDF; the spec says Beta, whose JAX sampler is a slow rejection loop); loss l | U, g ~ Bern(sigmoid(c_g (U - d_g)));
embedding phi | g ~ N(sep * e_g, I_D) (well separated, for C-PAC). The default spec has three groups
whose errors sit at high U (the score works) and one hard group with c < 0: its errors happen at LOW
U (a miscalibrated score), so a pooled threshold that is fine on average lets that group's risk run far
above eps. Exact population curves by numerical integration on a fine grid:

    R_g(u) = int_0^u Kuma(t; a_g, b_g) sigmoid(c_g (t - d_g)) dt,   F_g(u) = P(U < u | g),
    R(u) = sum_g w_g R_g(u).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.datasets import LocalCodePath


class PopulationSpec(NamedTuple):
    """Per-group parameters (tuples of length G). Hashable."""
    weights: tuple = (0.25, 0.25, 0.25, 0.25)
    kuma_a: tuple = (1.5, 2.0, 2.5, 2.0)
    kuma_b: tuple = (6.0, 5.0, 3.0, 3.0)
    slope: tuple = (12.0, 10.0, 10.0, -6.0)
    center: tuple = (0.75, 0.6, 0.55, 0.35)
    emb_dim: int = 4
    emb_sep: float = 6.0
    names: tuple = ("easy", "medium", "harder", "miscalibrated")

    @property
    def num_groups(self) -> int:
        return len(self.weights)


def homogeneous_spec(base: PopulationSpec | None = None, group: int = 0) -> PopulationSpec:
    """Every group a copy of `group` of `base` (the no-gain case of the efficiency claim)."""
    b = base or PopulationSpec()
    G = b.num_groups
    rep = lambda t: tuple([t[group]] * G)
    return b._replace(kuma_a=rep(b.kuma_a), kuma_b=rep(b.kuma_b), slope=rep(b.slope), center=rep(b.center))


def check_spec(spec: PopulationSpec) -> PopulationSpec:
    G = len(spec.weights)
    for f in ("kuma_a", "kuma_b", "slope", "center", "names"):
        if len(getattr(spec, f)) != G:
            raise ValueError(f"{f}: expected {G} entries (one per group), got {len(getattr(spec, f))}")
    if min(spec.weights) < 0 or not np.isclose(sum(spec.weights), 1.0):
        raise ValueError(f"weights: expected non-negative group weights summing to 1, got {spec.weights}")
    if min(spec.kuma_a) <= 0 or min(spec.kuma_b) <= 0:
        raise ValueError("kuma_a, kuma_b: expected positive Kumaraswamy parameters")
    return spec


def sample(key, spec: PopulationSpec, n: int) -> dict:
    """n i.i.d. draws: {"scores": [n], "losses": [n] (0/1 float), "groups": [n] int32,
    "emb": [n, D], "p_loss": [n] (the true P(l = 1 | U, g))}. Pure, jit/vmap-able over `key`."""
    kg, ku, kl, ke = jax.random.split(key, 4)
    g = jax.random.choice(kg, spec.num_groups, (n,), p=jnp.asarray(spec.weights))
    a, b = jnp.asarray(spec.kuma_a)[g], jnp.asarray(spec.kuma_b)[g]
    v = jax.random.uniform(ku, (n,), minval=1e-7, maxval=1.0 - 1e-7)
    u = (1.0 - (1.0 - v) ** (1.0 / b)) ** (1.0 / a)           # Kumaraswamy inverse CDF
    p = jax.nn.sigmoid(jnp.asarray(spec.slope)[g] * (u - jnp.asarray(spec.center)[g]))
    l = (jax.random.uniform(kl, (n,)) < p).astype(jnp.float32)
    means = spec.emb_sep * jnp.eye(spec.num_groups, spec.emb_dim)
    emb = means[g] + jax.random.normal(ke, (n, spec.emb_dim))
    return {"scores": u.astype(jnp.float32), "losses": l, "groups": g.astype(jnp.int32),
            "emb": emb.astype(jnp.float32), "p_loss": p.astype(jnp.float32)}


def kuma_cdf(x, a, b):
    """Kumaraswamy CDF 1 - (1 - x^a)^b on [0, 1]."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    return 1.0 - (1.0 - x ** a) ** b


def kuma_pdf(x, a, b):
    """Kumaraswamy density a b x^(a-1) (1 - x^a)^(b-1) on [0, 1]."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = a * b * x ** (a - 1) * (1.0 - x ** a) ** (b - 1)
    return np.nan_to_num(d, nan=0.0, posinf=0.0)


class Curves(NamedTuple):
    grid: np.ndarray      # [K] u values in [0, 1]
    risk_g: np.ndarray    # [G, K] R_g(u)
    routed_g: np.ndarray  # [G, K] F_g(u) = P(U < u | g)
    weights: np.ndarray   # [G]

    @property
    def risk(self) -> np.ndarray:
        return self.weights @ self.risk_g

    @property
    def routed(self) -> np.ndarray:
        return self.weights @ self.routed_g


def population_curves(spec: PopulationSpec, num: int = 20001) -> Curves:
    """Exact (numerical-integration) group risk and routed-fraction curves on [0, 1]."""
    check_spec(spec)
    t = np.linspace(0.0, 1.0, num)
    risk, routed = [], []
    for a, b, c, d in zip(spec.kuma_a, spec.kuma_b, spec.slope, spec.center):
        dens = kuma_pdf(t, a, b) / (1.0 + np.exp(-c * (t - d)))
        r = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(t))])
        risk.append(r)
        routed.append(kuma_cdf(t, a, b))
    return Curves(t, np.asarray(risk), np.asarray(routed), np.asarray(spec.weights, np.float64))


def curve_at(grid, curve, u):
    """Curve value at thresholds u (any shape; -inf -> curve[0], +inf -> curve[-1]). jnp."""
    return jnp.interp(jnp.clip(u, grid[0], grid[-1]), jnp.asarray(grid), jnp.asarray(curve))


# ----------------------------------------------------------------------------- tfds builder
@dataclasses.dataclass
class SyntheticPACConfig(tfds.core.BuilderConfig):
    sizes: tuple = (4000, 4000)       # (calibration pool, test)
    seed: int = 0


def synthetic_splits(seed: int = 0, sizes=(4000, 4000), spec: PopulationSpec | None = None) -> dict:
    """{"calibration", "test"}: numpy arrays of `sample` (what the builder stores), plus `index`."""
    spec = spec or PopulationSpec()
    out = {}
    for i, (name, n) in enumerate(zip(("calibration", "test"), sizes)):
        d = jax.device_get(sample(jax.random.PRNGKey(seed * 1000 + i), spec, int(n)))
        d = {k: np.asarray(v) for k, v in d.items()}
        d["groups"] = d["groups"].astype(np.int64)
        d["index"] = np.arange(int(n), dtype=np.int64)
        out[name] = d
    return out


class SyntheticPAC(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """Synthetic (score, loss, group, embedding) population of `PopulationSpec()` with known risk curves."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        SyntheticPACConfig(name="default", description="4 groups, 4k calibration pool / 4k test"),
        SyntheticPACConfig(name="tiny", description="4 groups, 300 / 300 (tests)", sizes=(300, 300)),
    ]

    def _info(self):
        spec = PopulationSpec()
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "scores": tfds.features.Scalar(dtype=np.float32),
                "losses": tfds.features.Scalar(dtype=np.float32),
                "groups": tfds.features.Scalar(dtype=np.int64),
                "emb": tfds.features.Tensor(shape=(spec.emb_dim,), dtype=np.float32),
                "p_loss": tfds.features.Scalar(dtype=np.float32),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            description="G-PAC synthetic population: U|g ~ Kumaraswamy, l|U,g ~ Bern(sigmoid(c_g(U-d_g))).",
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        data = synthetic_splits(c.seed, c.sizes)
        return {split: self._generate_examples(arr) for split, arr in data.items()}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["index"])):
            yield int(i), {k: v[i] for k, v in arrays.items()}


def load_synthetic(*, source: str = "tfds", config: str = "default", data_dir: str | None = None) -> dict:
    """{"calibration"|"test": {feature: array}} via the tfds builder or directly (identical arrays)."""
    if source not in ("tfds", "direct"):
        raise ValueError(f"source: expected 'tfds' or 'direct', got {source!r}")
    cfg = next((c for c in SyntheticPAC.BUILDER_CONFIGS if c.name == config), None)
    if cfg is None:
        raise ValueError(f"config: expected one of {[c.name for c in SyntheticPAC.BUILDER_CONFIGS]}, got {config!r}")
    if source == "direct":
        return synthetic_splits(cfg.seed, cfg.sizes)
    from jaxlab.core import datasets
    sources = datasets.prepare(SyntheticPAC, data_dir=data_dir, config=config)
    return {split: datasets.to_numpy(src) for split, src in sources.items()}
