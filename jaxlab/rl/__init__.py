"""Policy-gradient RL for the tiny LM: GRPO family losses, KPO's causal Kalman filter, advantages."""

from jaxlab.rl.advantages import (ADVANTAGE_FNS, dr_grpo_advantages, group_advantages,
                                  grpo_advantages)
from jaxlab.rl.diagnostics import (collapse_flags, low_freq_power_fraction, masked_mean,
                                   masked_var, mean_run_length, spike_count, switch_frequency)
from jaxlab.rl.kalman import (combine, ema_gains, filter_weight_matrix, kalman_filter,
                              kalman_filter_loop, kalman_gains, steady_state_gain)
from jaxlab.rl.losses import (AGG_MODES, POLICY_LOSSES, aggregate, filtered_log_ratio,
                              get_policy_loss, gmpo_loss, grpo_loss, gspo_loss, kpo_clipped_loss,
                              kpo_loss, kpo_tr_loss, log_ratio)
from jaxlab.rl.pg import (GAEHParams, PPOHParams, clipped_surrogate, gae, masked_reduce,
                          normalize_advantages, ppo_policy_loss)

__all__ = [
    "ADVANTAGE_FNS", "dr_grpo_advantages", "group_advantages", "grpo_advantages",
    "collapse_flags", "low_freq_power_fraction", "masked_mean", "masked_var", "mean_run_length",
    "spike_count", "switch_frequency",
    "combine", "ema_gains", "filter_weight_matrix", "kalman_filter", "kalman_filter_loop",
    "kalman_gains", "steady_state_gain",
    "AGG_MODES", "POLICY_LOSSES", "aggregate", "filtered_log_ratio", "get_policy_loss",
    "gmpo_loss", "grpo_loss", "gspo_loss", "kpo_clipped_loss", "kpo_loss", "kpo_tr_loss",
    "log_ratio",
    "GAEHParams", "PPOHParams", "clipped_surrogate", "gae", "masked_reduce", "normalize_advantages",
    "ppo_policy_loss",
]
