"""HAVP-style fusion + diffusion policy on Pour-to-level: get_config("quick"|"full")."""
import ml_collections

VARIANTS = ["havp", "stage1", "transformer", "concat",
            "havp_noaudio", "stage1_noaudio", "transformer_noaudio", "concat_noaudio"]


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    if size not in ("quick", "full"):
        raise ValueError(f"size: expected 'quick' or 'full', got {size!r}")
    c = ml_collections.ConfigDict()
    c.task = "pour"
    c.variants = list(VARIANTS)
    c.seeds = [0, 1, 2]
    c.data_seed = 1000
    c.n_demos = 16
    c.action_noise = 0.02      # executed-action noise of the demonstrations (labels stay the expert's)
    c.obs_horizon = 2
    c.pred_horizon = 8
    c.action_horizon = 4
    c.denoiser = "mlp"
    c.batch_size = 32
    c.lr = 3e-4
    c.warmup = 20
    c.train_steps = 100
    c.chunk = 100              # steps per jitted chunk (checkpoint granularity)
    c.num_inference_steps = 4
    c.n_eval = 8
    c.eval_seed = 2000
    # MI analysis (held-out expert frames, frozen encoders of the trained policies)
    c.mi_variants = ["havp", "havp_noaudio"]
    c.mi_methods = ["infonce"]
    c.mi_episodes = 24
    c.mi_steps = 200
    c.mi_pca_dims = 4
    c.mi_boot = 20
    if size == "full":
        c.n_demos = 200
        c.batch_size = 128
        c.warmup = 200
        c.train_steps = 4000
        c.chunk = 500
        c.denoiser = "unet"
        c.num_inference_steps = 10
        c.n_eval = 50
        c.mi_variants = ["havp", "stage1", "concat", "transformer", "havp_noaudio"]
        c.mi_methods = ["infonce", "mine"]
        c.mi_episodes = 100
        c.mi_steps = 1500
        c.mi_boot = 200
    return c
