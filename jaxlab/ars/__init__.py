"""ARS (arXiv 2601.17467): answer-agreement representation shaping for hallucination detection.

Losses and the head (pure, jit-able): `ars_loss` (Eq. 5, per anchor), `ars_loss_from_similarities`,
`supcon_loss` (the public code's in-batch variant), `linear_head` (g(u) = W u, no bias), `init_head`.
Counterfactuals at the trace boundary: `jaxlab.ars.counterfactual`; detectors: `jaxlab.ars.detectors`;
head training: `jaxlab.ars.train`.
"""

from jaxlab.ars.losses import (ARSHParams, ars_loss, ars_loss_from_similarities, cosine, init_head,
                               linear_head, supcon_loss)
from jaxlab.ars.train import HeadData, fit_head, make_trainer
from jaxlab.ars.counterfactual import (POSITIONS, counterfactuals, features, perturbation, split_answer,
                                       truncate_at)
from jaxlab.ars.detectors import (ccs_loss, eigenscore, fit_ccs, fit_logistic, haloscope,
                                  haloscope_score, semantic_entropy)

__all__ = ["ARSHParams", "ars_loss", "ars_loss_from_similarities", "cosine", "init_head", "linear_head",
           "supcon_loss", "HeadData", "fit_head", "make_trainer", "POSITIONS", "counterfactuals",
           "features", "perturbation", "split_answer", "truncate_at", "ccs_loss", "eigenscore", "fit_ccs",
           "fit_logistic", "haloscope", "haloscope_score", "semantic_entropy"]
