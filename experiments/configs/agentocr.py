"""AgentOCR miniature on ShelfWorld: get_config("quick"|"full").

quick = a pipeline smoke run (tiny BC, 2 GRPO iterations, 2 RL seeds, no tuning); its verdicts are not evidence.
full  = the miniature study (both task variants, 3 RL seeds). Sized from the measured per-sample cost (notes):
        the spec's starting point (d = 64, 2 layers, conv stem) cost ~0.3-0.4 CPU-s per B = 16 BC step on the
        shared cores, ~6x the d = 32 / 1-layer / no-stem trunk, so the full study uses the small trunk and
        keeps 3 seeds, both variants and the whole arm list (the issue: shrink before cutting seeds).
Hyperparameters chosen on validation (task seeds val_seed.., RL seed val_rl_seed, disjoint from the BC data,
the GRPO task draws' test seeds and the test tasks): the number of BC steps (best of bc_select checkpoints),
the GRPO lr of every arm (rl_lr_grid) and AgentOCR's lambda (lam_grid; K = 1 reuses K = 5's lambda)."""
import ml_collections


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    if size not in ("quick", "full"):
        raise ValueError(f"size: expected 'quick' or 'full', got {size!r}")
    quick = size == "quick"
    c = ml_collections.ConfigDict()
    c.smoke = quick                                   # labels claims / headline as a pipeline smoke run
    c.variants = ["shelf"] if quick else ["shelf", "code"]
    c.seeds = [0, 1] if quick else [0, 1, 2]          # RL seeds: sampling noise, GRPO task draws, eval tasks
    # environment
    c.n_receptacles = 5
    c.n_objects = 3
    c.horizon = 10
    # renderer (psi)
    c.width = 192
    c.font = "bitmap"
    c.line_px = 12
    # policy (same trunk for both history kinds)
    c.d = 32
    c.layers = 1
    c.heads = 2
    c.mlp = 64
    c.stem = []                                     # stride-2 convs before the patch reshape (none: linear patches)
    c.canvas_h = 420
    c.text_len = 48
    c.hist_len = 192
    # behaviour cloning (shared by all RL seeds)
    c.bc_episodes = 40 if quick else 200
    c.bc_steps = 60 if quick else 900
    c.bc_select = 1 if quick else 3                 # BC checkpoints compared on validation (every bc_steps/bc_select)
    c.bc_batch = 16
    c.bc_lr = 2e-3
    c.aux_digit = 0.3
    c.data_seed = 10_000
    # GRPO
    c.iterations = 2 if quick else 12
    c.tasks_per_iter = 2 if quick else 4
    c.group_size = 4
    c.minibatch = 32
    c.rl_lr_grid = [1e-4] if quick else [1e-4, 5e-4]   # chosen per arm on validation
    c.clip_eps = 0.2
    c.lam_grid = [0.01] if quick else [0.01, 0.1]      # AgentOCR K = 5, chosen on validation
    c.train_seed = 20_000
    # evaluation
    c.n_eval = 8 if quick else 32                   # test episodes per RL seed
    c.eval_seed = 50_000
    c.eval_temp = 0.4                               # the paper's validation temperature (test and validation)
    c.n_val = 8 if quick else 32                    # validation episodes (BC checkpoint and GRPO tuning)
    c.val_seed = 60_000
    c.val_rl_seed = 100                             # the RL seed of the tuning runs (not one of `seeds`)
    c.fixed_c = [1.0, 1.5, 3.0] if quick else [1.0, 1.2, 1.5, 2.0, 3.0]
    return c
