"""FailureBench-style Brax tasks: a velocity-controlled pusher, a puck and a task-specific hazard.

Three tasks modelled on FARL's FailureBench (arXiv 2601.07821, built there on MetaWorld; here MJCF scenes
stepped by Brax's `mjx` backend):

* ``bounded_push``      push the puck to a goal near the table edge; the puck leaving the table is a failure.
* ``fragile_push_wall`` push a fragile puck to a goal in front of a wall; touching the wall faster than
                        ``impact_speed`` is a failure (the object breaks).
* ``obstructed_push``   push the puck to a goal past a fragile vase sitting near the straight path; the pusher
                        or the puck touching the vase is a failure.

Each step returns a binary cost ``c_t`` (1 on the intervention-requiring (IR) failure step, else 0). A failure
terminates the episode (one IR failure = one "human reset"); the time limit truncates it (not a failure).
Both auto-reset the environment in place with a freshly randomised start; the true last observation of the
finished episode is kept in ``state.info["terminal_obs"]`` (for world-model targets and truncation bootstraps).

Observation (12,): pusher xy, puck xy, pusher velocity xy, puck velocity xy, goal xy, hazard xy.
Action (2,): desired pusher velocity in [-1, 1]^2, scaled by ``max_speed`` (m/s); clipped.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from brax import envs as brax_envs
from brax.envs.base import PipelineEnv, State

from jaxlab.core import scene

TASKS = ("bounded_push", "fragile_push_wall", "obstructed_push")
OBS_DIM = 12
ACT_DIM = 2
RADIUS = 0.05  # pusher and puck radius (m)

# Per-task layout: start of the puck, goal, hazard point (in the observation) and task geometry.
_LAYOUT = {
    "bounded_push": dict(puck=(-0.2, 0.0), goal=(0.32, 0.0), hazard=(0.5, 0.0), table=0.5),
    "fragile_push_wall": dict(puck=(-0.2, 0.0), goal=(0.28, 0.0), hazard=(0.42, 0.0), table=10.0,
                              wall_half=(0.02, 0.25)),
    "obstructed_push": dict(puck=(-0.2, 0.0), goal=(0.3, 0.0), hazard=(0.05, 0.1), table=10.0,
                            vase_radius=0.04),
}


def task_layout(task: str) -> dict:
    """The fixed geometry of `task` (puck start, goal, hazard, table half-size ...). Raises on unknown names."""
    if task not in _LAYOUT:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    return dict(_LAYOUT[task])


def _mjcf(task: str) -> str:
    lay = task_layout(task)
    px, py = lay["puck"]
    extra = ""
    if task == "fragile_push_wall":
        hx, hy = lay["hazard"]
        wx, wy = lay["wall_half"]
        extra = (f'<geom name="wall" type="box" pos="{hx} {hy} 0.05" size="{wx} {wy} 0.05" '
                 f'contype="1" conaffinity="1"/>')
    elif task == "obstructed_push":
        hx, hy = lay["hazard"]
        # The vase is fragile: it is not a collider; touching it is detected geometrically as the failure.
        extra = (f'<geom name="vase" type="sphere" pos="{hx} {hy} 0.05" size="{lay["vase_radius"]}" '
                 f'contype="0" conaffinity="0"/>')
    return f"""
<mujoco model="farl_{task}">
  <option timestep="0.01" iterations="4" ls_iterations="4"><flag eulerdamp="disable"/></option>
  <default><geom friction="0.5 0.005 0.0001" contype="1" conaffinity="1"/></default>
  <worldbody>
    <geom name="table" type="plane" size="2 2 0.1" contype="0" conaffinity="0"/>
    {extra}
    <body name="pusher" pos="{px - 0.15} {py} 0.05">
      <joint name="hx" type="slide" axis="1 0 0" damping="1"/>
      <joint name="hy" type="slide" axis="0 1 0" damping="1"/>
      <geom name="pusher" type="sphere" size="{RADIUS}" mass="1"/>
    </body>
    <body name="puck" pos="{px} {py} 0.05">
      <joint name="px" type="slide" axis="1 0 0" damping="0.5"/>
      <joint name="py" type="slide" axis="0 1 0" damping="0.5"/>
      <geom name="puck" type="sphere" size="{RADIUS}" mass="0.2"/>
    </body>
  </worldbody>
  <actuator>
    <velocity joint="hx" kv="10"/>
    <velocity joint="hy" kv="10"/>
  </actuator>
</mujoco>"""


def _system(task: str):
    return scene.load_system(_mjcf(task))


def failure_event(task: str, obs_next: jax.Array, obs_prev: jax.Array, *, impact_speed: float = 0.3) -> jax.Array:
    """Binary IR-failure cost c in {0., 1.} of the transition obs_prev -> obs_next (pure geometry).

    bounded_push: puck centre outside the table square. fragile_push_wall: puck touching the wall box while
    its speed (max over the two observations) exceeds `impact_speed`. obstructed_push: pusher or puck touching
    the vase. obs_*: [..., 12]; returns [...] float32.
    """
    lay = task_layout(task)
    puck = obs_next[..., 2:4]
    if task == "bounded_push":
        out = jnp.max(jnp.abs(puck), axis=-1) > lay["table"]
    elif task == "fragile_push_wall":
        centre = jnp.asarray(lay["hazard"], jnp.float32)
        half = jnp.asarray(lay["wall_half"], jnp.float32)
        d = jnp.abs(puck - centre) - half
        dist = jnp.linalg.norm(jnp.maximum(d, 0.0), axis=-1) + jnp.minimum(jnp.max(d, axis=-1), 0.0)
        speed = jnp.maximum(jnp.linalg.norm(obs_next[..., 6:8], axis=-1), jnp.linalg.norm(obs_prev[..., 6:8], axis=-1))
        out = (dist <= RADIUS + 2e-3) & (speed > impact_speed)
    else:
        vase = jnp.asarray(lay["hazard"], jnp.float32)
        reach = RADIUS + lay["vase_radius"]
        out = ((jnp.linalg.norm(puck - vase, axis=-1) < reach)
               | (jnp.linalg.norm(obs_next[..., 0:2] - vase, axis=-1) < reach))
    return out.astype(jnp.float32)


def task_reward(obs_next: jax.Array, *, success_radius: float = 0.05) -> jax.Array:
    """r = 1 - tanh(5 |puck - goal|) + 1{|puck - goal| < success_radius} - 0.1 tanh(5 |pusher - puck|).

    Positive per-step reward, so ending an episode early through a failure never pays. obs_next: [..., 12].
    """
    d_goal = jnp.linalg.norm(obs_next[..., 2:4] - obs_next[..., 8:10], axis=-1)
    d_push = jnp.linalg.norm(obs_next[..., 0:2] - obs_next[..., 2:4], axis=-1)
    return 1.0 - jnp.tanh(5.0 * d_goal) + (d_goal < success_radius) - 0.1 * jnp.tanh(5.0 * d_push)


class FailureBenchEnv(PipelineEnv):
    """One FailureBench task as a Brax `PipelineEnv` with cost, failure termination and in-place auto-reset.

    Args:
      task: one of `TASKS`.
      backend: Brax backend ("mjx" is the measured default; see benchmarks/brax_rollout.py).
      episode_length: time limit T (truncation, not failure).
      max_speed: action scale (m/s) for the pusher's velocity actuator.
      impact_speed: wall-impact speed threshold (m/s) of fragile_push_wall.
      start_noise: half-width of the uniform perturbation of the puck/pusher start and the goal.
    """

    def __init__(self, task: str = "bounded_push", backend: str = "mjx", episode_length: int = 50,
                 max_speed: float = 1.0, impact_speed: float = 0.3, start_noise: float = 0.03, n_frames: int = 5):
        if task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
        if episode_length < 1:
            raise ValueError(f"episode_length: expected >= 1, got {episode_length}")
        super().__init__(_system(task), backend=backend, n_frames=n_frames)
        self.task = task
        self.episode_length = int(episode_length)
        self.max_speed = float(max_speed)
        self.impact_speed = float(impact_speed)
        self.start_noise = float(start_noise)
        lay = task_layout(task)
        self._goal = jnp.asarray(lay["goal"], jnp.float32)
        self._hazard = jnp.asarray(lay["hazard"], jnp.float32)
        self._q0 = jnp.asarray(self.sys.init_q)  # [hx, hy, px, py] offsets from the body positions
        self._body0 = jnp.asarray([lay["puck"][0] - 0.15, lay["puck"][1], lay["puck"][0], lay["puck"][1]], jnp.float32)

    @property
    def observation_size(self) -> int:
        return OBS_DIM

    @property
    def action_size(self) -> int:
        return ACT_DIM

    # -- helpers ---------------------------------------------------------------------------------------
    def _obs(self, ps, goal):
        pos = self._body0 + ps.q  # world xy of pusher and puck
        return jnp.concatenate([pos, ps.qd, goal, self._hazard]).astype(jnp.float32)

    def _fresh(self, key):
        k1, k2 = jax.random.split(key)
        q = self._q0 + jax.random.uniform(k1, (4,), minval=-self.start_noise, maxval=self.start_noise)
        goal = self._goal + jax.random.uniform(k2, (2,), minval=-self.start_noise, maxval=self.start_noise)
        ps = self.pipeline_init(q, jnp.zeros(self.sys.qd_size()))
        return ps, goal

    def reset(self, rng: jax.Array) -> State:
        """rng: PRNG key -> State (obs [12], reward/done scalars, metrics cost/failures, info)."""
        key, sub = jax.random.split(rng)
        ps, goal = self._fresh(sub)
        obs = self._obs(ps, goal)
        zero = jnp.zeros((), jnp.float32)
        info = {"rng": key, "goal": goal, "t": jnp.zeros((), jnp.int32), "terminal_obs": obs,
                "truncation": zero, "cost": zero, "ep_return": zero, "ep_done_return": zero,
                "ep_success": zero, "nan_action": zero}
        return State(ps, obs, zero, zero, {"cost": zero}, info)

    def step(self, state: State, action: jax.Array) -> State:
        """One control step (n_frames physics substeps), then failure check and in-place auto-reset.

        action: [2] in [-1, 1] (clipped). NaN actions raise ValueError when concrete; under jit they are replaced
        by zeros and flagged in info["nan_action"], so the state never becomes NaN.
        """
        action = jnp.asarray(action)
        if action.shape != (ACT_DIM,):
            raise ValueError(f"action: expected shape ({ACT_DIM},), got {action.shape}")
        if not isinstance(action, jax.core.Tracer) and bool(jnp.any(jnp.isnan(action))):
            raise ValueError(f"action: expected finite values, got {np.asarray(action)}")
        is_nan = jnp.any(jnp.isnan(action))
        action = jnp.where(is_nan, 0.0, jnp.clip(action, -1.0, 1.0)) * self.max_speed
        goal = state.info["goal"]
        ps = self.pipeline_step(state.pipeline_state, action)
        obs_next = self._obs(ps, goal)
        cost = failure_event(self.task, obs_next, state.obs, impact_speed=self.impact_speed)
        reward = task_reward(obs_next)
        t = state.info["t"] + 1
        truncation = jnp.where((t >= self.episode_length) & (cost == 0), 1.0, 0.0)
        done = jnp.maximum(cost, truncation)
        ep_return = state.info["ep_return"] + reward
        success = (1.0 - cost) * (jnp.linalg.norm(obs_next[2:4] - goal) < 0.05)
        # In-place auto-reset with a freshly randomised start.
        key, sub = jax.random.split(state.info["rng"])
        ps0, goal0 = self._fresh(sub)
        obs0 = self._obs(ps0, goal0)
        sel = lambda a, b: jnp.where(done > 0, a, b)
        ps = jax.tree.map(sel, ps0, ps)
        info = {"rng": key, "goal": sel(goal0, goal), "t": jnp.where(done > 0, 0, t), "terminal_obs": obs_next,
                "truncation": truncation, "cost": cost, "ep_return": sel(0.0, ep_return),
                "ep_done_return": done * ep_return, "ep_success": done * success,
                "nan_action": is_nan.astype(jnp.float32)}
        return state.replace(pipeline_state=ps, obs=sel(obs0, obs_next), reward=reward, done=done,
                             metrics={"cost": cost}, info=info)


def register_envs() -> tuple[str, ...]:
    """Registers every task in Brax's registry as `farl_<task>` (explicit: importing jaxlab has no side
    effects); idempotent. Returns the registered names."""
    names = tuple(f"farl_{task}" for task in TASKS)
    for name, task in zip(names, TASKS):
        brax_envs.register_environment(name, functools.partial(FailureBenchEnv, task))
    return names


def make_env(task: str, **kwargs) -> FailureBenchEnv:
    """`FailureBenchEnv` by task name (after `register_envs()` also `brax.envs.get_environment("farl_<task>")`)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    return FailureBenchEnv(task, **kwargs)


def scripted_push_action(obs: jax.Array, *, waypoint: jax.Array | None = None, gain: float = 6.0,
                         push_gain: float = 2.0, behind: float = 0.11, speed_limit: float = 1.0) -> jax.Array:
    """A scripted pushing controller (the demonstrator). obs: [12] -> action [2] in [-1, 1].

    Moves the pusher to a point `behind` the puck on the far side from the target (the goal, or `waypoint`),
    approaching around the puck, then pushes along the puck->target line with a speed proportional to distance.
    """
    pusher, puck, goal = obs[0:2], obs[2:4], obs[8:10]
    target = goal if waypoint is None else waypoint
    to_t = target - puck
    dist = jnp.linalg.norm(to_t) + 1e-6
    u = to_t / dist
    contact_pt = puck - behind * u
    err = contact_pt - pusher
    aligned = jnp.dot(pusher - puck, -u) > 0.7 * behind  # pusher is behind the puck
    lateral = jnp.abs(jnp.dot(pusher - puck, jnp.array([-u[1], u[0]])))
    in_line = aligned & (lateral < 0.03)
    push = u * jnp.clip(push_gain * dist, 0.0, speed_limit) + gain * err
    # Not in line: go around (add a sideways component away from the puck when close to it).
    away = pusher - puck
    away_n = away / (jnp.linalg.norm(away) + 1e-6)
    close = jnp.linalg.norm(away) < 0.12
    approach = gain * err + jnp.where(close & ~aligned, 1.0, 0.0) * away_n
    a = jnp.where(in_line, push, approach)
    return jnp.clip(a, -speed_limit, speed_limit)


def demo_action(task: str, obs: jax.Array) -> jax.Array:
    """The task demonstrator: `scripted_push_action`, via a detour waypoint below the vase on obstructed_push."""
    if task == "obstructed_push":
        waypoint = jnp.where(obs[2] < -0.05, jnp.array([0.05, -0.07]), obs[8:10])
        return scripted_push_action(obs, waypoint=waypoint)
    return scripted_push_action(obs)


def retreat_action(obs: jax.Array, *, speed: float = 1.0) -> jax.Array:
    """The scripted recovery: move the pusher straight away from the puck (stop driving it); obs [12] -> [2]."""
    away = obs[0:2] - obs[2:4]
    return jnp.clip(speed * away / (jnp.linalg.norm(away) + 1e-6), -1.0, 1.0)
