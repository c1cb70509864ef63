"""FARL config: get_config("quick"|"full")."""
import ml_collections


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    if size not in ("quick", "full"):
        raise ValueError(f"size: expected 'quick' or 'full', got {size!r}")
    c = ml_collections.ConfigDict()
    c.tasks = ["bounded_push"]
    c.arms = ["vanilla", "ppo_lagrangian", "recovery_rl", "farl", "farl_no_rec"]
    c.seeds = [0, 1, 2]
    c.episode_length = 50
    # offline data / pretraining (one offline stage per task, seed 0; online seeds vary)
    c.data_envs = 32
    c.data_steps = 100
    c.demo_noise = 0.3
    c.bc_steps = 1000
    c.offline_ppo_steps = 200
    c.wm_steps = 1500
    c.q_steps = 1500
    c.ensemble = 5
    c.gamma_safe = 0.8
    # safety critic
    c.horizon = 5
    c.gamma_risk = 0.9
    # eps_safe rule (fixed before any comparison): on held-out rollouts of the pretrained TASK policy (the policy
    # that is fine-tuned; run by the online program with learning off and no switch, keys 3000+i), the largest grid
    # value whose recall of "failure within H steps" is >= target_recall. Same rule for both critics.
    c.target_recall = 0.9
    c.eps_grid = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0]
    # online PPO
    c.num_envs = 16
    c.rollout_len = 64
    c.iterations = 20  # the online program's runtime is small next to its compile (one compile per task)
    c.epochs = 4
    c.minibatches = 4
    c.lr = 3e-4
    c.lagrange_lr = 0.5
    c.final_window = 3  # iterations averaged for the final return / success
    if size == "full":
        c.tasks = ["bounded_push", "fragile_push_wall", "obstructed_push"]
        c.seeds = [0, 1, 2, 3, 4]
        c.data_envs = 64
        c.bc_steps = 3000
        c.wm_steps = 4000
        c.q_steps = 4000
        c.iterations = 100  # 102k online env steps per seed and arm; sized for ~1 h on the loaded 2-core box
        c.final_window = 10
    return c
