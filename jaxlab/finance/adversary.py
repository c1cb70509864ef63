"""Macro adversary of the robust-trading paper (B, arXiv 2601.17008): a Gaussian policy on the macro
vector whose sample is squashed by tanh into the l-inf ball of radius eps, trained by REINFORCE on the
NEGATIVE trader return (zero-sum).

delta = eps * tanh(u), u ~ N(mu(m), sigma(m)^2), so ||delta||_inf <= eps always (tanh(u) in [-1, 1], and
`project_delta` clips numerically at the edge). The score function uses log N(u; mu, sigma) of the
pre-squash sample u (the squashing is a fixed reparameterisation of the action; REINFORCE needs only
the log-density of what was sampled).

Sign: the public code minimises -sum log pi * V^ with V^ the normalised discounted *trader* returns,
which pushes the adversary towards macro shifts that help the trader. We implement the zero-sum sign
(advantage = -V^) by default; `zero_sum=False` reproduces the code (the discrepancy is recorded in
notes/robust_trading.md).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class AdversaryPolicy(nn.Module):
    """MLP Gaussian policy on the macro vector: m [B, K] -> (mean [B, K] in (-1, 1) via tanh, std [B, K] via
    sigmoid scaled into (min_std, min_std + 1))."""
    hidden: int = 32
    min_std: float = 0.05

    @nn.compact
    def __call__(self, m_bk):
        h = nn.tanh(nn.Dense(self.hidden)(m_bk))
        mean = nn.tanh(nn.Dense(m_bk.shape[-1], kernel_init=nn.initializers.zeros)(h))
        std = self.min_std + nn.sigmoid(nn.Dense(m_bk.shape[-1], kernel_init=nn.initializers.zeros)(h))
        return mean, std


def _check_eps(eps):
    if isinstance(eps, (int, float)) and eps < 0:
        raise ValueError(f"eps: expected a radius >= 0, got {eps}")


def project_delta(u, *, eps):
    """delta = eps * tanh(u), clipped to [-eps, eps] (exact at the tanh edge). u: [..., K] -> [..., K]."""
    _check_eps(eps)
    return jnp.clip(eps * jnp.tanh(u), -eps, eps)


def sample_delta(key, mean, std, *, eps):
    """u ~ N(mean, std^2), delta = project_delta(u). Returns (delta, u, log N(u; mean, std) summed over K)."""
    _check_eps(eps)
    u = mean + std * jax.random.normal(key, mean.shape, mean.dtype)
    return project_delta(u, eps=eps), u, gaussian_log_prob(u, mean, std)


def gaussian_log_prob(u, mean, std):
    """sum_k log N(u_k; mean_k, std_k^2). [..., K] -> [...]."""
    z = (u - mean) / std
    return jnp.sum(-0.5 * z ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi), -1)


def discounted_returns(r_t, *, gamma=0.99):
    """G_t = sum_{s>=t} gamma^(s-t) r_s along the last axis via a reversed lax.scan. r_t: [..., T]."""
    def body(g, r):
        g = r + gamma * g
        return g, g
    _, g = jax.lax.scan(body, jnp.zeros(r_t.shape[:-1], r_t.dtype), jnp.moveaxis(r_t, -1, 0), reverse=True)
    return jnp.moveaxis(g, 0, -1)


def adversary_reinforce_loss(logp_n, trader_returns_n, *, mask_n=None, zero_sum=True, normalize=True, eps=1e-8):
    """REINFORCE loss for the adversary: -sum(log pi * A * mask) / sum(mask) with A = -V^ (zero-sum) or +V^
    (the public code), V^ the trader returns normalised over the masked entries.

    Args: logp_n [N] log-probabilities of the adversary's samples; trader_returns_n [N] (discounted) trader
    returns following each sample; mask_n [N] (augmented steps only) or None.
    Returns: [] loss (minimise it).
    """
    m = jnp.ones_like(logp_n) if mask_n is None else mask_n.astype(logp_n.dtype)
    n = jnp.maximum(m.sum(), 1.0)
    v = jax.lax.stop_gradient(trader_returns_n)
    if normalize:
        mu = jnp.sum(v * m) / n
        sd = jnp.sqrt(jnp.sum(m * (v - mu) ** 2) / n)
        v = (v - mu) / (sd + eps)
    adv = -v if zero_sum else v
    return -jnp.sum(logp_n * adv * m) / n
