"""DDIM-10 vs DDPM-100 inside the closed-loop diffusion policy (Pour): time per action chunk, time per
closed-loop evaluation, and success at each sampler, side by side in one run.

The policy uses the final quick-config settings of experiments/configs/fusion.py (havp, patch tokenizer,
MLP denoiser 3 x 128, To = 2, Tp = 4, Ta = 1, 64 demonstrations, batch 64, lr 2e-3) except the diffusion
chain, which has 100 training steps so that DDPM-100 is defined (the experiment trains a 20-step chain).

    .venv/bin/python benchmarks/diffusion_sampling.py --size=tiny|full [--out=...]
--size=tiny: 50 training steps, 8 demos, 8 episodes (plumbing); --size=full: 1500 steps, 48 episodes,
writes results/bench/diffusion_sampling.json.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxlab import diffusion as D  # noqa: E402
from jaxlab.core.bench import cli, record, timed  # noqa: E402
from jaxlab.fusion import policy as PL  # noqa: E402


def parity():
    """Both samplers return the target exactly under the oracle denoiser (checked before timing)."""
    s = D.make_schedule(100)
    x_star = jnp.linspace(-0.9, 0.9, 8).reshape(1, 8, 1)

    def fn(x, t):
        a = s.alphas_cumprod[t].reshape(-1, 1, 1)
        return (x - jnp.sqrt(a) * x_star) / jnp.sqrt(1 - a)

    for out in (D.sample_ddpm(fn, s, jax.random.PRNGKey(0), x_star.shape),
                D.sample_ddim(fn, s, jax.random.PRNGKey(0), x_star.shape, num_inference_steps=10)):
        np.testing.assert_allclose(out, x_star, atol=1e-5)


def run(size: str, out):
    parity()
    tiny = size == "tiny"
    cfg = PL.PolicyConfig(variant="havp", obs_horizon=2, pred_horizon=4, action_horizon=1,
                          num_diffusion_steps=100, num_inference_steps=10, batch_size=64, lr=2e-3,
                          warmup=10 if tiny else 50, train_steps=50 if tiny else 1500,
                          denoiser="mlp", mlp_hidden=(128, 128, 128), tokenizer="patch")
    data = PL.expert_dataset(jax.random.PRNGKey(1000), 8 if tiny else 64, obs_horizon=cfg.obs_horizon,
                             pred_horizon=cfg.pred_horizon)
    net, init, train_chunk = PL.make_train(cfg, data)
    st, _ = train_chunk(init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2), cfg.train_steps)
    act = PL.make_policy_fn(net, cfg)
    n_eval = 8 if tiny else 48
    obs = jax.tree.map(lambda x: x[:n_eval], data[0])
    samplers = {"ddim10": {"num_inference_steps": 10, "sampler": "ddim"}, "ddpm100": {"sampler": "ddpm"}}
    res = {}
    for name, kw in samplers.items():
        chunk = jax.jit(lambda p, o, k, kw=kw: act(p, o, k, **kw))
        _, c_chunk, t_chunk = timed(lambda: chunk(st.ema, obs, jax.random.PRNGKey(3)), 5 if tiny else 21)
        loop = jax.jit(lambda p, k, kw=kw: PL.rollout_policy(act, p, k, n_eval, cfg, **kw))
        ev, c_loop, t_loop = timed(lambda: loop(st.ema, jax.random.PRNGKey(2000)), 1 if tiny else 3)
        res[name] = dict(chunk_s=t_chunk, chunk_compile_s=c_chunk, loop_s=t_loop, loop_compile_s=c_loop,
                         success=float(np.mean(ev["success"])), fill_error=float(np.mean(ev["fill_error"])))
    a, b = res["ddim10"], res["ddpm100"]
    rows = [{"case": {"batch": n_eval, "Tp": cfg.pred_horizon, "train_steps": cfg.train_steps,
                      "what": "one action chunk for the batch"},
             "impl": "ddim10_lax_scan", "baseline": "ddpm100_lax_scan", "median_s": a["chunk_s"],
             "baseline_median_s": b["chunk_s"], "speedup": b["chunk_s"] / a["chunk_s"],
             "compile_s": a["chunk_compile_s"], "baseline_compile_s": b["chunk_compile_s"]},
            {"case": {"episodes": n_eval, "horizon": PL.P.PourParams().horizon, "train_steps": cfg.train_steps,
                      "what": "closed-loop evaluation (re-plan every step), vmapped episodes"},
             "impl": "ddim10_lax_scan", "baseline": "ddpm100_lax_scan", "median_s": a["loop_s"],
             "baseline_median_s": b["loop_s"], "speedup": b["loop_s"] / a["loop_s"],
             "compile_s": a["loop_compile_s"], "baseline_compile_s": b["loop_compile_s"],
             "success": a["success"], "baseline_success": b["success"],
             "fill_error": a["fill_error"], "baseline_fill_error": b["fill_error"]}]
    for r in rows:
        print(r)
    return record("diffusion_sampling", size, rows, out, seed_note="one policy (seed 1), test episodes key 2000")


if __name__ == "__main__":
    cli("diffusion_sampling", run, ("tiny", "full"), doc=__doc__)
