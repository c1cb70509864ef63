"""jaxlab.diffusion: shared diffusion substrate (schedules, DDPM/DDIM samplers, conditional denoisers, EMA)."""

from jaxlab.diffusion.nets import (CondResBlock1D, ConditionalUnet1D, FiLM, MLPDenoiser,
                                   sinusoidal_embedding)
from jaxlab.diffusion.samplers import (ddim_invert, ddim_step, ddim_timesteps, ddpm_step, predict_x0,
                                       sample_ddim, sample_ddpm)
from jaxlab.diffusion.schedules import Schedule, cosine_betas, linear_betas, make_schedule, q_sample
from jaxlab.diffusion.utils import Normalizer, ema_decay, ema_update, eps_loss, fit_normalizer

__all__ = [
    "CondResBlock1D", "ConditionalUnet1D", "FiLM", "MLPDenoiser", "sinusoidal_embedding", "ddim_invert",
    "ddim_step", "ddim_timesteps", "ddpm_step", "predict_x0", "sample_ddim", "sample_ddpm", "Schedule",
    "cosine_betas", "linear_betas", "make_schedule", "q_sample", "Normalizer", "ema_decay", "ema_update",
    "eps_loss", "fit_normalizer",
]
