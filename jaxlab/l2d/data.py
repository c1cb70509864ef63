"""Data for the PiCCE miniature: a Gaussian mixture with known eta(x) and scikit-learn's digits.

Both are exposed as tensorflow-datasets ``GeneratorBasedBuilder``s (no downloads; build with
``jaxlab.core.datasets.prepare`` to array_record and read without TensorFlow). The plain functions
(:func:`gmm_splits`, :func:`digits_splits`) produce exactly the same arrays and are what the builders
call, so tests can check the two paths agree.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.datasets import LocalCodePath

SPLITS = ("train", "validation", "test")


# ----------------------------------------------------------------------------- Gaussian mixture
def gmm_means(key, *, num_classes: int = 10, dim: int = 20, scale: float = 1.0) -> jax.Array:
    """Class means ``[K, d]`` ~ N(0, scale^2 I) (the task; fixed by ``key``)."""
    return scale * jax.random.normal(key, (num_classes, dim))


def gmm_posterior(x, means) -> jax.Array:
    """Exact ``eta(x) = P(y | x)`` for equal priors and identity covariance: ``softmax(-|x-mu_k|^2/2)``.
    ``x: [N, d]``, ``means: [K, d]`` -> ``[N, K]``."""
    sq = ((x[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    return jax.nn.softmax(-0.5 * sq, axis=-1)


def gmm_sample(key, means, n: int):
    """``n`` points of the mixture: returns ``(x [n, d], y [n], eta [n, K])``."""
    k_y, k_x = jax.random.split(key)
    y = jax.random.randint(k_y, (n,), 0, means.shape[0])
    x = means[y] + jax.random.normal(k_x, (n, means.shape[1]))
    return x, y.astype(jnp.int32), gmm_posterior(x, means)


def gmm_splits(seed: int = 0, *, sizes=(20000, 5000, 5000), num_classes: int = 10, dim: int = 20,
               scale: float = 0.5) -> dict[str, dict[str, np.ndarray]]:
    """Train/validation/test splits of the Gaussian mixture (NumPy), each ``{x, y, eta, index}``."""
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"sizes must be three positive ints (train, validation, test), got {sizes}")
    key = jax.random.PRNGKey(seed)
    k_m, *k_s = jax.random.split(key, 4)
    means = gmm_means(k_m, num_classes=num_classes, dim=dim, scale=scale)
    out = {}
    for split, k, n in zip(SPLITS, k_s, sizes):
        x, y, eta = gmm_sample(k, means, int(n))
        out[split] = {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.int64),
                      "eta": np.asarray(eta, np.float32), "index": np.arange(int(n), dtype=np.int64)}
    return out


# ----------------------------------------------------------------------------- digits
def digits_splits(seed: int = 0, *, fractions=(0.6, 0.2, 0.2)) -> dict[str, dict[str, np.ndarray]]:
    """scikit-learn's bundled 8x8 digits (1,797 x 64, offline), shuffled with ``seed`` and split;
    features standardised with train statistics. Each split ``{x, y, index}``."""
    from sklearn.datasets import load_digits  # local import: only needed here

    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    data = load_digits()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    x, y = x[perm], y[perm]
    n_tr = int(round(fractions[0] * len(y)))
    n_va = int(round(fractions[1] * len(y)))
    bounds = {"train": (0, n_tr), "validation": (n_tr, n_tr + n_va), "test": (n_tr + n_va, len(y))}
    mu, sd = x[:n_tr].mean(0), x[:n_tr].std(0) + 1.0
    out = {}
    for split, (a, b) in bounds.items():
        out[split] = {"x": (x[a:b] - mu) / sd, "y": y[a:b], "index": np.arange(b - a, dtype=np.int64)}
    return out


# ----------------------------------------------------------------------------- tfds builders
@dataclasses.dataclass
class GmmConfig(tfds.core.BuilderConfig):
    sizes: tuple = (20000, 5000, 5000)
    num_classes: int = 10
    dim: int = 20
    scale: float = 0.5
    seed: int = 0


class GaussianMixtureL2D(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """K-class Gaussian mixture in d dimensions with the exact posterior eta(x) stored per example."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        GmmConfig(name="default", description="K=10, d=20, 20k/5k/5k"),
        GmmConfig(name="medium", description="K=10, d=20, 10k/2.5k/5k", sizes=(10000, 2500, 5000)),
        GmmConfig(name="small", description="K=10, d=20, 4k/1k/1k", sizes=(4000, 1000, 1000)),
        GmmConfig(name="tiny", description="K=10, d=20, 300/100/100 (tests)", sizes=(300, 100, 100)),
    ]

    def _info(self):
        c = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(c.dim,), dtype=np.float32),
                "y": tfds.features.Scalar(dtype=np.int64),
                "eta": tfds.features.Tensor(shape=(c.num_classes,), dtype=np.float32),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            description="Gaussian mixture with known eta(x) for multi-expert learning to defer (PiCCE).",
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        data = gmm_splits(c.seed, sizes=c.sizes, num_classes=c.num_classes, dim=c.dim, scale=c.scale)
        return {split: self._generate_examples(data[split]) for split in SPLITS}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["y"])):
            yield int(i), {k: v[i] for k, v in arrays.items()}


class DigitsL2D(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """scikit-learn digits (bundled with scikit-learn, no download), standardised, 60/20/20 split."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "x": tfds.features.Tensor(shape=(64,), dtype=np.float32),
                "y": tfds.features.Scalar(dtype=np.int64),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            description="sklearn load_digits for multi-expert learning to defer (PiCCE).",
        )

    def _split_generators(self, dl_manager):
        data = digits_splits(0)
        return {split: self._generate_examples(data[split]) for split in SPLITS}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["y"])):
            yield int(i), {k: v[i] for k, v in arrays.items()}


def load(name: str, *, source: str = "tfds", data_dir: str | None = None, config: str | None = None):
    """Loads ``{"train"|"validation"|"test": {feature: array}}`` for ``name in ("gmm", "digits")``.

    ``source="tfds"`` goes through the builders (array_record, cached in ``data_dir``);
    ``source="direct"`` calls the generating functions (identical arrays).
    """
    if name not in ("gmm", "digits"):
        raise ValueError(f"name must be 'gmm' or 'digits', got {name!r}")
    if source not in ("tfds", "direct"):
        raise ValueError(f"source must be 'tfds' or 'direct', got {source!r}")
    if source == "direct":
        if name == "digits":
            return digits_splits(0)
        cfg = next(c for c in GaussianMixtureL2D.BUILDER_CONFIGS if c.name == (config or "default"))
        return gmm_splits(cfg.seed, sizes=cfg.sizes, num_classes=cfg.num_classes, dim=cfg.dim, scale=cfg.scale)
    from jaxlab.core import datasets

    builder = DigitsL2D if name == "digits" else GaussianMixtureL2D
    kwargs = {} if name == "digits" else {"config": config or "default"}
    sources = datasets.prepare(builder, data_dir=data_dir, **kwargs)
    return {split: datasets.to_numpy(sources[split]) for split in SPLITS}
