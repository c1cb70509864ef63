"""Env-steps/s of FailureBench rollouts: Python loop of jitted single steps vs jit(vmap(step)) loop vs
jit(lax.scan(vmap(step))) at 16/64/256 envs, plus one whole PPO iteration. Writes results/bench/brax_rollout.json.

Usage: python benchmarks/brax_rollout.py --size=tiny|full
"""
import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.bench import median_time
from jaxlab.core.metrics import write_json_atomic
from jaxlab.farl.envs import make_env
from jaxlab.farl.ppo import POLICY, TWIN, VALUE, WM_MEMBER, make_arm, make_train


def main(size):
    import os
    load0 = os.getloadavg()[0]
    env = make_env("bounded_push")
    T = 20 if size == "tiny" else 100
    reps = 2 if size == "tiny" else 5
    sizes = [16] if size == "tiny" else [16, 64, 256]
    a1 = jnp.array([0.5, 0.1])
    step1 = jax.jit(env.step)
    # the single env starts where env 0 of the first vmapped batch starts (parity check below)
    s1 = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), sizes[0])[0])

    def loop1(steps=T):
        s = s1
        for _ in range(steps):
            s = step1(s, a1)
        return s.obs

    t0 = time.perf_counter(); loop1(); c1 = time.perf_counter() - t0
    base = median_time(loop1, reps) / T  # seconds per single env-step
    rows = []
    for n in sizes:
        s = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), n))
        a = jnp.tile(a1, (n, 1))
        vstep = jax.jit(jax.vmap(env.step))

        def vloop(steps=T):
            x = s
            for _ in range(steps):
                x = vstep(x, a)
            return x.obs

        scan = jax.jit(lambda x: jax.lax.scan(lambda c, _: (jax.vmap(env.step)(c, a), None), x, None, length=T)[0].obs)
        # first calls (compile + one run) are timed before the parity check, which would otherwise absorb them
        t0 = time.perf_counter(); jax.block_until_ready(vloop()); cv = time.perf_counter() - t0
        t0 = time.perf_counter(); jax.block_until_ready(scan(s)); cs = time.perf_counter() - t0
        # parity: the three ways agree
        if n == sizes[0]:
            np.testing.assert_allclose(np.asarray(vloop()), np.asarray(scan(s)), atol=1e-4)
            # single env vs env 0 of the batch over a short prefix (contacts make long horizons chaotic)
            np.testing.assert_allclose(np.asarray(vloop(10))[0], np.asarray(loop1(10)), atol=1e-4)
        tv, ts_ = median_time(vloop, reps), median_time(lambda: scan(s), reps)
        for impl, med, comp in (("jit(vmap(step)) loop", tv, cv), ("jit(lax.scan(vmap(step)))", ts_, cs)):
            rows.append({"case": {"num_envs": n, "steps": T}, "impl": impl, "baseline": "python loop of jit(step)",
                         "median_s": med, "baseline_median_s": base * n * T, "env_steps_per_s": n * T / med,
                         "baseline_env_steps_per_s": 1.0 / base, "speedup": base * n * T / med, "compile_s": comp})
    # one whole PPO iteration (FARL arm: the world-model critic is queried every step)
    n, L = 16, 64
    train = make_train(env, num_envs=n, rollout_len=L, iterations=1)
    o, ac = jnp.zeros((12,)), jnp.zeros((2,))
    ks = jax.random.split(jax.random.PRNGKey(1), 5)
    pre = {"pi": POLICY.init(ks[0], o), "v": VALUE.init(ks[1], o), "rec": POLICY.init(ks[2], o),
           "wm": jax.vmap(lambda k: WM_MEMBER.init(k, o, ac))(jax.random.split(ks[3], 5)), "q": TWIN.init(ks[4], o, ac)}
    tj = jax.jit(train)
    for arm in ("vanilla", "farl"):
        t0 = time.perf_counter(); jax.block_until_ready(tj(jax.random.PRNGKey(0), make_arm(arm), pre)); comp = time.perf_counter() - t0
        med = median_time(lambda: tj(jax.random.PRNGKey(0), make_arm(arm), pre), reps)
        rows.append({"case": {"num_envs": n, "rollout_len": L, "arm": arm}, "impl": "ppo iteration (rollout+update)",
                     "baseline": "python loop of jit(step)", "median_s": med, "baseline_median_s": base * n * L,
                     "env_steps_per_s": n * L / med, "speedup": base * n * L / med, "compile_s": comp})
    import brax
    import mujoco
    import os
    out = {"benchmark": "brax_rollout", "device": jax.devices()[0].platform, "size": size, "backend": "mjx",
           "versions": {"jax": jax.__version__, "brax": brax.__version__, "mujoco": mujoco.__version__,
                        "python": platform.python_version()},
           "cpu_count": os.cpu_count(), "loadavg_1m_start": load0, "loadavg_1m_end": os.getloadavg()[0],
           "note": ("shared 2-core machine, heavily loaded by other agents' jobs (load average recorded); "
                    "absolute steps/s are depressed and noisy, ratios measured in the same process are the signal"),
           "single_step_python_loop": {"env_steps_per_s": 1.0 / base, "compile_s": c1}, "rows": rows}
    write_json_atomic("results/bench/brax_rollout.json", out)
    for r in rows:
        print(r["case"], r["impl"], f"{r['env_steps_per_s']:.0f} steps/s, x{r['speedup']:.1f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="tiny", choices=["tiny", "full"])
    main(p.parse_args().size)
