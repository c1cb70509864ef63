"""Config for experiments/ars.py: ARS (answer-agreement representation shaping) on the tiny LM.

quick: the quick SFT model (d=64, L=3), 400 problems, M=4 counterfactuals, K=5 samples, a small grid
       (rho in {1, 2, 3}, k = 32, tau in {0.1, 0.5}, 50 epochs).
full:  the full SFT model (d=128, L=4), 4,000 problems (M=6, K=10), rho in {1, 2, 3, 4}, k in {32, 64}; the
       position sweep (1/4, 1/2, 3/4 of the trace, mid-answer, the middle layer) on a 1,000-problem subset
       of every seed's split (`data.n_sweep`; the boundary is refitted on the same rows for the comparison);
       the rho sweep on all problems, since it is the main result's own val selection; resumable per seed.
Every choice (task difficulty, layer, rho, k, tau, epochs, detector signs and HaloScope's k/percentile)
is made on val; the head g is fitted on the train split only.
"""

import ml_collections

from jaxlab.core.config import check_size


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    size = check_size(size)
    c = ml_collections.ConfigDict()
    c.seeds = [0, 1, 2]
    c.lm = ml_collections.ConfigDict(dict(config="experiments/configs/lm_sft.py", size="full", seed=0,
                                         allow_train=False))   # full: never trains the d=128 SFT model itself
    # task difficulty: the first candidate whose greedy CoT accuracy on 100 selection problems (drawn from
    # the LM's hash-'val' split) lies in the band; else the closest one (recorded in the summary)
    c.task = ml_collections.ConfigDict(dict(candidates="addsub:4,mul1:4,chain2:3,addsub:3,mul1:3,chain2:2",
                                            band_lo=0.40, band_hi=0.75, n_select=100, select_seed=11))
    # problems of the chosen task from the LM's hash-'test' split (never seen in SFT, disjoint from the
    # selection set); per seed: 25% test, 100 val, the rest train
    c.data = ml_collections.ConfigDict(dict(n_problems=4000, test_frac=0.25, n_val=100,
                                            pool_seed=5, n_sweep=1000))   # n_sweep 0: every problem
    c.cf = ml_collections.ConfigDict(dict(num_draws=6, rho_grid=[1.0, 2.0, 3.0, 4.0],
                                          positions="trace_0.25,trace_0.5,trace_0.75,mid_answer",
                                          mid_layer=2, answer_tokens=10))
    c.head = ml_collections.ConfigDict(dict(k_grid=[32, 64], tau_grid=[0.1, 0.5], epochs_grid=[50, 200],
                                            lr=1e-3, weight_decay=1e-5, batch_size=128, loss="eq5", reg=0.0))
    c.det = ml_collections.ConfigDict(dict(num_samples=10, temperature=0.6, probe_l2=1.0, n_low_labels=200,
                                           ccs_restarts=8, halo_kmax=10, eigen_alpha=1e-3))
    c.batch_size = 512     # rows per batch of every teacher-forced / counterfactual program (fixed shape)
    c.gen_batch = 100      # problems per batch of the greedy generation (task selection and the main set)
    if size == "quick":
        c.lm.update(size="quick", allow_train=True)
        c.task.candidates = "addsub:3,addsub:2"
        c.data.update(n_problems=400, n_sweep=0)
        c.batch_size = 400
        c.cf.update(num_draws=4, rho_grid=[1.0, 2.0, 3.0], mid_layer=1, answer_tokens=8)
        c.head.update(k_grid=[32], tau_grid=[0.1, 0.5], epochs_grid=[50])
        c.det.update(num_samples=5, ccs_restarts=4, halo_kmax=6)
    return c
