"""Causal scalar Kalman filter over token log-ratios (KPO, arXiv 2602.10609), sequential and parallel.

State-space model per response (reset at the start of every row):
    x_t = x_{t-1} + w_t,  w_t ~ N(0, Q)      (latent "desired" log importance ratio, random walk)
    z_t = x_t + v_t,      v_t ~ N(0, V)      (observed token log-ratio)
    P-_t = P_{t-1} + Q ;  K_t = P-_t / (P-_t + V) ;  x_t = x_{t-1} + K_t (z_t - x_{t-1}) ;  P_t = (1-K_t) P-_t

P and K never read z, so the gains are a fixed per-position table (`kalman_gains`, float64, cached per
(T, Q, V, P0, init)) and the filter is the affine recurrence x_t = (1-K_t) x_{t-1} + K_t z_t with
data-independent coefficients. One `combine` composes two affine maps; `kalman_filter` folds it with
`lax.scan` or `lax.associative_scan` (O(log T) depth), or (the default for T >= 64) runs it "chunked":
because the coefficients are known at trace time, every chunk of C positions is one shared triangular
[C, C] matmul of the whole array plus a short carry recurrence over the chunk ends (issue 19).
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


METHODS = ("auto", "scan", "associative", "chunked")
_CHUNKS = (64, 32, 16, 8)        # chunk sizes tried at each level, largest first
_DENSE_MAX = 128                 # a level this short (or shorter) is one dense [T, T] matmul


def _tiny(dtype) -> float:
    """Smallest within-chunk product of (1-K) the scaled-prefix-sum trick accepts (keeps 1/R finite
    with ample headroom for |z| up to ~1e18 in float32)."""
    return 1e-20 if jnp.dtype(dtype) != jnp.float64 else 1e-200


@functools.lru_cache(maxsize=256)
def _dense_table(a_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(M^T [T, T], Aprod [T]) for x_t = a_t x_{t-1} + b_t: M[t, s] = prod_{u=s+1..t} a_u, Aprod_t = prod_{u<=t} a_u."""
    a = np.frombuffer(a_bytes, np.float64)
    T = a.shape[0]
    M = np.zeros((T, T))
    for t in range(T):
        if t:
            M[t, :t] = M[t - 1, :t] * a[t]
        M[t, t] = 1.0
    return np.ascontiguousarray(M.T), np.cumprod(a)


@functools.lru_cache(maxsize=256)
def _chunk_table(a_bytes: bytes, tiny: float):
    """Chunk plan for the affine recurrence with coefficients `a` (float64 bytes), or None if no chunk
    size keeps the within-chunk products above `tiny`.

    Returns (C, nC, R [nC, C], Aprod [nC, C]): R[c, j] = prod_{u=1..j} a_{cC+u} (chunk-local, the first
    coefficient excluded so that a_{cC} = 0, e.g. K = 1 at t = 0, is allowed), Aprod[c, j] = prod_{u=0..j}.
    Positions past T are padded with a = 1 (b = 0): they hold the state and are sliced off.
    """
    a = np.frombuffer(a_bytes, np.float64)
    T = a.shape[0]
    for C in _CHUNKS:
        nC = -(-T // C)
        ap = np.ones(nC * C)
        ap[:T] = a
        ac = ap.reshape(nC, C)
        R = np.cumprod(np.concatenate([np.ones((nC, 1)), ac[:, 1:]], axis=1), axis=1)
        if R.min() >= tiny:
            return C, nC, R, np.cumprod(ac, axis=1)
    return None


def _affine_assoc(a, b, x0_b):
    """Fallback: associative scan of x_t = a_t x_{t-1} + b_t (a: numpy [T]; b: [B, T]; x0_b: [B])."""
    B, T = b.shape
    a_bt = jnp.broadcast_to(jnp.asarray(a, b.dtype), (B, T))
    A, Bs = jax.lax.associative_scan(combine, (a_bt, b), axis=1)
    return A * x0_b[:, None] + Bs


def _affine_chunked(a: np.ndarray, b, x0_b, scale=None):
    """x_t = a_t x_{t-1} + b_t scale_t with x_{-1} = x0 and DATA-FREE coefficients (numpy float64 a, scale).

    Within a chunk of C positions, x_j = R_j sum_{i<=j} b_i / R_i + Aprod_j x_prev (R, Aprod: chunk-local
    products of a), so one shared lower-triangular [C, C] matmul of the whole [B*nC, C] array does every
    chunk at once; the chunk-end states then obey the same kind of recurrence with coefficients
    Aprod[:, -1] over nC positions (recursively, down to one dense [T, T] matmul when T <= 128).
    b: [B, T]; x0_b: [B]; returns [B, T] in b's dtype.
    """
    B, T = b.shape
    dt = b.dtype
    hi = jax.lax.Precision.HIGHEST
    scale = np.ones(T) if scale is None else scale
    if T <= _DENSE_MAX:
        Mt, Ap = _dense_table(np.ascontiguousarray(a, np.float64).tobytes())
        Mt = Mt * scale[:, None]                      # fold the input scale into the matrix rows
        return jnp.dot(b, jnp.asarray(Mt, dt), precision=hi) + x0_b[:, None] * jnp.asarray(Ap, dt)
    plan = _chunk_table(np.ascontiguousarray(a, np.float64).tobytes(), _tiny(dt))
    if plan is None:                                  # e.g. gains ~1 (Q >> V): products underflow
        return _affine_assoc(a, b * jnp.asarray(scale, dt), x0_b)
    C, nC, R, Ap = plan
    sp = np.zeros(nC * C)
    sp[:T] = scale
    bp = jnp.pad(b, ((0, 0), (0, nC * C - T))) if nC * C > T else b
    u = (bp.reshape(B, nC, C) * jnp.asarray(sp.reshape(nC, C) / R, dt)).reshape(B * nC, C)
    L_t = np.triu(np.ones((C, C)))                    # y_j = sum_{i<=j} u_i  (u @ L^T)
    y = jnp.dot(u, jnp.asarray(L_t, dt), precision=hi).reshape(B, nC, C)
    y_end = y[:, :, -1] * jnp.asarray(R[:, -1], dt)   # chunk-local state at each chunk's end
    s = _affine_chunked(Ap[:, -1], y_end, x0_b)       # true state at each chunk's end  [B, nC]
    s_prev = jnp.concatenate([x0_b[:, None], s[:, :-1]], axis=1)
    x = y * jnp.asarray(R, dt) + jnp.asarray(Ap, dt) * s_prev[:, :, None]
    x = x.reshape(B, nC * C)
    return x[:, :T] if nC * C > T else x


def _scan_affine(a_bt, b_bt, x0_b, unroll):
    """lax.scan of x_t = a_t x_{t-1} + b_t carrying only the state [B] (a_bt, b_bt: [B, T])."""
    def body(x, elem):
        a_t, b_t = elem
        x = a_t * x + b_t
        return x, x
    _, X = jax.lax.scan(body, x0_b, (a_bt.T, b_bt.T), unroll=unroll)
    return X.T


def _is_prefix_mask(m):
    """True iff every row is valid positions followed only by pads (no holes, no leading pads)."""
    return jnp.all(m[:, 1:] <= m[:, :-1]) if m.shape[1] > 1 else jnp.asarray(True)


def _filter_chunked(z_bt, K_np, mask_bt, x0_b):
    """Exact filter via `_affine_chunked`; masks with suffix pads only take the fast path, any other
    mask (holes, leading pads) the sequential scan, chosen at run time with `lax.cond`."""
    a = 1.0 - K_np
    if mask_bt is None:
        return _affine_chunked(a, z_bt, x0_b, scale=K_np)
    m = jnp.asarray(mask_bt, bool)

    def suffix_pads(z, x0_b):
        # Valid positions form a prefix, so they equal the unmasked filter (causality); pads hold the
        # last valid state (x0 for an empty row).
        x = _affine_chunked(a, jnp.where(m, z, 0.0), x0_b, scale=K_np)
        n_b = jnp.sum(m, axis=1)
        last = jnp.take_along_axis(x, jnp.maximum(n_b - 1, 0)[:, None], axis=1)[:, 0]
        last = jnp.where(n_b > 0, last, x0_b)
        return jnp.where(m, x, last[:, None])

    def holes(z, x0_b):                               # the sequential scan (measured faster than the
        K = jnp.asarray(K_np, z.dtype)                # associative scan with a mask on the 2-core CPU)
        a_bt = jnp.where(m, 1.0 - K, 1.0)
        b_bt = jnp.where(m, K * z, 0.0)
        return _scan_affine(a_bt, b_bt, x0_b, 1)

    return jax.lax.cond(_is_prefix_mask(m), suffix_pads, holes, z_bt, x0_b)


def _auto_method(B: int, T: int, concrete: bool) -> str:
    """Measured on the 2-core CPU (benchmarks/kalman.py): the sequential scan wins on small arrays
    (B*T < 32768, e.g. 8x256: 1.1x the elementwise floor vs 3.5x), the chunked filter on large ones;
    gains that are traced values cannot be chunked."""
    if not concrete:
        return "associative"
    return "chunked" if (B * T >= 32768 and T >= 64) else "scan"


def kalman_filter(z_bt, gains_t, *, mask_bt=None, x0=0.0, parallel: bool | None = None,
                  unroll: int = 1, method: str = "auto"):
    """Causal filtered log-ratio x_hat_t = (1-K_t) x_hat_{t-1} + K_t z_t for every row.

    Each row is one response; the state resets to `x0` at its first position. Masked positions
    (mask False, e.g. pads after EOS or tool outputs) hold the state: x_hat_t = x_hat_{t-1}.
    The gain index is the position t (not the count of valid tokens), so the gains stay data-free.

    Implementations (all exact up to float rounding; the same values and gradients):
      "scan"         `lax.scan` folding `combine` over t (O(T) sequential steps).
      "associative"  `lax.associative_scan` of `combine` (O(log T) depth).
      "chunked"      uses that the gains are data-free: in chunks of C positions
                     x_j = R_j sum_{i<=j} K_i z_i / R_i + Aprod_j x_prev (R, Aprod: products of 1-K
                     known at trace time), i.e. ONE shared triangular [C, C] matmul of the whole array
                     plus a recursive carry over the chunk ends. Masks whose rows are valid tokens then
                     pads take this path too (pads hold the last valid state); masks with holes or
                     leading pads use the sequential scan (chosen at run time by `lax.cond`). Needs a
                     concrete (non-traced) gain table; falls back to "associative" otherwise.
      "auto"         (default) "chunked" for B*T >= 32768 (and T >= 64), "scan" below (faster there).

    Args:
      z_bt: [B, T] float log-ratios (log pi_theta - log pi_old).
      gains_t: [T_max] gain table (T_max >= T; only the first T entries are used), e.g. `kalman_gains`.
      mask_bt: optional [B, T] bool, True on response tokens.
      x0: scalar or [B] initial state (0 = ratio 1, the on-policy prior).
      parallel: legacy switch: True = method "associative", False = "scan" (overrides `method`).
      unroll: `lax.scan` unroll factor (method "scan" only).
      method: one of "auto", "scan", "associative", "chunked".
    Returns:
      x_hat_bt: [B, T], same dtype as z_bt. Differentiable in z (linear: x_hat = A x0 + W z).

    >>> K = kalman_gains(3, Q=0.0, V=1.0, P0=1.0)
    >>> [round(float(v), 4) for v in kalman_filter(jnp.array([[2.0, 2.0, 2.0]]), K)[0]]
    [1.0, 1.3333, 1.5]
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if parallel is not None:
        method = "associative" if parallel else "scan"
    z_bt = jnp.asarray(z_bt)
    if not jnp.issubdtype(z_bt.dtype, jnp.floating):
        z_bt = z_bt.astype(jnp.float32)
    concrete = not isinstance(gains_t, jax.core.Tracer)
    K_np = np.asarray(gains_t, np.float64) if concrete else None
    gains_t = jnp.asarray(gains_t)
    _check_filter_inputs(z_bt, gains_t, mask_bt)
    B, T = z_bt.shape
    x0_b = jnp.broadcast_to(jnp.asarray(x0, z_bt.dtype), (B,))
    if method == "auto":
        method = _auto_method(B, T, concrete)
    if method == "chunked":
        if not concrete:
            method = "associative"
        else:
            out_dtype = z_bt.dtype
            cdt = jnp.float64 if out_dtype == jnp.float64 else jnp.float32
            x = _filter_chunked(z_bt.astype(cdt), K_np[:T], mask_bt, x0_b.astype(cdt))
            return x.astype(out_dtype)
    K = gains_t[:T].astype(z_bt.dtype)
    a = jnp.broadcast_to(1.0 - K, (B, T))
    b = K * z_bt
    if mask_bt is not None:
        m = jnp.asarray(mask_bt, bool)
        a = jnp.where(m, a, jnp.ones_like(a))
        b = jnp.where(m, b, jnp.zeros_like(b))
    if method == "associative":
        A, Bs = jax.lax.associative_scan(combine, (a, b), axis=1)
        return A * x0_b[:, None] + Bs

    return _scan_affine(a, b, x0_b, unroll)


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
