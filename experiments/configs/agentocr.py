"""AgentOCR miniature on ShelfWorld: get_config("quick"|"full").

quick = a pipeline smoke run (tiny BC, 2 GRPO iterations, 2 RL seeds); its verdicts are not evidence.
full  = the miniature study (both task variants, 3 RL seeds)."""
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
    c.d = 32 if quick else 64
    c.layers = 1 if quick else 2
    c.heads = 2 if quick else 4
    c.mlp = 64 if quick else 128
    c.stem = [] if quick else [8]                   # stride-2 convs before the patch reshape
    c.canvas_h = 420
    c.text_len = 48
    c.hist_len = 192
    # behaviour cloning (shared by all RL seeds)
    c.bc_episodes = 40 if quick else 400
    c.bc_steps = 60 if quick else 1500
    c.bc_batch = 16
    c.bc_lr = 2e-3
    c.aux_digit = 0.3
    c.data_seed = 10_000
    # GRPO
    c.iterations = 2 if quick else 20
    c.tasks_per_iter = 2 if quick else 4
    c.group_size = 4
    c.minibatch = 32
    c.rl_lr = 1e-4
    c.clip_eps = 0.2
    c.lam = 0.01
    c.train_seed = 20_000
    # evaluation
    c.n_eval = 8 if quick else 32                   # episodes per RL seed (sampled, temperature 1)
    c.eval_seed = 50_000
    c.fixed_c = [1.0, 1.5, 3.0] if quick else [1.0, 1.2, 1.5, 2.0, 3.0]
    return c
