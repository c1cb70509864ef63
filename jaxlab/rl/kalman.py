"""Causal scalar Kalman filter over token log-ratios (KPO, arXiv 2602.10609), sequential and parallel.

State-space model per response (reset at the start of every row):
    x_t = x_{t-1} + w_t,  w_t ~ N(0, Q)      (latent "desired" log importance ratio, random walk)
    z_t = x_t + v_t,      v_t ~ N(0, V)      (observed token log-ratio)
    P-_t = P_{t-1} + Q ;  K_t = P-_t / (P-_t + V) ;  x_t = x_{t-1} + K_t (z_t - x_{t-1}) ;  P_t = (1-K_t) P-_t

P and K never read z, so the gains are a fixed per-position table (`kalman_gains`, float64, cached per
(T, Q, V, P0, init)) and the filter is the affine recurrence x_t = (1-K_t) x_{t-1} + K_t z_t with
data-independent coefficients. One `combine` composes two affine maps; `kalman_filter` folds it with
`lax.scan` or `lax.associative_scan` (O(log T) depth), or (the default for all but tiny arrays) runs it
"chunked": because the coefficients are known at trace time, every chunk of C positions is one shared
triangular [C, C] matmul of the whole array between a scale pass and an output pass, plus a short carry
recurrence over the chunk ends (issue 19).
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
_CHUNKS = (16, 8)                # chunk sizes tried at each level, largest first (measured: at C = 16 the
                                 # [B*T/C, C] @ [C, C] matmul runs near the CPU's matmul peak; 32 and 64
                                 # only add flops, 8 is slower per flop)
_DENSE_MAX = 128                 # a level this short (or shorter) is one dense [T, T] matmul
_HI = jax.lax.Precision.HIGHEST


def _tiny(dtype) -> float:
    """Smallest within-chunk product of (1-K) the scaled-prefix-sum trick accepts (keeps 1/R finite
    with ample headroom for |z| up to ~1e18 in float32)."""
    return 1e-20 if jnp.dtype(dtype) != jnp.float64 else 1e-200


@functools.lru_cache(maxsize=256)
def _dense_table(a_bytes: bytes, k_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(M^T [T, T], Aprod [T]) for x_t = a_t x_{t-1} + k_t b_t: M[t, s] = k_s prod_{u=s+1..t} a_u,
    Aprod_t = prod_{u<=t} a_u (float64 bytes in; entries are products of coefficients, no division)."""
    a = np.frombuffer(a_bytes, np.float64)
    k = np.frombuffer(k_bytes, np.float64)
    T = a.shape[0]
    M = np.zeros((T, T))
    for t in range(T):
        if t:
            M[t, :t] = M[t - 1, :t] * a[t]
        M[t, t] = 1.0
    return np.ascontiguousarray((M * k[None, :]).T), np.cumprod(a)


@functools.lru_cache(maxsize=256)
def _chunk_table(a_bytes: bytes, k_bytes: bytes, tiny: float):
    """Chunk plan for x_t = a_t x_{t-1} + k_t b_t (float64 bytes), or None if no chunk size keeps the
    within-chunk products above `tiny`.

    Returns (C, nC, S [nC*C], R [nC, C], a0 [nC], A [nC]): R[c, j] = prod_{u=1..j} a_{cC+u} (chunk-local,
    the first coefficient excluded so that a_{cC} = 0, e.g. K = 1 at t = 0, is allowed), S = k / R (the input
    scale), a0[c] = a_{cC} (so the carry's weight prod_{u=0..j} a_{cC+u} is a0[c] R[c, j]), A[c] = a0[c]
    R[c, C-1] (the whole chunk's product). Positions past T are padded with a = 1, k = 0 (they hold the
    state and are sliced off).
    """
    a = np.frombuffer(a_bytes, np.float64)
    k = np.frombuffer(k_bytes, np.float64)
    T = a.shape[0]
    for C in _CHUNKS:
        nC = -(-T // C)
        ap, kp = np.ones(nC * C), np.zeros(nC * C)
        ap[:T], kp[:T] = a, k
        ac = ap.reshape(nC, C)
        R = np.cumprod(np.concatenate([np.ones((nC, 1)), ac[:, 1:]], axis=1), axis=1)
        if R.min() >= tiny:
            return C, nC, (kp.reshape(nC, C) / R).reshape(-1), R, ac[:, 0].copy(), ac[:, 0] * R[:, -1]
    return None


def _affine_assoc(a, b, x0_b):
    """Fallback: associative scan of x_t = a_t x_{t-1} + b_t (a: numpy [T]; b: [B, T]; x0_b: [B])."""
    B, T = b.shape
    a_bt = jnp.broadcast_to(jnp.asarray(a, b.dtype), (B, T))
    A, Bs = jax.lax.associative_scan(combine, (a_bt, b), axis=1)
    return A * x0_b[:, None] + Bs


def _chunk_input(plan, b):
    """u = b * S on the padded [B, nC*C] grid: the one per-position scale in front of the matmul."""
    C, nC, S = plan[:3]
    T = b.shape[1]
    bp = jnp.pad(b, ((0, 0), (0, nC * C - T))) if nC * C > T else b
    return bp * jnp.asarray(S, b.dtype)


def _own_buffer(fn, b):
    """fn(b) computed in its own [B, T]-shaped loop. XLA:CPU emits scalar code for an elementwise loop whose
    output has a minor dimension of 16 or 32 (the matmul's [B*T/C, C] view of u, which it would otherwise
    fuse into the loop: measured 2.7x slower than the [B, T] loop), and a `lax.cond` is a fusion boundary
    it keeps. Both branches are fn; the predicate only has to be unknown at compile time."""
    return jax.lax.cond(b[0, 0] == b[0, 0], fn, fn, b)


def _chunk_states(plan, u, x0_b):
    """(y [B, nC, C], c [B, nC]) from u = `_chunk_input`, with x = (y + c) R on chunk n:
    y_j = sum_{i<=j} u_i, the chunk-local scaled prefix sums (ONE shared triangular [C, C] matmul of the
    whole array), and c_n = a0_n s_n, where s_n is the true state entering chunk n: s_0 = x0,
    s_n = A_{n-1} s_{n-1} + R_{n-1,C-1} y_{n-1,C-1}, the same kind of recurrence over nC positions, solved
    by `_affine` (its input is shifted by one position so that no concatenate reaches the output pass)."""
    C, nC, _, R, a0, A = plan
    B = u.shape[0]
    dt = u.dtype
    tri = jnp.asarray(np.triu(np.ones((C, C))), dt)                    # y = u @ tri
    y = jnp.dot(u.reshape(B * nC, C), tri, precision=_HI).reshape(B, nC, C)
    e_in = jnp.pad(y[:, :-1, -1] * jnp.asarray(R[:-1, -1], dt), ((0, 0), (1, 0)))
    s_in = _affine(np.concatenate([[1.0], A[:-1]]), np.ones(nC), e_in, x0_b)
    return y, jnp.asarray(a0, dt) * s_in


def _chunk_output(plan, y, c):
    """x [B, nC*C] = (y + c) R: the one pass after the matmul (one [T] table, so it vectorizes; the
    equivalent R y + Aprod s with two tables measured 1.4x slower)."""
    C, nC, _, R, _, _ = plan
    return ((y + c[:, :, None]) * jnp.asarray(R, y.dtype)).reshape(y.shape[0], nC * C)


def _affine(a: np.ndarray, k: np.ndarray, b, x0_b, own_buffer: bool = False):
    """x_t = a_t x_{t-1} + k_t b_t with x_{-1} = x0 and DATA-FREE coefficients (numpy float64 a, k).

    Within a chunk of C positions, x_j = R_j (sum_{i<=j} k_i b_i / R_i + a0 x_prev) (R: chunk-local products
    of a, a0: the chunk's first coefficient), so after one scale pass a shared lower-triangular [C, C]
    matmul of the whole [B*nC, C] array does every chunk at once; the states entering the chunks obey the
    same kind of recurrence over nC positions (recursively, down to one dense [T, T] matmul when T <= 128);
    one more pass adds the carry and applies R. b: [B, T]; x0_b: [B]; returns [B, T] in b's dtype.
    With own_buffer (the unmasked filter), the scale pass runs in its own [B, T]-shaped loop (see
    `_own_buffer`); the masked filter gets the same from the `lax.cond` that follows its scale pass.
    """
    B, T = b.shape
    dt = b.dtype
    ab, kb = (np.ascontiguousarray(v, np.float64).tobytes() for v in (a, k))
    if T <= _DENSE_MAX:
        Mt, Ap = _dense_table(ab, kb)
        return jnp.dot(b, jnp.asarray(Mt, dt), precision=_HI) + x0_b[:, None] * jnp.asarray(Ap, dt)
    plan = _chunk_table(ab, kb, _tiny(dt))
    if plan is None:                                  # e.g. gains ~1 (Q >> V): products underflow
        return _affine_assoc(a, b * jnp.asarray(k, dt), x0_b)
    fn = functools.partial(_chunk_input, plan)
    u = _own_buffer(fn, b) if own_buffer and b.size else fn(b)
    y, c = _chunk_states(plan, u, x0_b)
    return _chunk_output(plan, y, c)[:, :T]


def _scan_affine(a_bt, b_bt, x0_b, unroll):
    """lax.scan of x_t = a_t x_{t-1} + b_t carrying only the state [B] (a_bt, b_bt: [B, T])."""
    def body(x, elem):
        a_t, b_t = elem
        x = a_t * x + b_t
        return x, x
    _, X = jax.lax.scan(body, x0_b, (a_bt.T, b_bt.T), unroll=unroll)
    return X.T


def _prefix_lengths(m):
    """(ok, n_b): ok = every row of the [B, T] bool mask is valid positions followed only by pads (no holes,
    no leading pads); n_b = valid positions per row (int32 [B]).

    One variadic reduction (count and sum of valid positions, read once): n ones at distinct positions
    sum to at least 0 + 1 + ... + (n-1), with equality iff they are exactly positions 0..n-1.
    """
    B, T = m.shape
    if T > 65536:                                     # the position sum could overflow int32
        n_b = jnp.sum(m, axis=1, dtype=jnp.int32)
        return (jnp.all(m[:, 1:] <= m[:, :-1]) if T > 1 else jnp.asarray(True)), n_b
    t = jnp.arange(T, dtype=jnp.int32)[None, :]
    zero = jnp.int32(0)
    n_b, s_b = jax.lax.reduce((m.astype(jnp.int32), jnp.where(m, t, zero)), (zero, zero),
                              lambda p, q: (p[0] + q[0], p[1] + q[1]), (1,))
    tri = jnp.where(n_b % 2 == 0, (n_b // 2) * (n_b - 1), n_b * ((n_b - 1) // 2))   # n(n-1)/2, no overflow
    return jnp.all(s_b == tri), n_b


def _hold_last(x_bt, last_b, n_b, x0_b):
    """where(t < n_b, x_t, last_b), with x0 for an empty row (pads hold the last valid state)."""
    last = jnp.where(n_b > 0, last_b, x0_b)
    valid = jnp.arange(x_bt.shape[1], dtype=n_b.dtype)[None, :] < n_b[:, None]
    return jnp.where(valid, x_bt, last[:, None])


def _filter_masked_small(z0, K_np, m, ok, n_b, x0_b):
    """The masked filter where no chunk plan applies (T <= _DENSE_MAX, or gains near 1): x from `_affine`
    with pads holding (suffix pads) or the sequential scan (any other mask), chosen by `lax.cond`."""
    def suffix_pads(z0, x0_b):
        x = _affine(1.0 - K_np, K_np, z0, x0_b)
        last = jnp.take_along_axis(x, jnp.maximum(n_b - 1, 0)[:, None], 1)[:, 0]
        return _hold_last(x, last, n_b, x0_b)

    def holes(z0, x0_b):
        K = jnp.asarray(K_np, z0.dtype)
        return _scan_affine(jnp.where(m, 1.0 - K, 1.0), K * z0, x0_b, 1)

    return jax.lax.cond(ok, suffix_pads, holes, z0, x0_b)


def _filter_chunked(z_bt, K_np, mask_bt, x0_b):
    """Exact filter via `_affine`; masks with suffix pads only take the fast path, any other mask (holes,
    leading pads) the sequential scan, chosen at run time with `lax.cond`.

    With a mask, the scale pass runs before the cond (so it fuses with z's producer, e.g. the log-ratio,
    in a [B, T]-shaped loop) and the output pass after it (so it fuses with x's consumers); the cond
    returns the matmul's y, the chunk carries and the last valid state, or the scan's x in y's place.
    """
    a = 1.0 - K_np
    if mask_bt is None:
        return _affine(a, K_np, z_bt, x0_b, own_buffer=True)
    B, T = z_bt.shape
    dt = z_bt.dtype
    m = jnp.asarray(mask_bt, bool)
    ok, n_b = _prefix_lengths(m)
    z0 = jnp.where(m, z_bt, 0.0)                      # pads may hold anything (inf, nan): never read them
    plan = None if T <= _DENSE_MAX else _chunk_table(a.tobytes(), K_np.tobytes(), _tiny(dt))
    if plan is None:
        return _filter_masked_small(z0, K_np, m, ok, n_b, x0_b)
    C, nC, _, R, _, _ = plan
    Rf = jnp.asarray(R.reshape(-1), dt)

    def suffix_pads(u, x0_b):
        # Valid positions form a prefix, so they equal the unmasked filter (causality).
        y, c = _chunk_states(plan, u, x0_b)
        i = jnp.maximum(n_b - 1, 0)                   # the last valid position, from y and c
        y_i = jnp.take_along_axis(y.reshape(B, nC * C), i[:, None], 1)[:, 0]
        c_i = jnp.take_along_axis(c, (i // C)[:, None], 1)[:, 0]
        return y.reshape(B, nC * C), c, (y_i + c_i) * Rf[i]

    def holes(u, x0_b):                               # the sequential scan (measured faster than the
        K = jnp.asarray(K_np, dt)                     # associative scan with a mask on the 2-core CPU);
        b = (u * Rf)[:, :T]                           # u R = K z on valid positions, 0 on pads
        x = _scan_affine(jnp.where(m, 1.0 - K, 1.0), b, x0_b, 1)
        return jnp.pad(x, ((0, 0), (0, nC * C - T))), jnp.zeros((B, nC), dt), jnp.zeros((B,), dt)

    y, c, last = jax.lax.cond(ok, suffix_pads, holes, _chunk_input(plan, z0), x0_b)
    x = _hold_last(_chunk_output(plan, y.reshape(B, nC, C), c)[:, :T], last, n_b, x0_b)
    return jnp.where(ok, x, y[:, :T])


_AUTO_MIN_SIZE = 8192             # B*T from which "auto" picks the chunked filter


def _auto_method(B: int, T: int, concrete: bool) -> str:
    """Measured on the 2-core CPU (issue 19, interleaved in one process): the sequential scan wins or ties
    on tiny arrays (8x256: 1.2x the elementwise floor for both unmasked, 1.3x vs 1.5x masked), the
    chunked filter from B*T = 8192 on (16x512: 1.4x vs 1.8x; 64x1024: 2x vs 4x; inside the KPO loss at
    128x96 it is 15% faster than the scan); gains that are traced values cannot be chunked."""
    if not concrete:
        return "associative"
    return "chunked" if (B * T >= _AUTO_MIN_SIZE and T >= 64) else "scan"


def kalman_filter(z_bt, gains_t, *, mask_bt=None, x0=0.0, parallel: bool | None = None,
                  unroll: int = 1, method: str = "auto"):
    """Causal filtered log-ratio x_hat_t = (1-K_t) x_hat_{t-1} + K_t z_t for every row.

    Each row is one response; the state resets to `x0` at its first position. Masked positions
    (mask False, e.g. pads after EOS or tool outputs) hold the state: x_hat_t = x_hat_{t-1}.
    The gain index is the position t (not the count of valid tokens), so the gains stay data-free.

    Implementations (all exact up to float rounding; the same values and gradients):
      "scan"         `lax.scan` folding `combine` over t (O(T) sequential steps).
      "associative"  `lax.associative_scan` of `combine` (O(log T) depth).
      "chunked"      uses that the gains are data-free: in chunks of C = 16 positions
                     x_j = R_j (sum_{i<=j} K_i z_i / R_i + a0 x_prev) (R: products of 1-K known at
                     trace time), i.e. a scale pass, ONE shared triangular [C, C] matmul of the whole
                     array, a recursive carry over the chunk ends and one output pass (the first and
                     last fuse with z's producer and x's consumers). Masks whose rows are valid tokens then
                     pads take this path too (pads hold the last valid state); masks with holes or
                     leading pads use the sequential scan (chosen at run time by `lax.cond`). Needs a
                     concrete (non-traced) gain table; falls back to "associative" otherwise.
      "auto"         (default) "chunked" for B*T >= 8192 (and T >= 64), "scan" below (faster there).

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
