"""Closed forms and reference parity for schedules, forward noising, DDPM and DDIM steps (spec tests 1-5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import diffusion as D

T = 100


# ---- NumPy transcription of diffusers' DDPMScheduler.step / DDIMScheduler.step (float64) ----
def ref_ddpm_step(abar, x, t, eps, noise, clip=True):
    a_t = abar[t]
    a_p = abar[t - 1] if t - 1 >= 0 else 1.0
    b_t, b_p = 1 - a_t, 1 - a_p
    cur_a = a_t / a_p
    cur_b = 1 - cur_a
    x0 = (x - b_t**0.5 * eps) / a_t**0.5
    if clip:
        x0 = np.clip(x0, -1, 1)
    mean = (a_p**0.5 * cur_b / b_t) * x0 + (cur_a**0.5 * b_p / b_t) * x
    if t > 0:
        var = max(b_p / b_t * cur_b, 1e-20)
        mean = mean + var**0.5 * noise
    return mean


def ref_ddim_step(abar, x, t, n_inf, eps, clip=True, eta=0.0, noise=None):
    t_p = t - T // n_inf
    a_t = abar[t]
    a_p = abar[t_p] if t_p >= 0 else 1.0
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    if clip:
        x0 = np.clip(x0, -1, 1)
    var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
    std = eta * var**0.5
    out = a_p**0.5 * x0 + (1 - a_p - std**2) ** 0.5 * eps
    if eta > 0:
        out = out + std * noise
    return out


def test_cosine_betas_match_formula_and_cap():
    betas = D.cosine_betas(T)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
    i = np.arange(T)
    np.testing.assert_allclose(betas, np.minimum(1 - f((i + 1) / T) / f(i / T), 0.999), rtol=1e-12)
    assert betas.max() <= 0.999 and betas[-1] == pytest.approx(0.999)
    assert np.all(np.diff(betas) > 0)  # increasing
    s = D.make_schedule(T, "cosine")
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-5)
    # abar(0) ~ f(1/T)/f(0), not 1 (t=0 is the first noisy step)
    assert float(s.alphas_cumprod[0]) == pytest.approx(f(1 / T) / f(0), rel=1e-5)


def test_linear_betas_and_bad_kind():
    np.testing.assert_allclose(D.linear_betas(10), np.linspace(1e-4, 0.02, 10))
    with pytest.raises(ValueError, match="kind"):
        D.make_schedule(T, "quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        D.make_schedule(1)


def test_diffusers_reference_if_available():
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    np.testing.assert_allclose(D.cosine_betas(T), sch.betas.numpy(), atol=1e-6)
    np.testing.assert_allclose(D.make_schedule(T).alphas_cumprod, sch.alphas_cumprod.numpy(), atol=1e-6)


def test_q_sample_closed_form_and_moments():
    s = D.make_schedule(T)
    key = jax.random.PRNGKey(0)
    x0 = jnp.full((100_000,), 0.7)
    t = jnp.full((100_000,), 37)
    eps = jax.random.normal(key, x0.shape)
    xt = D.q_sample(s, x0, t, eps)
    a = float(s.alphas_cumprod[37])
    np.testing.assert_allclose(xt, np.sqrt(a) * 0.7 + np.sqrt(1 - a) * np.asarray(eps), rtol=1e-5, atol=1e-6)
    assert float(xt.mean()) == pytest.approx(np.sqrt(a) * 0.7, rel=0.01)
    assert float(xt.var()) == pytest.approx(1 - a, rel=0.01)
    # off-by-one (abar_{t+1}) would be distinguishable at this precision
    assert abs(np.sqrt(float(s.alphas_cumprod[38])) * 0.7 - float(xt.mean())) > 0.005


@pytest.mark.parametrize("t", [99, 50, 1, 0])
def test_ddpm_step_matches_reference(t):
    s = D.make_schedule(T)
    abar = np.cumprod(1 - D.cosine_betas(T))
    rng = np.random.default_rng(t)
    x, eps, noise = (rng.normal(size=(4, 8, 2)) for _ in range(3))
    ours = D.ddpm_step(s, jnp.asarray(x, jnp.float32), t, jnp.asarray(eps, jnp.float32),
                       jnp.asarray(noise, jnp.float32))
    np.testing.assert_allclose(ours, ref_ddpm_step(abar, x, t, eps, noise), atol=1e-5, rtol=1e-4)
    if t == 0:  # no noise at t = 0
        ours2 = D.ddpm_step(s, jnp.asarray(x, jnp.float32), t, jnp.asarray(eps, jnp.float32), jnp.zeros(x.shape))
        np.testing.assert_allclose(ours, ours2, atol=1e-7)


def test_ddim_steps_match_reference_and_timesteps():
    s = D.make_schedule(T)
    abar = np.cumprod(1 - D.cosine_betas(T))
    ts = D.ddim_timesteps(T, 10)
    np.testing.assert_array_equal(ts, [90, 80, 70, 60, 50, 40, 30, 20, 10, 0])
    rng = np.random.default_rng(1)
    for t in ts:
        x, eps, noise = (rng.normal(size=(3, 4)) for _ in range(3))
        for eta in (0.0, 0.5):
            ours = D.ddim_step(s, jnp.asarray(x, jnp.float32), int(t), int(t) - 10, jnp.asarray(eps, jnp.float32),
                               jnp.asarray(noise, jnp.float32) if eta else None, eta=eta)
            np.testing.assert_allclose(ours, ref_ddim_step(abar, x, int(t), 10, eps, eta=eta, noise=noise),
                                       atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="num_inference_steps"):
        D.ddim_timesteps(T, 0)


def _oracle(s, x_star):
    def eps_fn(x, t):
        a = s.alphas_cumprod[t].reshape((-1,) + (1,) * (x.ndim - 1))
        return (x - jnp.sqrt(a) * x_star) / jnp.sqrt(1 - a)
    return eps_fn


def test_oracle_denoiser_makes_samplers_exact():
    s = D.make_schedule(T)
    x_star = jnp.linspace(-0.9, 0.9, 16).reshape(2, 8, 1)
    fn = _oracle(s, x_star)
    out_ddpm = jax.jit(lambda k: D.sample_ddpm(fn, s, k, x_star.shape))(jax.random.PRNGKey(3))
    out_ddim = jax.jit(lambda k: D.sample_ddim(fn, s, k, x_star.shape, num_inference_steps=10))(
        jax.random.PRNGKey(4))
    np.testing.assert_allclose(out_ddpm, x_star, atol=1e-5)
    np.testing.assert_allclose(out_ddim, x_star, atol=1e-5)


def test_ddim_deterministic_and_inverts_gaussian_oracle():
    """Exact eps for data N(mu, sd^2) (a non-trivial ODE): DDIM eta=0 is deterministic and
    decode(encode(x0)) recovers x0."""
    s = D.make_schedule(T)
    mu, sd = 0.2, 0.3

    def eps_fn(x, t):
        a = s.alphas_cumprod[t].reshape(-1, 1)
        return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * sd**2 + 1 - a)

    x0 = jnp.linspace(-0.5, 0.8, 9).reshape(9, 1)
    xT = D.ddim_invert(eps_fn, s, x0, num_inference_steps=10, fixed_point_iters=20)
    assert float(jnp.abs(xT - x0).max()) > 0.1  # really moved
    back = D.sample_ddim(eps_fn, s, jax.random.PRNGKey(0), x0.shape, num_inference_steps=10,
                         clip_sample=False, x_T=xT)
    back2 = D.sample_ddim(eps_fn, s, jax.random.PRNGKey(7), x0.shape, num_inference_steps=10,
                          clip_sample=False, x_T=xT)
    np.testing.assert_array_equal(back, back2)
    np.testing.assert_allclose(back, x0, atol=1e-3)
