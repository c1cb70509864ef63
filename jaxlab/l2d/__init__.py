"""Multi-expert learning to defer: PiCCE (arXiv 2602.17144) and baselines as pure JAX functions."""

from jaxlab.l2d.decision import (Decision, class_mass, decide, deferral_scores, l2d_metrics,
                                 recover_probabilities, system_prediction)
from jaxlab.l2d.experts import (SETTINGS, Experts, expert_accuracy_table, sample_expert_predictions,
                                sample_experts)
from jaxlab.l2d.losses import (LOSSES, SCORE_KIND, check_l2d_inputs, decoupled_loss, expert_correct,
                               get_loss, mozannar_sontag_ce_loss, multi_expert_ce_loss,
                               multi_expert_ova_loss, picce_ce_loss, picce_ova_loss, picce_selection,
                               realizable_surrogate_loss)

# Short aliases: the paper calls the Verma et al. (2023) losses "vanilla CE / OvA".
vanilla_ce_loss = multi_expert_ce_loss
vanilla_ova_loss = multi_expert_ova_loss

__all__ = [
    "Decision", "class_mass", "decide", "deferral_scores", "l2d_metrics", "recover_probabilities",
    "system_prediction", "SETTINGS", "Experts", "expert_accuracy_table", "sample_expert_predictions",
    "sample_experts", "LOSSES", "SCORE_KIND", "check_l2d_inputs", "decoupled_loss", "expert_correct",
    "get_loss", "mozannar_sontag_ce_loss", "multi_expert_ce_loss", "multi_expert_ova_loss",
    "picce_ce_loss", "picce_ova_loss", "picce_selection", "realizable_surrogate_loss",
    "vanilla_ce_loss", "vanilla_ova_loss",
]
