"""DDIM-10 vs DDPM-100 inside the closed-loop diffusion policy: time per action chunk and success at each.

--size=tiny trains a tiny policy briefly (parity + plumbing); --size=full trains the quick-config policy longer.
Writes results/bench/diffusion_sampling.json.
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import diffusion as D
from jaxlab.core.metrics import write_json_atomic
from jaxlab.core.versions import versions
from jaxlab.fusion import policy as PL


def parity():
    """Both samplers return the target exactly under the oracle denoiser."""
    s = D.make_schedule(100)
    x_star = jnp.linspace(-0.9, 0.9, 8).reshape(1, 8, 1)

    def fn(x, t):
        a = s.alphas_cumprod[t].reshape(-1, 1, 1)
        return (x - jnp.sqrt(a) * x_star) / jnp.sqrt(1 - a)

    for out in (D.sample_ddpm(fn, s, jax.random.PRNGKey(0), x_star.shape),
                D.sample_ddim(fn, s, jax.random.PRNGKey(0), x_star.shape, num_inference_steps=10)):
        np.testing.assert_allclose(out, x_star, atol=1e-5)


def timed(f, *args, repeats=5):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    compile_s = time.perf_counter() - t
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), compile_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--out", default="results/bench/diffusion_sampling.json")
    args = ap.parse_args()
    parity()
    tiny = args.size == "tiny"
    cfg = PL.PolicyConfig(variant="havp", batch_size=32 if tiny else 64, train_steps=50 if tiny else 2000,
                          warmup=10 if tiny else 100, denoiser="unet")
    data = PL.expert_dataset(jax.random.PRNGKey(0), 8 if tiny else 100, obs_horizon=2, pred_horizon=8)
    net, init, train_chunk = PL.make_train(cfg, data)
    st, _ = train_chunk(init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2), cfg.train_steps)
    act = PL.make_policy_fn(net, cfg)
    B = 16 if tiny else 50
    obs = jax.tree.map(lambda x: x[:B], data[0])
    ddim = jax.jit(lambda p, o, k: act(p, o, k, num_inference_steps=10, sampler="ddim"))
    ddpm = jax.jit(lambda p, o, k: act(p, o, k, sampler="ddpm"))
    t_ddim, c_ddim = timed(ddim, st.ema, obs, jax.random.PRNGKey(3))
    t_ddpm, c_ddpm = timed(ddpm, st.ema, obs, jax.random.PRNGKey(3))
    n_eval = 8 if tiny else 50
    succ = {}
    for name, kw in (("ddim10", {"num_inference_steps": 10, "sampler": "ddim"}), ("ddpm100", {"sampler": "ddpm"})):
        ev = jax.jit(lambda p, k: PL.rollout_policy(act, p, k, n_eval, cfg, **kw))(st.ema, jax.random.PRNGKey(4))
        succ[name] = float(ev["success"].mean())
    row = {"case": {"batch": B, "Tp": cfg.pred_horizon, "train_steps": cfg.train_steps, "n_eval": n_eval},
           "impl": "ddim10_lax_scan", "baseline": "ddpm100_lax_scan", "median_s": t_ddim,
           "baseline_median_s": t_ddpm, "speedup": t_ddpm / t_ddim, "compile_s": c_ddim,
           "baseline_compile_s": c_ddpm, "success": succ["ddim10"], "baseline_success": succ["ddpm100"]}
    out = {"benchmark": "diffusion_sampling", "size": args.size, "device": jax.devices()[0].platform,
           "versions": versions(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "rows": [row]}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_json_atomic(args.out, out)
    print(row)


if __name__ == "__main__":
    main()
