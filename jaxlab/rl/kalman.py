"""Causal scalar Kalman filter over token log-ratios (KPO, arXiv 2602.10609), sequential and parallel.

State-space model per response (reset at the start of every row):
    x_t = x_{t-1} + w_t,  w_t ~ N(0, Q)      (latent "desired" log importance ratio, random walk)
    z_t = x_t + v_t,      v_t ~ N(0, V)      (observed token log-ratio)
    P-_t = P_{t-1} + Q ;  K_t = P-_t / (P-_t + V) ;  x_t = x_{t-1} + K_t (z_t - x_{t-1}) ;  P_t = (1-K_t) P-_t

P and K never read z, so the gains are a fixed per-position table (`kalman_gains`, float64, cached per
(T, Q, V, P0, init)) and the filter is the affine recurrence x_t = (1-K_t) x_{t-1} + K_t z_t with
data-independent coefficients. One `combine` composes two affine maps; `kalman_filter` folds it with
`lax.scan` (parallel=False) or `lax.associative_scan` (parallel=True, O(log T) depth).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

INITS = ("prior", "first_obs")


@functools.lru_cache(maxsize=64)
def _gains_cached(T: int, Q: float, V: float, P0: float, init: str) -> np.ndarray:
    K = np.empty(T, np.float64)
    P = float(P0)
    for t in range(T):
        if t == 0 and init == "first_obs":
            K[t] = 1.0          # x_1 = z_1 exactly; posterior variance = V
            P = float(V)
            continue
        Pp = P + Q
        K[t] = Pp / (Pp + V)
        P = (1.0 - K[t]) * Pp
    K.setflags(write=False)
    return K


def kalman_gains(T: int, *, Q: float, V: float = 1.0, P0: float = 1.0,
                 init: str = "prior") -> np.ndarray:
    """Per-position Kalman gains K_1..K_T of the random-walk model (float64, cached, read-only).

    Args:
      T: number of positions (>= 1).
      Q: process-noise variance (>= 0).
      V: measurement-noise variance (> 0).
      P0: prior variance of x_0 (>= 0); used with init="prior" (x_0 = the filter's `x0`).
      init: "prior" (start from x_0 with variance P0) or "first_obs" (x_1 = z_1, i.e. K_1 = 1).
    Returns:
      K_t: [T] float64 in [0, 1]; decreasing to the steady state `steady_state_gain(Q, V)`.

    >>> np.round(kalman_gains(3, Q=0.0, V=1.0, P0=1.0), 4).tolist()
    [0.5, 0.3333, 0.25]
    """
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    if not (np.isfinite(Q) and Q >= 0):
        raise ValueError(f"Q: expected a finite process-noise variance >= 0, got {Q!r}")
    if not (np.isfinite(V) and V > 0):
        raise ValueError(f"V: expected a finite measurement-noise variance > 0, got {V!r}")
    if not (np.isfinite(P0) and P0 >= 0):
        raise ValueError(f"P0: expected a finite prior variance >= 0, got {P0!r}")
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    return _gains_cached(int(T), float(Q), float(V), float(P0), init)


def ema_gains(T: int, *, alpha: float) -> np.ndarray:
    """A constant gain table K_t = alpha (a fixed-alpha EMA, the EMA-KPO ablation). Returns [T] float64."""
    if int(T) != T or T < 1:
        raise ValueError(f"T: expected a positive integer, got {T!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a gain in [0, 1], got {alpha!r}")
    return np.full(int(T), float(alpha), np.float64)


def steady_state_gain(Q: float, V: float = 1.0) -> float:
    """K_inf = P-_inf / (P-_inf + V) with P_inf = (-Q + sqrt(Q^2 + 4QV)) / 2 and P-_inf = P_inf + Q."""
    if Q < 0:
        raise ValueError(f"Q: expected >= 0, got {Q!r}")
    if V <= 0:
        raise ValueError(f"V: expected > 0, got {V!r}")
    P = (-Q + math.sqrt(Q * Q + 4.0 * Q * V)) / 2.0
    Pp = P + Q
    return Pp / (Pp + V)


def filter_weight_matrix(gains_t) -> np.ndarray:
    """W [T, T] with x_t = prod_{u<=t}(1-K_u) x_0 + sum_s W[t, s] z_s; W[t,s] = K_s prod_{u=s+1..t}(1-K_u).

    Lower-triangular; row t is the Jacobian d x_t / d z (the `grad="through"` weights). float64 numpy.
    """
    K = np.asarray(gains_t, np.float64)
    T = K.shape[0]
    W = np.zeros((T, T))
    for t in range(T):
        prod = 1.0
        for s in range(t, -1, -1):
            W[t, s] = K[s] * prod
            prod *= 1.0 - K[s]
    return W


def combine(e1, e2):
    """Composes affine maps x -> a x + b: first e1 (earlier), then e2 (later).

    (a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2). Associative; works elementwise on any shape,
    so it is both the `lax.scan` body and the `lax.associative_scan` operator.
    """
    a1, b1 = e1
    a2, b2 = e2
    return a2 * a1, a2 * b1 + b2


def _check_filter_inputs(z_bt, gains_t, mask_bt):
    if z_bt.ndim != 2:
        raise ValueError(f"z_bt: expected a [B, T] array, got shape {z_bt.shape}")
    if gains_t.ndim != 1 or gains_t.shape[0] < z_bt.shape[1]:
        raise ValueError(f"gains_t: expected a [T_max] table with T_max >= T={z_bt.shape[1]}, "
                         f"got shape {gains_t.shape}")
    if mask_bt is not None and mask_bt.shape != z_bt.shape:
        raise ValueError(f"mask_bt: expected shape {z_bt.shape} (like z_bt), got {mask_bt.shape}")


def kalman_filter(z_bt, gains_t, *, mask_bt=None, x0=0.0, parallel: bool = True, unroll: int = 1):
    """Causal filtered log-ratio x_hat_t = (1-K_t) x_hat_{t-1} + K_t z_t for every row.

    Each row is one response; the state resets to `x0` at its first position. Masked positions
    (mask False, e.g. pads after EOS or tool outputs) hold the state: x_hat_t = x_hat_{t-1}.
    The gain index is the position t (not the count of valid tokens), so the gains stay data-free.

    Args:
      z_bt: [B, T] float log-ratios (log pi_theta - log pi_old).
      gains_t: [T_max] gain table (T_max >= T; only the first T entries are used), e.g. `kalman_gains`.
      mask_bt: optional [B, T] bool, True on response tokens.
      x0: scalar or [B] initial state (0 = ratio 1, the on-policy prior).
      parallel: True uses `lax.associative_scan`, False `lax.scan`; both fold `combine`.
      unroll: `lax.scan` unroll factor (parallel=False only).
    Returns:
      x_hat_bt: [B, T], same dtype as z_bt. Differentiable in z (linear: x_hat = A x0 + W z).

    >>> K = kalman_gains(3, Q=0.0, V=1.0, P0=1.0)
    >>> [round(float(v), 4) for v in kalman_filter(jnp.array([[2.0, 2.0, 2.0]]), K)[0]]
    [1.0, 1.3333, 1.5]
    """
    z_bt = jnp.asarray(z_bt)
    if not jnp.issubdtype(z_bt.dtype, jnp.floating):
        z_bt = z_bt.astype(jnp.float32)
    gains_t = jnp.asarray(gains_t)
    _check_filter_inputs(z_bt, gains_t, mask_bt)
    B, T = z_bt.shape
    K = gains_t[:T].astype(z_bt.dtype)
    a = jnp.broadcast_to(1.0 - K, (B, T))
    b = K * z_bt
    if mask_bt is not None:
        m = jnp.asarray(mask_bt, bool)
        a = jnp.where(m, a, jnp.ones_like(a))
        b = jnp.where(m, b, jnp.zeros_like(b))
    x0_b = jnp.broadcast_to(jnp.asarray(x0, z_bt.dtype), (B,))
    if parallel:
        A, Bs = jax.lax.associative_scan(combine, (a, b), axis=1)
    else:
        def body(carry, elem):
            carry = combine(carry, elem)
            return carry, carry
        init = (jnp.ones((B,), z_bt.dtype), jnp.zeros((B,), z_bt.dtype))
        _, (A, Bs) = jax.lax.scan(body, init, (a.T, b.T), unroll=unroll)
        A, Bs = A.T, Bs.T
    return A * x0_b[:, None] + Bs


def kalman_filter_loop(z_bt, gains_t, *, mask_bt=None, x0=0.0) -> np.ndarray:
    """Reference float64 NumPy loop over t (the benchmark baseline and the test oracle). [B, T] -> [B, T]."""
    z = np.asarray(z_bt, np.float64)
    K = np.asarray(gains_t, np.float64)
    B, T = z.shape
    m = np.ones((B, T), bool) if mask_bt is None else np.asarray(mask_bt, bool)
    x = np.broadcast_to(np.asarray(x0, np.float64), (B,)).copy()
    out = np.empty((B, T))
    for t in range(T):
        x = np.where(m[:, t], x + K[t] * (z[:, t] - x), x)
        out[:, t] = x
    return out
