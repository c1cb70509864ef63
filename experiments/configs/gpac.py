"""G-PAC / C-PAC miniature: group-conditional PAC switching between thinking and direct answers.

Two finite populations, calibration draws i.i.d. from each (so group risks are exact):
  synthetic: the SyntheticPAC tfds builder (4 groups, one with a miscalibrated score), 8k rows.
  lm:        distinct val/test questions of the SFT families, answered by the cached SFT model in both
             modes (quick: lm_sft quick, seed 0; full: lm_sft full, seeds 0, 1, 2).
A seed = one calibration-draw stream (synthetic) / one SFT model (lm; quick reuses model 0 for every
seed, so there a seed varies only the draws).
"""

import ml_collections

from jaxlab.core.config import check_size


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    size = check_size(size)
    c = ml_collections.ConfigDict()
    c.seeds = [0, 1, 2]
    c.eps = [0.02, 0.05, 0.1]
    c.main_eps = 0.05              # the eps of the claims; the others go to the tables
    c.alpha = 0.1
    c.bound = "cp"
    c.n_splits = 500               # calibration draws per (seed, eps)
    c.cluster_frac = 0.3           # C-PAC: share of calibration draws used to fit k-means (D_1)
    c.kmeans_iters = 15
    c.kmeans_inits = 2
    c.pca_dim = 8                  # embeddings projected on the population's top PCs before k-means
    c.ips_pi = 0.5                 # IPS label saving: each calibration draw is labelled with probability pi
    c.savings_margin = 0.02        # no_worse margin for token savings (2 points of CoT tokens)

    c.synthetic = ml_collections.ConfigDict(dict(enabled=True, builder_config="default", n_cal=400,
                                                 data_source="tfds"))
    c.lm = ml_collections.ConfigDict()
    c.lm.enabled = True
    c.lm.sft_size = "full"
    c.lm.model_seeds = [0, 1, 2]
    c.lm.families = ml_collections.ConfigDict(dict(add1=1, addsub=2, mul1=3, chain2=2))
    c.lm.max_per_family = 500
    c.lm.n_cal = 800
    c.lm.batch_size = 128
    c.lm.degrade_only = False      # loss = disagreement with the thinking answer (spec default)
    c.lm.train_if_missing = False  # full: the 3 full SFT models must be in the cache (make full PAPER=lm_sft)
    if size == "quick":
        c.eps = [0.05]             # one eps: each eps is one compile of the vmapped calibration
        c.n_splits = 150
        c.lm.sft_size = "quick"
        c.lm.model_seeds = [0]
        c.lm.families = ml_collections.ConfigDict(dict(add1=1, addsub=2, mul1=2))
        c.lm.max_per_family = 300
        c.lm.n_cal = 500
        c.lm.train_if_missing = True   # the quick SFT model trains in ~2 min if the cache is empty
    else:
        c.synthetic.n_cal = 1000       # ~250 draws per group: every group can route at eps = 0.02 (needs 114)
    return c
