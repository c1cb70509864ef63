"""Env-steps/s of FailureBench rollouts: Python loop of jitted single steps vs jit(vmap(step)) loop vs
jit(lax.scan(vmap(step))) at 16/64/256/1024 envs, plus one whole PPO iteration. Writes results/bench/brax_rollout.json.
The scan also runs in child processes (`CHILD_CONFIGS`): split over 2 XLA host devices by `shard_map`, and with
single-threaded Eigen and no YNN fusions on 1 and 2 devices; each child's 16-env rollout must match the default
one within 1e-4 (the flags change the summation order only).

The limit of every rollout row is native MuJoCo on the same `MjModel` (`env.sys.mj_model`, the same timestep and
n_frames physics steps per env step, the same constant control): `mujoco.rollout` over the same number of envs with
1 thread (one core) and 2 threads (both cores), timed in the same process. Native MuJoCo only integrates the
physics (no observation, reward or termination), so it is an upper bound for the env step. Each row also gives
the process CPU seconds per wall second during its timing (how many cores it used). compile_s is a fresh
compile (`jax.clear_caches()` first).

Usage: python benchmarks/brax_rollout.py --size=tiny|full|gpu [--out=results/bench/brax_rollout.json]

`--size=gpu` (benchmarks/gpu_suite.sh, issue 19 item 7) runs 16 and 4096 envs on the default device against
native MuJoCo on 1 thread and on every host core, without the CPU-setting children and the PPO rows.
"""
import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.bench import SINGLE_THREAD_EIGEN, child_json, fresh_compile_s, median_time
from jaxlab.core.metrics import write_json_atomic
from jaxlab.farl.envs import make_env
from jaxlab.farl.ppo import POLICY, TWIN, VALUE, WM_MEMBER, make_arm, make_train


def native_steps_per_s(env, n: int, T: int, action, nthread: int, reps: int) -> tuple[float, float]:
    """(env-steps/s, CPU s per wall s) of native MuJoCo (`mujoco.rollout`, `nthread` threads) for n envs x T env
    steps of n_frames physics steps each, from the model's initial state under a constant control."""
    import mujoco
    from mujoco import rollout
    m = env.sys.mj_model
    nstep = T * env._n_frames
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    s0 = np.zeros(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, mujoco.MjData(m), s0, spec)
    init, ctrl = np.tile(s0, (n, 1)), np.tile(np.asarray(action, np.float64), (n, nstep, 1))
    datas = [mujoco.MjData(m) for _ in range(nthread)]
    with rollout.Rollout(nthread=nthread) as r:
        run = lambda: r.rollout([m] * n, datas, init, ctrl, nstep=nstep)
        run()
        c0, t0 = time.process_time(), time.perf_counter()
        med = median_time(run, reps)
        util = (time.process_time() - c0) / (time.perf_counter() - t0)
    return n * T / med, util


# The rollout rows also run in child processes under other XLA:CPU settings (`SINGLE_THREAD_EIGEN`, see
# jaxlab.core.bench). MJX's step is hundreds of tiny ops (nv = 4, 4 constraint rows per env), so both settings pay
# off here; rollouts agree with the default to ~1e-6 over 200 steps.
CHILD_CONFIGS = (  # (devices, extra XLA flags, label)
    (2, "", "on 2 host devices"),
    (1, SINGLE_THREAD_EIGEN, "on 1 host device, single-threaded Eigen, no YNN fusions"),
    (2, SINGLE_THREAD_EIGEN, "on 2 host devices, single-threaded Eigen, no YNN fusions"),
)


def sharded_scan_rows(size: str, devices: int, flags: str = "") -> dict:
    """In a fresh process with `devices` XLA host devices and the extra XLA `flags`: the scan of vmapped steps with
    the envs split over the devices by `shard_map` (each device one core's thread pool) -> {"rows": [{num_envs,
    env_steps_per_s, cpu_per_wall, compile_s}], "obs16": the final observations of the 16-env rollout}."""
    return child_json(__file__, [f"--size={size}", f"--sharded_child={devices}"], devices, flags)


def _sharded_child(size: str, devices: int) -> None:
    """The child of `sharded_scan_rows`: prints its rows as one JSON line."""
    import inspect
    import json
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    try:
        from jax import shard_map
    except ImportError:                                # older jax
        from jax.experimental.shard_map import shard_map
    kw = {"check_vma": False} if "check_vma" in inspect.signature(shard_map).parameters else {"check_rep": False}
    env = make_env("bounded_push")
    T, reps = _steps_reps(size)
    mesh = Mesh(np.array(jax.devices()[:devices]), ("data",))
    rows, obs16 = [], None
    for n in _sizes(size):
        a = jnp.tile(jnp.array([0.5, 0.1]), (n // devices, 1))
        roll = lambda x: jax.lax.scan(lambda c, _: (jax.vmap(env.step)(c, a), None), x, None, length=T)[0].obs
        s = jax.device_put(jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), n)),
                           NamedSharding(mesh, PartitionSpec("data")))
        f = jax.jit(shard_map(roll, mesh=mesh, in_specs=PartitionSpec("data"), out_specs=PartitionSpec("data"), **kw))
        comp = fresh_compile_s(f, s)
        o = jax.block_until_ready(f(s))
        if n == 16:                                    # the parity check against the parent's 16-env scan
            obs16 = np.asarray(o).tolist()
        med, util = _cpu_util(lambda: f(s), reps)
        rows.append({"num_envs": n, "env_steps_per_s": n * T / med, "cpu_per_wall": util, "compile_s": comp})
    print(json.dumps({"rows": rows, "obs16": obs16}))


def _sizes(size: str) -> list:
    return {"tiny": [16], "full": [16, 64, 256, 1024], "gpu": [16, 4096]}[size]


def _steps_reps(size: str) -> tuple[int, int]:
    """(env steps per rollout, timing repeats): one place for the parent and the children, whose 16-env
    rollouts must be the same rollout for the parity check."""
    return {"tiny": (20, 2), "full": (100, 5), "gpu": (100, 3)}[size]


def _cpu_util(fn, reps):
    c0, t0 = time.process_time(), time.perf_counter()
    med = median_time(fn, reps)
    return med, (time.process_time() - c0) / (time.perf_counter() - t0)


def main(size, out_path="results/bench/brax_rollout.json"):
    load0 = os.getloadavg()[0]
    env = make_env("bounded_push")
    T, reps = _steps_reps(size)
    ncore = os.cpu_count() if size == "gpu" else 2           # native MuJoCo on every core of the host
    sizes = _sizes(size)
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
        cv = fresh_compile_s(vstep, s, a)
        cs = fresh_compile_s(scan, s)
        jax.block_until_ready(vloop())
        jax.block_until_ready(scan(s))
        # parity: the three ways agree
        if n == sizes[0]:
            ref16 = np.asarray(scan(s))   # also the reference of the child processes' rollouts below
            np.testing.assert_allclose(np.asarray(vloop()), ref16, atol=1e-4)
            # single env vs env 0 of the batch over a short prefix (contacts make long horizons chaotic)
            np.testing.assert_allclose(np.asarray(vloop(10))[0], np.asarray(loop1(10)), atol=1e-4)
        (tv, uv), (ts_, us) = _cpu_util(vloop, reps), _cpu_util(lambda: scan(s), reps)
        nat1, u1 = native_steps_per_s(env, n, T, a1, 1, reps)
        nat2, u2 = native_steps_per_s(env, n, T, a1, ncore, reps)
        limit = {"limit": "native MuJoCo (mujoco.rollout, same MjModel and n_frames, physics only)",
                 "native_1core_env_steps_per_s": nat1, "native_1core_cpu_per_wall": u1,
                 f"native_{ncore}core_env_steps_per_s": nat2, f"native_{ncore}core_cpu_per_wall": u2}
        for impl, med, comp, util in (("jit(vmap(step)) loop", tv, cv, uv), ("jit(lax.scan(vmap(step)))", ts_, cs, us)):
            rows.append({"case": {"num_envs": n, "steps": T}, "impl": impl, "baseline": "python loop of jit(step)",
                         "median_s": med, "baseline_median_s": base * n * T, "env_steps_per_s": n * T / med,
                         "baseline_env_steps_per_s": 1.0 / base, "speedup": base * n * T / med, "compile_s": comp,
                         "cpu_per_wall": util, **limit, "ratio_to_native_1core": (n * T / med) / nat1,
                         f"ratio_to_native_{ncore}core": (n * T / med) / nat2})
    # the same scan in child processes: envs split over 2 XLA host devices, and the XLA:CPU settings above
    by_n = {r["case"]["num_envs"]: r for r in rows if r["impl"] == "jit(lax.scan(vmap(step)))"}
    for devices, flags, label in CHILD_CONFIGS if size != "gpu" else ():
        child = sharded_scan_rows(size, devices, flags)
        # parity: the same rollout as the default single-device scan (summation order only)
        diff16 = float(np.abs(np.asarray(child["obs16"]) - ref16).max())
        np.testing.assert_allclose(np.asarray(child["obs16"]), ref16, atol=1e-4)
        for sr in child["rows"]:
            ref, med = by_n[sr["num_envs"]], sr["num_envs"] * T / sr["env_steps_per_s"]
            rows.append({**ref, "impl": f"jit(shard_map(lax.scan(vmap(step)))) {label}", "xla_flags": flags,
                         "devices": devices, "max_abs_obs_diff_vs_default_16envs": diff16, "median_s": med,
                         "env_steps_per_s": sr["env_steps_per_s"], "speedup": ref["baseline_median_s"] / med,
                         "compile_s": sr["compile_s"], "cpu_per_wall": sr["cpu_per_wall"],
                         "ratio_to_native_1core": sr["env_steps_per_s"] / ref["native_1core_env_steps_per_s"],
                         f"ratio_to_native_{ncore}core":
                             sr["env_steps_per_s"] / ref[f"native_{ncore}core_env_steps_per_s"]})
    # one whole PPO iteration (FARL arm: the world-model critic is queried every step)
    n, L = 16, 64
    train = make_train(env, num_envs=n, rollout_len=L, iterations=1)
    o, ac = jnp.zeros((12,)), jnp.zeros((2,))
    ks = jax.random.split(jax.random.PRNGKey(1), 5)
    pre = {"pi": POLICY.init(ks[0], o), "v": VALUE.init(ks[1], o), "rec": POLICY.init(ks[2], o),
           "wm": jax.vmap(lambda k: WM_MEMBER.init(k, o, ac))(jax.random.split(ks[3], 5)), "q": TWIN.init(ks[4], o, ac)}
    tj = jax.jit(train)
    for arm in ("vanilla", "farl") if size != "gpu" else ():
        comp = fresh_compile_s(tj, jax.random.PRNGKey(0), make_arm(arm), pre)
        jax.block_until_ready(tj(jax.random.PRNGKey(0), make_arm(arm), pre))
        med = median_time(lambda: tj(jax.random.PRNGKey(0), make_arm(arm), pre), reps)
        rows.append({"case": {"num_envs": n, "rollout_len": L, "arm": arm}, "impl": "ppo iteration (rollout+update)",
                     "baseline": "python loop of jit(step)", "median_s": med, "baseline_median_s": base * n * L,
                     "env_steps_per_s": n * L / med, "speedup": base * n * L / med, "compile_s": comp})
    import brax
    import mujoco
    out = {"benchmark": "brax_rollout", "device": jax.devices()[0].platform, "size": size, "backend": "mjx",
           "versions": {"jax": jax.__version__, "brax": brax.__version__, "mujoco": mujoco.__version__,
                        "python": platform.python_version()},
           "cpu_count": os.cpu_count(), "loadavg_1m_start": load0, "loadavg_1m_end": os.getloadavg()[0],
           "device_kind": jax.devices()[0].device_kind, "native_threads": [1, ncore],
           "note": ("the load average is recorded at start and end; ratios measured in the same process are the "
                    "signal when the machine is shared"),
           "single_step_python_loop": {"env_steps_per_s": 1.0 / base, "compile_s": c1}, "rows": rows}
    write_json_atomic(out_path, out)
    for r in rows:
        nat = (f", native 1 core {r['native_1core_env_steps_per_s']:.0f} / {ncore} cores "
               f"{r[f'native_{ncore}core_env_steps_per_s']:.0f}"
               if "native_1core_env_steps_per_s" in r else "")
        print(r["case"], r["impl"], f"{r['env_steps_per_s']:.0f} steps/s, x{r['speedup']:.1f}{nat}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="tiny", choices=["tiny", "full", "gpu"])
    p.add_argument("--out", default="results/bench/brax_rollout.json")
    p.add_argument("--sharded_child", type=int, default=0, help="internal: run the sharded rows on N devices")
    args = p.parse_args()
    if args.sharded_child:
        _sharded_child(args.size, args.sharded_child)
    else:
        main(args.size, args.out)
