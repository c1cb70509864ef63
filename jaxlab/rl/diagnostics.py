"""Diagnostics of token log-ratio series and training curves (KPO spec §7 metrics).

jnp functions (jit-able, pooled over the batch): `switch_frequency`, `mean_run_length`,
`low_freq_power_fraction`, `masked_mean`, `masked_var`. NumPy functions on host-side curves:
`spike_count`, `collapse_flags`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

OFF_POLICY_THRESHOLD = math.log(1.2)


def masked_mean(x_bt, mask_bt):
    """Mean of x over mask (0 when the mask is empty). Scalar."""
    m = mask_bt.astype(x_bt.dtype)
    return jnp.sum(x_bt * m) / jnp.maximum(jnp.sum(m), 1.0)


def masked_var(x_bt, mask_bt):
    """Variance (ddof=0) of x over mask. Scalar."""
    mu = masked_mean(x_bt, mask_bt)
    return masked_mean(jnp.square(x_bt - mu), mask_bt)


def _indicator_switches(z_bt, mask_bt, threshold):
    off = jnp.abs(z_bt) > threshold
    pair = mask_bt[:, 1:] & mask_bt[:, :-1]
    sw = jnp.sum((off[:, 1:] != off[:, :-1]) & pair)
    return sw, jnp.sum(pair)


def switch_frequency(z_bt, mask_bt, *, threshold: float = OFF_POLICY_THRESHOLD):
    """Fraction of adjacent valid token pairs where 1[|z_t| > threshold] flips. Scalar in [0, 1].

    z_bt: [B, T] log-ratios (raw or filtered); mask_bt: [B, T] bool. Default threshold log 1.2.
    """
    sw, pairs = _indicator_switches(z_bt, mask_bt, threshold)
    return sw / jnp.maximum(pairs, 1)


def mean_run_length(z_bt, mask_bt, *, threshold: float = OFF_POLICY_THRESHOLD):
    """Mean length of runs of constant 1[|z_t| > threshold] (contiguous masks). Scalar."""
    sw, _ = _indicator_switches(z_bt, mask_bt, threshold)
    rows = jnp.sum(jnp.any(mask_bt, axis=1))
    return jnp.sum(mask_bt) / jnp.maximum(rows + sw, 1)


def low_freq_power_fraction(z_bt, mask_bt, *, cutoff: float = 1.0 / 8.0):
    """Share of (non-DC) spectral power of the demeaned, masked series at frequencies < cutoff * f_s.

    Pooled over rows; white noise gives about 2 * cutoff. Scalar in [0, 1].
    """
    m = mask_bt.astype(z_bt.dtype)
    mu = jnp.sum(z_bt * m, axis=1, keepdims=True) / jnp.maximum(jnp.sum(m, 1, keepdims=True), 1.0)
    x = (z_bt - mu) * m
    p = jnp.square(jnp.abs(jnp.fft.rfft(x, axis=1)))
    f = jnp.fft.rfftfreq(z_bt.shape[1])
    nondc = f > 0
    low = jnp.sum(p * (nondc & (f < cutoff)))
    return low / jnp.maximum(jnp.sum(p * nondc), 1e-30)


def spike_count(norms, *, window: int = 20, factor: float = 5.0) -> int:
    """Number of steps whose value exceeds `factor` x the median of the previous `window` steps."""
    x = np.asarray(norms, np.float64).reshape(-1)
    n = 0
    for i in range(1, len(x)):
        ref = np.median(x[max(0, i - window):i])
        n += bool(x[i] > factor * ref)
    return int(n)


def collapse_flags(acc, entropy=None, *, frac: float = 0.5, min_entropy: float = 0.05,
                   min_peak: float = 0.05) -> np.ndarray:
    """Per-step collapse flag: accuracy < frac x its running peak (peak >= min_peak), or entropy < min_entropy.

    acc: [S] evaluation accuracies; entropy: optional [S]. Returns [S] bool.
    """
    acc = np.asarray(acc, np.float64).reshape(-1)
    peak = np.maximum.accumulate(acc)
    flag = (peak >= min_peak) & (acc < frac * peak)
    if entropy is not None:
        ent = np.asarray(entropy, np.float64).reshape(-1)
        if ent.shape != acc.shape:
            raise ValueError(f"entropy: expected shape {acc.shape} like acc, got {ent.shape}")
        flag |= ent < min_entropy
    return flag
