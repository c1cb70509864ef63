"""jaxlab.fusion: HAVP-style audio-visual-proprioceptive fusion + diffusion policy (arXiv 2602.13640 miniature).

Pour-to-level task and a Brax (mjx) latch cabinet with audio rendering, JAX STFT / log-mel, a tiny rasterizer,
fusion encoders (concat, symmetric transformer, stage-1 audio-conditioned branches, stage-1 + low-rank tensor
fusion), a diffusion policy and InfoNCE / MINE estimators. See notes/fusion.md for what is reconstructed.
"""

from jaxlab.fusion.audio import log_mel, mel_filterbank, mel_spectrogram, resonance_noise, stft_power
from jaxlab.fusion.cabinet import CabinetParams, CabinetState
from jaxlab.fusion.encoders import (BASE_VARIANTS, FUSION_VARIANTS, AudioConditionedBranch, FusionEncoder,
                                    LowRankFusion, PolicyObs, lmf, lmf_full_tensor, parse_variant, tensor_fusion)
from jaxlab.fusion.losses import (MINEHParams, diffusion_policy_loss, dv_bound, eps_prediction_loss, infonce_bound,
                                  infonce_loss, mine_loss)
from jaxlab.fusion.mi import estimate_mi
from jaxlab.fusion.policy import (PolicyConfig, PolicyNet, chunk_indices, expert_dataset,
                                  make_policy_fn, make_train, policy_trainer, rollout_policy, task_module, task_params, window_indices)
from jaxlab.fusion.pour import PourParams, PourState, check_action, rollout_expert

__all__ = [
    "log_mel", "mel_filterbank", "mel_spectrogram", "resonance_noise", "stft_power", "BASE_VARIANTS",
    "FUSION_VARIANTS", "AudioConditionedBranch", "FusionEncoder", "LowRankFusion", "PolicyObs", "lmf",
    "lmf_full_tensor", "parse_variant", "tensor_fusion", "dv_bound", "estimate_mi", "infonce_bound",
    "PolicyConfig", "PolicyNet", "chunk_indices", "policy_trainer", "expert_dataset", "make_policy_fn", "make_train",
    "rollout_policy", "window_indices", "PourParams", "PourState", "check_action", "rollout_expert",
    "CabinetParams", "CabinetState", "task_module", "task_params",
    "MINEHParams", "diffusion_policy_loss", "eps_prediction_loss", "infonce_loss", "mine_loss",
]
