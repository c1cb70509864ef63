"""FARL's offline data sets as tensorflow-datasets builders (no downloads, no TensorFlow needed to read).

One builder, `FarlDemos`, with a config per FailureBench task (and a `_tiny` variant for tests). Each config has
three splits, the three kinds of scripted demonstrations that FARL's offline stage uses:

* ``task``      the demonstrator with small Gaussian action noise (pretrains pi_task and the world model),
* ``failure``   an over-eager pusher with noise, which produces IR failures (teaches the failure head),
* ``recovery``  over-eager for a few steps, then the retreat controller (``rec`` = 1 on retreat steps; pi_rec).

Every example is one transition (obs, action, reward, cost, done, trunc, next_obs, rec) plus its env and time
index. `demo_splits` produces exactly the arrays the builder stores (generation is deterministic in the key), and
`experiments/farl.py` uses the same `offline.make_datasets` call in memory; tests check the two paths agree.
Build with ``jaxlab.core.datasets.prepare(FarlDemos, config="bounded_push")``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import tensorflow_datasets as tfds

from jaxlab.core.datasets import LocalCodePath

from jaxlab.farl.envs import ACT_DIM, OBS_DIM, TASKS

SPLITS = ("task", "failure", "recovery")


def demo_splits(task: str, *, seed: int = 1000, num_envs: int = 32, steps: int = 100, noise: float = 0.3,
                episode_length: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """{split: {feature: [num_envs * steps, ...]}} of scripted demonstrations, ordered (t, env) time-major.

    Same arrays as `offline.make_datasets(make_env(task, episode_length=...), PRNGKey(seed), ...)` flattened,
    plus `env`, `t` and `index` columns."""
    from jaxlab.farl import offline
    from jaxlab.farl.envs import make_env
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    env = make_env(task, episode_length=episode_length)
    raw = jax.jit(lambda k: offline.make_datasets(env, k, num_envs=num_envs, steps=steps, noise=noise))(
        jax.random.PRNGKey(seed))
    out = {}
    for split in SPLITS:
        flat = offline.flatten(raw[split])
        n = num_envs * steps
        flat["env"] = np.tile(np.arange(num_envs), steps).astype(np.int64)
        flat["t"] = np.repeat(np.arange(steps), num_envs).astype(np.int64)
        flat["index"] = np.arange(n, dtype=np.int64)
        out[split] = {k: np.asarray(v, np.int64 if k in ("env", "t", "index") else np.float32)
                      for k, v in flat.items()}
    return out


@dataclasses.dataclass
class DemoConfig(tfds.core.BuilderConfig):
    task: str = "bounded_push"
    seed: int = 1000
    num_envs: int = 32
    steps: int = 100
    noise: float = 0.3
    episode_length: int = 50


def _configs():
    out = []
    for task in TASKS:
        out.append(DemoConfig(name=task, description=f"{task}: 32 envs x 100 steps per split (the quick config)",
                              task=task))
        out.append(DemoConfig(name=f"{task}_full", description=f"{task}: 64 envs x 100 steps (the full config)",
                              task=task, num_envs=64))
        out.append(DemoConfig(name=f"{task}_tiny", description=f"{task}: 4 envs x 20 steps (tests)", task=task,
                              num_envs=4, steps=20))
    return out


class FarlDemos(LocalCodePath, tfds.core.GeneratorBasedBuilder):
    """Scripted task / failure / recovery demonstrations on the FailureBench-style Brax tasks (FARL offline data)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = _configs()

    def _info(self):
        vec = lambda d: tfds.features.Tensor(shape=(d,), dtype=np.float32)
        scalar = lambda dt=np.float32: tfds.features.Scalar(dtype=dt)
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "obs": vec(OBS_DIM), "action": vec(ACT_DIM), "next_obs": vec(OBS_DIM),
                "reward": scalar(), "cost": scalar(), "done": scalar(), "trunc": scalar(), "rec": scalar(),
                "env": scalar(np.int64), "t": scalar(np.int64), "index": scalar(np.int64)}),
            description="FARL offline demonstrations (arXiv 2601.07821 miniature): one transition per example.")

    def _split_generators(self, dl_manager):
        c = self.builder_config
        data = demo_splits(c.task, seed=c.seed, num_envs=c.num_envs, steps=c.steps, noise=c.noise,
                           episode_length=c.episode_length)
        return {split: self._generate_examples(data[split]) for split in SPLITS}

    def _generate_examples(self, arrays):
        for i in range(len(arrays["index"])):
            yield int(i), {k: v[i] for k, v in arrays.items()}
