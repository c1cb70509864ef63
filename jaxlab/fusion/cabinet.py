"""Latch cabinet: a Brax (``mjx`` backend) door whose latch release is heard (a click), not seen, for ~2 steps.

Scene (MJCF, ``<compiler angle="radian"/>``): a door (box, 0.6 m, ~1 kg m^2 about its hinge) on a vertical hinge
``door_hinge`` (range [0, 100 deg] in radians), a handle body on a spring-loaded slide ``handle_slide`` (range
[0, 3 cm], stiffness 100 N/m) near the free edge, two actuators: ``pull`` (a motor on the handle site, i.e. an
external pull along the door's outward normal, ctrl = F in N) and ``latch`` (a general actuator on the hinge with
affine gain, force = ctrl * (-K phi - D phi')): the environment drives ctrl = 1 while latched and 0 after the
release, so the latch is a stiff spring/damper that MuJoCo integrates inside every physics substep.

Latch (hidden per episode, spec "Env B"): the pawl only moves while the pull exceeds the detent force
``detent`` = 0.8, A' = A + dt (F - detent) if F > detent else decay * A (the pawl springs back when the pull
drops), and the latch opens in the step where A passes F_l ~ U(0.5, 1.5). Pulses of hard pulling therefore
cannot release it: only a sustained hard pull does. The door is free during that whole release step.
At release a click (5 ms broadband burst + 2.5 kHz decaying tone) is rendered into that step's 0.1 s of 16 kHz
audio, starting at the sample where A crossed F_l; every other step has background noise only.

Failure "slam": more than ``slam_steps`` = 2 steps with F > 0.8 counted from the release step on (the release
step itself counts: the pull acted on the free door), or timeout. Success: door angle > 60 deg without slam.

Leakage design: the door is heavy, so two steps of maximal pull after the release move its tip by < 0.5 px; it is
drawn with hard (thresholded) coverage, so sub-pixel motion changes no pixel. Proprio = [handle slide / range,
hand velocity along the pull (2-step lag), previous F / 2]: the physical channels lag by two steps. So only audio
says "released, stop pulling now"; vision and proprio see it at decision r + 3, when the third hard step (r + 2)
has already slammed the door.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import scene
from jaxlab.fusion.audio import SR
from jaxlab.fusion.pour import Obs, scan_expert
from jaxlab.fusion.raster import box_coverage


class CabinetParams(NamedTuple):
    dt: float = 0.1               # control step (s) = n_substeps * timestep
    timestep: float = 0.02
    horizon: int = 45
    max_force: float = 2.0
    detent: float = 0.8           # pawl moves only above this pull; also the slam force
    decay: float = 0.5            # accumulated pawl travel kept per step without a hard pull
    threshold_lo: float = 0.5
    threshold_hi: float = 1.5
    slam_steps: int = 2           # allowed hard steps counted from the release step
    open_angle: float = float(np.deg2rad(60.0))
    latch_k: float = 2000.0       # latch stiffness (N m / rad) and damping
    latch_d: float = 50.0
    door_mass: float = 8.0
    hinge_damping: float = 0.2
    handle_k: float = 100.0
    handle_range: float = 0.03
    image_size: int = 24
    samples_per_step: int = 1600
    pixel_noise: float = 0.05
    audio_background: float = 0.003
    click_gain: float = 0.5
    click_hz: float = 2500.0
    click_tau: float = 0.012      # tone decay (s)
    burst_s: float = 0.005
    lag: int = 2                  # proprio lag (steps) of the physical channels
    # distractor knocks (0 = the original task): in each step, with probability distractor_rate, a knock (the
    # click's waveform at distractor_hz, gain distractor_gain) starts at a uniform sample of that step's audio
    distractor_rate: float = 0.0
    distractor_hz: float = 1700.0
    distractor_gain: float = 0.0
    expert_threshold: float = 10.0  # the expert's click_score threshold


DOOR_LEN = 0.6
HANDLE_X = 0.5
PROPRIO_DIM = 3


def _mjcf(p: CabinetParams) -> str:
    L, w = DOOR_LEN, 0.02
    return f"""
<mujoco model="latch_cabinet">
  <compiler angle="radian"/>
  <option timestep="{p.timestep}" iterations="4" ls_iterations="4" gravity="0 0 0"><flag eulerdamp="disable"/></option>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="door" pos="0 0 0">
      <joint name="door_hinge" type="hinge" axis="0 0 -1" range="0 {np.deg2rad(100.0):.6f}" limited="true"
             damping="{p.hinge_damping}"/>
      <geom name="door" type="box" pos="{L / 2} 0 0" size="{L / 2} {w} 0.4" mass="{p.door_mass}"/>
      <body name="handle" pos="{HANDLE_X} {-w} 0">
        <joint name="handle_slide" type="slide" axis="0 -1 0" range="0 {p.handle_range}" limited="true"
               stiffness="{p.handle_k}" springref="0" damping="4"/>
        <geom name="handle" type="box" size="0.03 0.01 0.02" mass="0.1"/>
        <site name="grip" pos="0 0 0"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="pull" site="grip" gear="0 -1 0 0 0 0"/>
    <general name="latch" joint="door_hinge" gaintype="affine" gainprm="0 {-p.latch_k} {-p.latch_d}"
             biastype="none"/>
  </actuator>
</mujoco>"""


def _system(p: CabinetParams):
    return scene.load_system(_mjcf(p))


def mj_model(p: CabinetParams = CabinetParams()):
    """The compiled ``mujoco.MjModel`` of the scene (for inspection/tests)."""
    import mujoco

    return mujoco.MjModel.from_xml_string(_mjcf(p))


class CabinetState(NamedTuple):
    ps: Any                   # brax mjx pipeline State
    accum: jnp.ndarray        # pawl travel A
    threshold: jnp.ndarray    # hidden F_l
    latched: jnp.ndarray      # bool
    released_now: jnp.ndarray  # bool: the latch opened in the last step
    click_frac: jnp.ndarray   # where inside the release step A crossed F_l, in [0, 1]
    release_t: jnp.ndarray    # step index of the release (-1 before)
    hard_after: jnp.ndarray   # number of steps with F > detent from the release step on
    slam: jnp.ndarray         # bool, absorbing
    slam_t: jnp.ndarray       # step of the slam (-1 if none)
    opened: jnp.ndarray       # bool: angle ever > open_angle before any slam
    hist: jnp.ndarray         # [lag + 1, 2] (slide, hand velocity) of the last lag + 1 states, oldest first
    prev_action: jnp.ndarray
    t: jnp.ndarray


def door_angle(s: CabinetState):
    return s.ps.q[0]


def _phys(ps):
    """(handle slide, hand velocity along the pull) of a pipeline state."""
    return jnp.stack([ps.q[1], ps.qd[1] + HANDLE_X * ps.qd[0]])


def reset(key, p: CabinetParams = CabinetParams()) -> CabinetState:
    from brax.mjx import pipeline

    sys = _system(p)
    ps = pipeline.init(sys, jnp.zeros(sys.q_size()), jnp.zeros(sys.qd_size()))
    z, i0 = jnp.zeros(()), jnp.zeros((), jnp.int32)
    f = jnp.zeros((), bool)
    return CabinetState(ps=ps, accum=z, threshold=jax.random.uniform(key, (), minval=p.threshold_lo,
                                                                        maxval=p.threshold_hi),
                        latched=jnp.ones((), bool), released_now=f, click_frac=z, release_t=i0 - 1,
                        hard_after=i0, slam=f, slam_t=i0 - 1, opened=f,
                        hist=jnp.tile(_phys(ps)[None], (p.lag + 1, 1)), prev_action=z, t=i0)


def step(s: CabinetState, action, p: CabinetParams = CabinetParams()) -> CabinetState:
    """One control step: latch logic, then dt / timestep mjx substeps. action: scalar (or [1]) pull force,
    clipped to [0, max_force] (use :func:`check_action` to reject out-of-range input eagerly)."""
    F = jnp.clip(jnp.reshape(action, ()), 0.0, p.max_force)
    hard = F > p.detent
    a_new = jnp.where(hard, s.accum + p.dt * (F - p.detent), p.decay * s.accum)
    release = s.latched & (a_new >= s.threshold)
    frac = jnp.clip((s.threshold - s.accum) / jnp.maximum(a_new - s.accum, 1e-6), 0.0, 1.0)
    latched = s.latched & ~release
    sys = _system(p)
    ctrl = jnp.stack([F, latched.astype(jnp.float32)])
    n_sub = int(round(p.dt / p.timestep))
    ps = scene.physics_substeps(sys, s.ps, ctrl, n_sub)
    release_t = jnp.where(release, s.t, s.release_t)
    hard_after = s.hard_after + (~latched & hard).astype(jnp.int32)
    slam_now = ~s.slam & (hard_after > p.slam_steps)
    slam = s.slam | slam_now
    opened = s.opened | (~slam & (ps.q[0] > p.open_angle))
    hist = jnp.concatenate([s.hist[1:], _phys(ps)[None]], 0)
    return s._replace(ps=ps, accum=a_new, latched=latched, released_now=release,
                      click_frac=jnp.where(release, frac, s.click_frac), release_t=release_t, hard_after=hard_after,
                      slam=slam, slam_t=jnp.where(slam_now, s.t, s.slam_t), opened=opened, hist=hist,
                      prev_action=F, t=s.t + 1)


# ----------------------------------------------------------------------------------------------- rendering
def _hard_box(img, center_xy, half_wh, angle, intensity):
    cov = (box_coverage(img.shape[0], img.shape[1], center_xy, half_wh, angle) > 0.5).astype(img.dtype)
    return img * (1.0 - cov) + intensity * cov


def render_image(s: CabinetState, key, p: CabinetParams = CabinetParams()):
    """Top view, 24x24 gray: static frame, the door (hinge at the left, 16 px long, opening downward) and its
    handle knob, both hard-rasterised (a pixel is covered iff its centre is inside), plus pixel noise. [H, W]."""
    H = p.image_size
    scale = 16.0 / DOOR_LEN
    hinge = jnp.array([4.0, 10.0])  # pixel boundary: edges sit half a pixel from the pixel centres
    phi = door_angle(s)
    img = jnp.zeros((H, H))
    img = _hard_box(img, (2.0, 9.0), (2.0, 3.0), 0.0, 0.4)     # cabinet frame (left)
    img = _hard_box(img, (21.0, 9.0), (2.0, 3.0), 0.0, 0.4)    # cabinet frame (right)
    d = jnp.array([jnp.cos(phi), jnp.sin(phi)])                # screen y down = opening direction
    n = jnp.array([-jnp.sin(phi), jnp.cos(phi)])
    img = _hard_box(img, hinge + 0.5 * DOOR_LEN * scale * d, (0.5 * DOOR_LEN * scale, 1.0), -phi, 1.0)
    knob = hinge + HANDLE_X * scale * d + 2.0 * n
    img = _hard_box(img, knob, (1.0, 1.0), -phi, 0.7)
    return img + p.pixel_noise * jax.random.normal(key, (H, H))


def click_waveform(key, onset, p: CabinetParams = CabinetParams()):
    """The release click starting at sample ``onset`` (traced int ok): a 5 ms white-noise burst with a
    linear decay plus a 2.5 kHz tone decaying with tau = click_tau. Returns [samples_per_step]."""
    n = p.samples_per_step
    tt = (jnp.arange(n) - onset) / SR
    on = tt >= 0
    burst = jax.random.normal(key, (n,)) * jnp.clip(1.0 - tt / p.burst_s, 0.0, 1.0)
    tone = jnp.sin(2 * jnp.pi * p.click_hz * tt) * jnp.exp(-jnp.maximum(tt, 0.0) / p.click_tau)
    return p.click_gain * jnp.where(on, 0.5 * burst + tone, 0.0)


def render_audio(s: CabinetState, key, p: CabinetParams = CabinetParams()):
    """0.1 s of 16 kHz audio of the last step: background noise, plus the click iff the latch opened in it (onset
    at the crossing sample); a click that starts late in a step rings on into the next step's audio. With
    ``distractor_rate`` > 0, a distractor knock (:func:`distractor_waveform`) may sound in any step. [N]."""
    k1, k2 = jax.random.split(key)
    onset = jnp.floor(s.click_frac * (p.samples_per_step - 1)).astype(jnp.int32)
    now = (s.release_t >= 0) & (s.release_t == s.t - 1)
    prev = (s.release_t >= 0) & (s.release_t == s.t - 2)
    onset = jnp.where(prev, onset - p.samples_per_step, onset)
    click = click_waveform(k1, onset, p) * (now | prev)
    wave = click + p.audio_background * jax.random.normal(k2, (p.samples_per_step,))
    if p.distractor_rate > 0:  # static: the original task draws no extra keys (its audio is unchanged)
        wave = wave + distractor_waveform(jax.random.fold_in(key, 1), p)
    return wave


def distractor_waveform(key, p: CabinetParams = CabinetParams()):
    """A distractor knock in this step's audio with probability ``distractor_rate``: the click's waveform (burst +
    decaying tone) at ``distractor_hz`` with gain ``distractor_gain``, starting at a uniform sample. [N]."""
    k_on, k_at, k_wave = jax.random.split(key, 3)
    on = jax.random.bernoulli(k_on, p.distractor_rate)
    at = jax.random.randint(k_at, (), 0, p.samples_per_step)
    knock = click_waveform(k_wave, at, p._replace(click_hz=p.distractor_hz, click_gain=p.distractor_gain))
    return jnp.where(on, knock, 0.0)


def proprio(s: CabinetState, p: CabinetParams = CabinetParams()):
    """[handle slide / range, hand velocity along the pull (m/s, x10), both ``lag`` steps old; previous F / 2]. [3]"""
    old = s.hist[0]
    return jnp.stack([old[0] / p.handle_range, 10.0 * old[1], s.prev_action / p.max_force])


def observe(s: CabinetState, key, p: CabinetParams = CabinetParams()) -> Obs:
    k1, k2 = jax.random.split(key)
    return Obs(render_image(s, k1, p), render_audio(s, k2, p), proprio(s, p))


def success(s: CabinetState, p: CabinetParams = CabinetParams()):
    """Final-state (success flag, slam flag)."""
    return s.opened & ~s.slam, s.slam


def episode_metrics(s: CabinetState, p: CabinetParams = CabinetParams()):
    """Per-episode metrics of a final state (float arrays): success, slam, timeout (no slam, never opened)."""
    succ, slam = success(s, p)
    return {"success": succ.astype(jnp.float32), "slam": slam.astype(jnp.float32),
            "timeout": (~s.opened & ~s.slam).astype(jnp.float32)}


# ------------------------------------------------------------------ scripted expert (audio-detected click)
def click_score(wave_n, p: CabinetParams = CabinetParams()):
    """Click detector from the audio alone: RMS of the waveform band-passed around click_hz (FFT mask +-300 Hz)
    divided by the background RMS. ~1 for background, >> 10 for a click. wave_n: [N] -> scalar."""
    spec = jnp.fft.rfft(wave_n)
    f = jnp.fft.rfftfreq(wave_n.shape[-1], 1.0 / SR)
    band = jnp.abs(f - p.click_hz) < 300.0
    e = jnp.sum(jnp.abs(spec) ** 2 * band) / wave_n.shape[-1] ** 2 * 2
    e_bg = p.audio_background ** 2 * jnp.mean(band) * 1.0
    return jnp.sqrt(e / e_bg)


class ExpertState(NamedTuple):
    heard: jnp.ndarray  # bool: a click has been heard


EXPERT_HARD, EXPERT_SOFT = 2.0, 0.6


def expert_init() -> ExpertState:
    return ExpertState(jnp.zeros((), bool))


def expert_action(es: ExpertState, s: CabinetState, obs: Obs, p: CabinetParams = CabinetParams()):
    """Pull hard (2.0) until the click is heard in the last step's audio (``click_score`` above
    ``expert_threshold``), then pull softly (0.6) to open the door.
    Uses only the observation (no privileged state). Returns (action scalar, ExpertState)."""
    heard = es.heard | (click_score(obs.audio, p) > p.expert_threshold)
    return jnp.where(heard, EXPERT_SOFT, EXPERT_HARD), ExpertState(heard)


class Trajectory(NamedTuple):
    """Same layout as :class:`jaxlab.fusion.pour.Trajectory` with CabinetState states."""

    first_obs: Obs
    states: CabinetState
    obs: Obs
    actions: jnp.ndarray
    executed: jnp.ndarray


def action_bounds(p: CabinetParams = CabinetParams()) -> tuple[float, float]:
    """(low, high) of the pull force: [0, max_force]."""
    return 0.0, p.max_force


def rollout_expert(key, p: CabinetParams = CabinetParams(), *, action_noise: float = 0.0,
                   light: bool = True) -> Trajectory:
    """One expert episode in a ``lax.scan``; DART-style executed-action noise N(0, action_noise^2) with clean
    labels. ``light`` drops the bulky physics state from the returned states (``ps`` keeps q and qd only)."""
    record = (lambda s: s._replace(ps=PhysQ(s.ps.q, s.ps.qd))) if light else (lambda s: s)
    return Trajectory(*scan_expert(key, p, reset=reset, observe=observe, step=step, expert_init=expert_init,
                                   expert_action=expert_action, bounds=action_bounds(p),
                                   action_noise=action_noise, record=record))


class PhysQ(NamedTuple):
    q: jnp.ndarray
    qd: jnp.ndarray


def rollout_actions(key, actions_t, p: CabinetParams = CabinetParams(), threshold=-1.0) -> Trajectory:
    """Open-loop episode of a fixed pull schedule actions_t: [T] (T <= horizon is not checked; any T works).
    ``threshold`` >= 0 overrides the hidden F_l (for tests and schedule studies). Returns a light Trajectory
    whose ``actions`` and ``executed`` are the schedule."""
    k_reset, k_obs, k_loop = jax.random.split(key, 3)
    s0 = reset(k_reset, p)
    s0 = s0._replace(threshold=jnp.where(threshold >= 0, threshold, s0.threshold))
    o0 = observe(s0, k_obs, p)

    def body(s, inp):
        a, k = inp
        s = step(s, a, p)
        o = observe(s, k, p)
        return s, (s._replace(ps=PhysQ(s.ps.q, s.ps.qd)), o)

    actions_t = jnp.asarray(actions_t, jnp.float32)
    _, (ss, oo) = jax.lax.scan(body, s0, (actions_t, jax.random.split(k_loop, actions_t.shape[0])))
    return Trajectory(o0, ss, oo, actions_t, actions_t)


def check_action(action, p: CabinetParams = CabinetParams()):
    """Eager validation for user-facing calls: action must be a finite scalar or [1] within [0, max_force]."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape not in ((), (1,)):
        raise ValueError(f"action must be a scalar or shape [1], got shape {a.shape}")
    if not np.all(np.isfinite(a)) or not np.all((a >= -1e-6) & (a <= p.max_force + 1e-6)):
        raise ValueError(f"action must be in [0, {p.max_force}], got {a}")
    return a


def check_obs(obs: Obs, p: CabinetParams = CabinetParams()):
    """Eager shape validation of one raw observation."""
    shapes = {"image": (p.image_size, p.image_size), "audio": (p.samples_per_step,), "proprio": (PROPRIO_DIM,)}
    for name, shp in shapes.items():
        got = tuple(np.shape(getattr(obs, name)))
        if got != shp:
            raise ValueError(f"obs.{name} must have shape {shp}, got {got}")
    return obs
