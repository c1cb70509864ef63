"""jaxlab.pac: PAC / group-conditional PAC calibration of the thinking / non-thinking switch.

G-PAC / C-PAC ("Conditional Performance Guarantee for Large Reasoning Models", arXiv 2601.22790) on
top of PAC reasoning (arXiv 2510.09133). Pure functions:

  bounds:    clopper_pearson_ucb, hoeffding_ucb, hoeffding_bentkus_ucb, wsr_ucb, clt_ucb
  calibrate: pac_threshold (marginal), group_thresholds (G-PAC, + Bonferroni), cpac_thresholds
             (k-means on a disjoint split; joint heuristic), cpac_random_thresholds (random-cluster
             ablation), ips_threshold (label saving), naive_threshold, naive_group_thresholds
  data:      synthetic population with exact group risk curves (+ tfds builder SyntheticPAC)
  lm_data:   both-mode answers of the shared tiny LM (U, disagreement loss, tokens, embeddings)
"""

from jaxlab.pac.bounds import (BOUNDS, clopper_pearson_ucb, clt_ucb, hoeffding_bentkus_ucb,
                               hoeffding_ucb, ucb_from_sums, wsr_ucb)
from jaxlab.pac.calibrate import (CPACResult, KMeans, PACParams, assign, calibrate_groups,
                                  calibrate_marginal, cp_kmax_table, cpac_thresholds,
                                  cpac_random_thresholds, cumulative_sums, first_failure_scan,
                                  group_thresholds, naive_group_thresholds, random_partition,
                                  ips_losses, ips_threshold, kmeans, midpoint_candidates,
                                  min_n_for_routing, naive_threshold, oracle_threshold,
                                  pac_threshold, pass_curve, route, scan_passes, sorted_candidates,
                                  ucb_curve)
from jaxlab.pac.data import PopulationSpec, homogeneous_spec, population_curves, sample

__all__ = [
    "BOUNDS", "clopper_pearson_ucb", "clt_ucb", "hoeffding_bentkus_ucb", "hoeffding_ucb",
    "ucb_from_sums", "wsr_ucb", "CPACResult", "KMeans", "PACParams", "assign", "calibrate_groups",
    "calibrate_marginal", "cp_kmax_table", "cpac_thresholds", "cpac_random_thresholds", "cumulative_sums",
    "first_failure_scan", "group_thresholds", "ips_losses", "ips_threshold", "kmeans", "naive_group_thresholds", "random_partition",
    "midpoint_candidates", "min_n_for_routing", "naive_threshold", "oracle_threshold",
    "pac_threshold", "pass_curve", "route", "scan_passes", "sorted_candidates", "ucb_curve",
    "PopulationSpec", "homogeneous_spec", "population_curves", "sample",
]
