"""Policy-gradient losses of the GRPO family and KPO, as pure functions on [B, T] token arrays.

Every loss has the signature
    loss_fn(logp_bt, old_logp_bt, adv, mask_bt, *, agg="seq-mean-token-mean", log_ratio_clip=20., ...)
        -> (loss scalar, metrics dict of scalars)
with logp_bt [B, T] the current policy's token log-probs (differentiable), old_logp_bt [B, T] the
behaviour policy's, adv [B] (or [B, T] where token-level advantages make sense), mask_bt [B, T] bool.
The loss is the NEGATIVE surrogate (minimise it). Log-ratios are clamped to ±log_ratio_clip before
`exp` (as in tunix; heavy-tailed noise otherwise overflows into NaN).

Methods (spec §3-4):
  grpo          PPO clip on token ratios, optional dual clip (c=3 in verl/tunix)
  gspo          sequence ratio s_i = exp(mean_t z), clip (3e-4, 4e-4) (Zheng et al. 2507.18071)
  gspo_token    s_it = sg(s_i) pi/sg(pi) (verl `gspo`, tunix `gspo-token`), token-level advantages
  gmpo          geometric mean of sign-aware log-space clipped token ratios (verl `geo_mean`)
  kpo           token weight = Kalman-filtered ratio exp(x_hat_t), no clip (arXiv 2602.10609)
  kpo_clipped   PPO clip applied to the filtered ratio
  kpo_tr        ours: KPO-clipped value, plus a per-token trust region on the RAW ratio that stops
                the gradient of tokens whose own ratio left [1-eps, 1+eps] on the advantage's side.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlab.rl import diagnostics as dg
from jaxlab.rl.kalman import kalman_filter, kalman_gains
from jaxlab.rl.pg import clipped_surrogate

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
GRAD_MODES = ("stopgrad", "through")
sg = jax.lax.stop_gradient


# --------------------------------------------------------------------------------------- helpers
def aggregate(x_bt, mask_bt, mode: str = "seq-mean-token-mean", *, norm_const: float | None = None):
    """Reduces per-token values to a scalar.

    token-mean:               sum_it m x / sum_it m                        (DAPO / verl default)
    seq-mean-token-mean:      mean_i [ sum_t m x / |o_i| ]                 (original GRPO)
    seq-mean-token-sum:       mean_i [ sum_t m x ]
    seq-mean-token-sum-norm:  mean_i [ sum_t m x / norm_const ]            (Dr. GRPO; default T)
    The sequence means run over rows with at least one valid token.

    Args: x_bt [B, T]; mask_bt [B, T] bool. Returns: scalar.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"agg: expected one of {AGG_MODES}, got {mode!r}")
    m = jnp.asarray(mask_bt).astype(x_bt.dtype)
    if mode == "token-mean":
        return jnp.sum(x_bt * m) / jnp.maximum(jnp.sum(m), 1.0)
    n_b = jnp.sum(m, axis=1)
    s_b = jnp.sum(x_bt * m, axis=1)
    if mode == "seq-mean-token-mean":
        s_b = s_b / jnp.maximum(n_b, 1.0)
    elif mode == "seq-mean-token-sum-norm":
        c = float(x_bt.shape[1]) if norm_const is None else float(norm_const)
        if c <= 0:
            raise ValueError(f"norm_const: expected > 0, got {norm_const}")
        s_b = s_b / c
    valid = (n_b > 0).astype(x_bt.dtype)
    return jnp.sum(s_b * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def check_policy_inputs(logp_bt, old_logp_bt, adv, mask_bt, *, token_adv_ok: bool = True):
    """Validates shapes; returns (adv_bt [B, T] broadcast, mask_bt bool)."""
    if logp_bt.ndim != 2:
        raise ValueError(f"logp_bt: expected [B, T], got shape {logp_bt.shape}")
    if old_logp_bt.shape != logp_bt.shape:
        raise ValueError(f"old_logp_bt: expected shape {logp_bt.shape} like logp_bt, "
                         f"got {old_logp_bt.shape}")
    if mask_bt.shape != logp_bt.shape:
        raise ValueError(f"mask_bt: expected shape {logp_bt.shape} like logp_bt, got {mask_bt.shape}")
    B, T = logp_bt.shape
    adv = jnp.asarray(adv)
    if adv.shape == (B,):
        adv_bt = jnp.broadcast_to(adv[:, None], (B, T))
    elif adv.shape == (B, T) and token_adv_ok:
        adv_bt = adv
    else:
        want = f"[B]={(B,)} or [B, T]={(B, T)}" if token_adv_ok else f"[B]={(B,)}"
        raise ValueError(f"adv: expected shape {want}, got {adv.shape}")
    return adv_bt.astype(logp_bt.dtype), jnp.asarray(mask_bt, bool)


def log_ratio(logp_bt, old_logp_bt, mask_bt, *, log_ratio_clip: float = 20.0):
    """z = clamp(logp - old_logp, ±log_ratio_clip) on valid tokens, 0 elsewhere. [B, T]."""
    z = jnp.clip(logp_bt - old_logp_bt, -log_ratio_clip, log_ratio_clip)
    return jnp.where(mask_bt, z, 0.0)


def _ratio_metrics(z_bt, mask_bt, clipped_bt, prefix=""):
    z, m = sg(z_bt), mask_bt
    r = jnp.exp(z)
    return {
        f"{prefix}clip_frac": dg.masked_mean(clipped_bt.astype(z.dtype), m),
        f"{prefix}ratio_mean": dg.masked_mean(r, m),
        f"{prefix}ratio_max": jnp.max(jnp.where(m, r, 0.0)),
        f"{prefix}log_ratio_var": dg.masked_var(z, m),
        f"{prefix}log_ratio_absmax": jnp.max(jnp.where(m, jnp.abs(z), 0.0)),
    }


def _ppo_surrogate(ratio_bt, adv_bt, eps_low, eps_high, dual_clip):
    """min(r A, clip(r, 1-el, 1+eh) A), with max(., c A) for A < 0 when dual_clip=c. Returns (surr, clipped).

    The one implementation lives in `jaxlab.rl.pg.clipped_surrogate` (shared with FARL's PPO)."""
    return clipped_surrogate(ratio_bt, adv_bt, clip_eps=eps_low, clip_eps_high=eps_high, dual_clip=dual_clip)


def _check_eps(eps_low, eps_high, dual_clip=None):
    if not 0 <= eps_low < 1:
        raise ValueError(f"clip_eps: expected the lower clip range in [0, 1), got {eps_low}")
    if eps_high < 0:
        raise ValueError(f"clip_eps_high: expected >= 0, got {eps_high}")
    if dual_clip is not None and dual_clip <= 1:
        raise ValueError(f"dual_clip: expected a constant > 1 (e.g. 3), got {dual_clip}")


# ---------------------------------------------------------------------------------------- losses
def grpo_loss(logp_bt, old_logp_bt, adv, mask_bt, *, clip_eps: float = 0.2,
              clip_eps_high: float | None = None, dual_clip: float | None = None,
              agg: str = "seq-mean-token-mean", norm_const: float | None = None,
              log_ratio_clip: float = 20.0):
    """GRPO / PPO-clip: -agg_t min(r_t A, clip(r_t, 1-eps, 1+eps_high) A); r_t = exp(logp - old_logp).

    dual_clip=c additionally bounds the surrogate below by c A for negative advantages.
    Returns (loss, metrics) with clip_frac (either clip active), ratio stats.
    """
    adv_bt, mask_bt = check_policy_inputs(logp_bt, old_logp_bt, adv, mask_bt)
    eh = clip_eps if clip_eps_high is None else clip_eps_high
    _check_eps(clip_eps, eh, dual_clip)
    z = log_ratio(logp_bt, old_logp_bt, mask_bt, log_ratio_clip=log_ratio_clip)
    surr, clipped = _ppo_surrogate(jnp.exp(z), adv_bt, clip_eps, eh, dual_clip)
    loss = -aggregate(surr, mask_bt, agg, norm_const=norm_const)
    return loss, _ratio_metrics(z, mask_bt, clipped & mask_bt)


def gspo_loss(logp_bt, old_logp_bt, adv, mask_bt, *, clip_eps: float = 3e-4,
              clip_eps_high: float = 4e-4, token_level: bool = False,
              agg: str = "seq-mean-token-mean", norm_const: float | None = None,
              log_ratio_clip: float = 20.0):
    """GSPO: s_i = exp(mean_t z_it); -agg min(s A, clip(s, 1-el, 1+eh) A).

    token_level=False: sequence ratio with gradient through the mean (adv must be [B]).
    token_level=True (GSPO-token): s_it = sg(s_i) exp(logp_it - sg(logp_it)); adv may be [B, T].
    With [B] advantages and seq-mean aggregation both variants give the same value and gradient.
    """
    adv_bt, mask_bt = check_policy_inputs(logp_bt, old_logp_bt, adv, mask_bt,
                                          token_adv_ok=token_level)
    _check_eps(clip_eps, clip_eps_high)
    z = log_ratio(logp_bt, old_logp_bt, mask_bt, log_ratio_clip=log_ratio_clip)
    m = mask_bt.astype(z.dtype)
    log_s_b = jnp.sum(z * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
    if token_level:
        s_bt = jnp.exp(sg(log_s_b))[:, None] * jnp.exp(logp_bt - sg(logp_bt))
    else:
        s_bt = jnp.broadcast_to(jnp.exp(log_s_b)[:, None], z.shape)
    surr, clipped = _ppo_surrogate(s_bt, adv_bt, clip_eps, clip_eps_high, None)
    loss = -aggregate(surr, mask_bt, agg, norm_const=norm_const)
    met = _ratio_metrics(z, mask_bt, clipped & mask_bt)
    met["seq_ratio_mean"] = jnp.mean(jnp.exp(sg(log_s_b)))
    return loss, met


def gmpo_loss(logp_bt, old_logp_bt, adv, mask_bt, *, delta: float = 0.4,
              agg: str = "seq-mean-token-mean", norm_const: float | None = None,
              log_ratio_clip: float = 20.0):
    """GMPO (verl `geo_mean`): z_c = sgn(A) min(sgn(A) z, sgn(A) clamp(z, ±delta));
    ratio_i = exp(mean_t z_c); loss = -mean_i A_i ratio_i (broadcast per token and aggregated by `agg`,
    so seq-mean-token-mean is the paper's sequence mean). adv must be [B].
    """
    adv_bt, mask_bt = check_policy_inputs(logp_bt, old_logp_bt, adv, mask_bt, token_adv_ok=False)
    if delta <= 0:
        raise ValueError(f"delta: expected a log-space clip range > 0, got {delta}")
    z = log_ratio(logp_bt, old_logp_bt, mask_bt, log_ratio_clip=log_ratio_clip)
    sgn = jnp.sign(adv_bt)
    zc = sgn * jnp.minimum(sgn * z, sgn * jnp.clip(z, -delta, delta))
    m = mask_bt.astype(z.dtype)
    ratio_b = jnp.exp(jnp.sum(zc * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0))
    surr = adv_bt * ratio_b[:, None]
    loss = -aggregate(surr, mask_bt, agg, norm_const=norm_const)
    clipped = jnp.where(sgn > 0, z > delta,  # only the advantage-side bound binds
                        jnp.where(sgn < 0, z < -delta, False))
    met = _ratio_metrics(z, mask_bt, clipped & mask_bt)
    met["seq_ratio_mean"] = jnp.mean(sg(ratio_b))
    return loss, met


def filtered_log_ratio(logp_bt, old_logp_bt, mask_bt, *, gains_t=None, Q: float = 1e-6,
                       V: float = 1.0, P0: float = 1.0, init: str = "prior", x0: float = 0.0,
                       grad: str = "stopgrad", parallel: bool | None = None, method: str = "auto",
                       log_ratio_clip: float = 20.0):
    """(z [B, T], x_hat [B, T]): raw clamped log-ratio and its causal Kalman-filtered version.

    gains_t defaults to `kalman_gains(T, Q=Q, V=V, P0=P0, init=init)` (float64 numpy, cached, built
    outside the traced computation). grad="stopgrad" filters sg(z); "through" keeps d x_hat / d z = W.
    method/parallel choose the filter implementation (`kalman_filter`; default "auto" = the chunked
    filter on large arrays, the scan on small ones; the same values up to float rounding).
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad: expected one of {GRAD_MODES}, got {grad!r}")
    T = logp_bt.shape[1]
    if gains_t is None:
        gains_t = kalman_gains(T, Q=Q, V=V, P0=P0, init=init)
    z = log_ratio(logp_bt, old_logp_bt, mask_bt, log_ratio_clip=log_ratio_clip)
    x = kalman_filter(sg(z) if grad == "stopgrad" else z, gains_t, mask_bt=mask_bt, x0=x0,
                      parallel=parallel, method=method)
    return z, x


def kpo_loss(logp_bt, old_logp_bt, adv, mask_bt, *, clip_eps: float | None = None,
             clip_eps_high: float | None = None, raw_trust_region: bool = False,
             gains_t=None, Q: float = 1e-6, V: float = 1.0, P0: float = 1.0, init: str = "prior",
             x0: float = 0.0, grad: str = "stopgrad", parallel: bool | None = None, method: str = "auto",
             agg: str = "seq-mean-token-mean", norm_const: float | None = None,
             log_ratio_clip: float = 20.0):
    """KPO: token weight r_hat_t built from the filtered ratio r~_t = exp(x_hat_t).

    grad="stopgrad" (default): r_hat = sg(r~) exp(logp - sg logp) (value r~, gradient through the token's
    own log-prob; equals GRPO on-policy). grad="through": r_hat = r~ with x_hat differentiable in z.
    clip_eps=None:  loss = -agg r_hat A                       (KPO, the default)
    clip_eps=el:    loss = -agg min(r_hat A, clip(r_hat, 1-el, 1+eh) A)   (KPO-clipped; eps on r~;
                    eh = clip_eps_high, default el)
    raw_trust_region=True (ours, "kpo_tr"; needs clip_eps): additionally stop the gradient of
      tokens whose RAW ratio r_t is outside the band on the advantage's side (A>0, r>1+eh or A<0, r<1-el),
      which the smoothed ratio alone does not bound.
    Metrics add filtered-ratio stats (prefix "filt_") and switch frequency raw/filtered.
    """
    adv_bt, mask_bt = check_policy_inputs(logp_bt, old_logp_bt, adv, mask_bt)
    if clip_eps is None:
        if raw_trust_region or clip_eps_high is not None:
            raise ValueError("clip_eps: raw_trust_region and clip_eps_high need a clip range (clip_eps, e.g. 0.2); "
                             "clip_eps=None is the unclipped KPO loss")
    else:
        eh = clip_eps if clip_eps_high is None else clip_eps_high
        _check_eps(clip_eps, eh)
    z, x = filtered_log_ratio(logp_bt, old_logp_bt, mask_bt, gains_t=gains_t, Q=Q, V=V, P0=P0,
                              init=init, x0=x0, grad=grad, parallel=parallel, method=method,
                              log_ratio_clip=log_ratio_clip)
    r_f = jnp.exp(x)
    r_hat = sg(r_f) * jnp.exp(logp_bt - sg(logp_bt)) if grad == "stopgrad" else r_f
    if clip_eps is not None:
        surr, clipped = _ppo_surrogate(r_hat, adv_bt, clip_eps, eh, None)
    else:
        surr, clipped = r_hat * adv_bt, jnp.zeros(z.shape, bool)
    if raw_trust_region:
        r = jnp.exp(sg(z))
        out = ((adv_bt > 0) & (r > 1.0 + eh)) | ((adv_bt < 0) & (r < 1.0 - clip_eps))
        surr = jnp.where(out, sg(surr), surr)
        clipped = clipped | out
    loss = -aggregate(surr, mask_bt, agg, norm_const=norm_const)
    met = _ratio_metrics(z, mask_bt, clipped & mask_bt)
    xs = sg(x)
    met.update({
        "filt_ratio_mean": dg.masked_mean(jnp.exp(xs), mask_bt),
        "filt_ratio_max": jnp.max(jnp.where(mask_bt, jnp.exp(xs), 0.0)),
        "filt_log_ratio_var": dg.masked_var(xs, mask_bt),
        "switch_freq_raw": dg.switch_frequency(sg(z), mask_bt),
        "switch_freq_filt": dg.switch_frequency(xs, mask_bt),
    })
    return loss, met


kpo_clipped_loss = functools.partial(kpo_loss, clip_eps=0.2)
kpo_clipped_loss.__doc__ = "KPO-clipped: `kpo_loss(..., clip_eps=0.2)` (PPO clip on the filtered ratio)."
kpo_tr_loss = functools.partial(kpo_loss, clip_eps=0.2, raw_trust_region=True)
kpo_tr_loss.__doc__ = ("KPO-TR (ours): KPO-clipped plus a per-token trust region on the raw ratio; "
                       "`kpo_loss(..., clip_eps=0.2, raw_trust_region=True)`.")

POLICY_LOSSES = {
    "grpo": grpo_loss,
    "grpo_dual": functools.partial(grpo_loss, dual_clip=3.0),
    "gspo": gspo_loss,
    "gspo_token": functools.partial(gspo_loss, token_level=True),
    "gmpo": gmpo_loss,
    "kpo": kpo_loss,
    "kpo_clipped": kpo_clipped_loss,
    "kpo_tr": kpo_tr_loss,
}


def get_policy_loss(name: str, **hparams):
    """Looks up a loss by name and binds keyword hyperparameters. Unknown names raise ValueError."""
    if name not in POLICY_LOSSES:
        raise ValueError(f"method: expected one of {sorted(POLICY_LOSSES)}, got {name!r}")
    fn = POLICY_LOSSES[name]
    return functools.partial(fn, **hparams) if hparams else fn
