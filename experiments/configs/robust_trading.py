"""Config for experiments/robust_trading.py (paper B, arXiv 2601.17008). get_config("quick"|"full").

Hyperparameters are fixed a priori from the spec's CPU miniature (B7) and the dataflow paper's DQN
miniature; none was tuned on test data (no validation sweep was run in this build).
"""

import ml_collections


def get_config(size: str = "quick") -> ml_collections.ConfigDict:
    if size not in ("quick", "full"):
        raise ValueError(f"size: expected 'quick' or 'full', got {size!r}")
    c = ml_collections.ConfigDict()
    c.size = size
    c.seeds = [0, 1]
    c.arms = ["ours", "dqn"]
    c.worlds = ["synthetic"]         # "synthetic" and/or "sp500" (the S&P 500 with real macro, 2008-09 stress)
    c.fast_compile = False           # True: XLA with most optimisations off (jaxlab.core.app.fast_compile)
    c.checkpoint = size == "full"    # GAN and trader state after every chunk (a rerun resumes; quick: off)
    # synthetic macro world (one world; seeds vary GAN/trader init, env sampling, augmentation, adversary)
    c.world_seed = 0
    c.num_days = 1500
    c.num_assets = 3
    c.stress_start = 1300            # forced stress regime inside the test split (rows 1200..1499)
    c.stress_end = 1400
    c.n_train = 900
    c.n_val_end = 1200
    # the S&P 500 world: arch's daily OHLCV, real macro with release lags (BAA-AAA spread first: the stress
    # variable), train 1999-2006, validation 2007, test 2008-09; stress = Lehman to the NBER trough
    c.sp500 = ml_collections.ConfigDict(dict(
        assets=["sp500"], macro=["default_spread", "aaa", "core_cpi_yoy", "unemp"], start="1999-01-04",
        val_start="2007-01-01", test_start="2008-01-01", end="2009-12-31", stress_start="2008-09-01",
        stress_end="2009-06-30"))
    c.window = 16                    # trader window W; the GAN window is 2W (W real + W generated)
    c.gan = ml_collections.ConfigDict(dict(hidden=32, lite=True, lr=1e-3, steps=600, batch=64, chunk=200,
                                           d_threshold=0.15, stage_steps=0, cond_samples=512))
    c.trader = ml_collections.ConfigDict(dict(
        iters=1500, chunk=500, hidden=64, qbn_hidden=16, num_envs=8, episode_len=64, buffer_size=4096,
        reservoir_size=4096, batch_size=64, lr=1e-3, gamma=0.9, eps_decay_iters=750, eps_end=0.05,
        learning_starts=256, train_every=2, target_every=200, eta=0.1, avg_loss="distill", aug_rate=0.1,
        obs_noise=0.5, obs_adv_eps=0.5,
        adv_eps=0.3, adv_block=20, adv_every=100, adv_lr=1e-3, zero_sum=True, cost=1e-3, cost_mode="code_B",
        reward_scale=100.0))
    c.robust_eps = [0.0, 0.1, 0.3, 0.5]
    c.robust_candidates = 8
    c.game = ml_collections.ConfigDict(dict(name="rps", iters=20000, eta=0.1))
    c.kuhn = ml_collections.ConfigDict(dict(iters=30000, eta=0.1))     # tabular NFSP on Kuhn poker
    if size == "full":
        c.seeds = [0, 1, 2]
        c.arms = ["ours", "dqn", "no_qbn", "no_nfsp", "dqn_noise", "dqn_advobs"]
        c.worlds = ["synthetic", "sp500"]
        c.gan.steps = 3000
        c.gan.chunk = 500
        c.trader.iters = 6250        # 5e4 environment steps (8 envs)
        c.trader.chunk = 1250
        c.trader.eps_decay_iters = 3125
        c.robust_candidates = 32
    return c
