"""Pour-to-level: a JAX liquid-flow task in which the fill level is carried only by audio.

Physics (spec "Env A", with the leakage fixes noted in notes/fusion.md):
  theta' = clip(theta + a, 0, theta_max),  q = k * relu(theta' - theta_c),  f' = f + q dt.
Hidden per episode: source level s0 ~ U(0.3, 1) (onset angle theta_c = 0.25 + 0.5 (1 - s0)), flow gain
k ~ U(0.7, 1.5) (independent of s0, so seeing the onset does not reveal the rate) and the initial fill
f0 ~ U(0, 0.25) (so counting steps does not reveal the fill). Goal f* ~ U(max(0.4, f0 + 0.15), 0.85).
Success: |f_T - f*| < 0.05 and f never above 1.

Observations: a 24x24 gray image (rotated source cup, opaque target cup, a stream of random width and
brightness while q > 0, pixel noise), proprio [theta, previous action / max, f*], and 0.1 s of 16 kHz audio:
band-passed noise at the quarter-wave resonance c / (4 L (1 - f)) of the target cup, loudness rising with q,
silent (background only) when q = 0.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlab.fusion.audio import SR, resonance_noise
from jaxlab.fusion.raster import draw_box


class PourParams(NamedTuple):
    dt: float = 0.1
    horizon: int = 60
    max_dtheta: float = 0.15
    theta_max: float = 1.2
    cup_length_m: float = 0.12
    sound_speed: float = 343.0
    pitch_fill_cap: float = 0.9
    image_size: int = 24
    samples_per_step: int = 1600
    pixel_noise: float = 0.05
    audio_background: float = 0.003
    audio_gain: float = 0.3
    success_tol: float = 0.05


class PourState(NamedTuple):
    theta: jnp.ndarray
    fill: jnp.ndarray
    theta_c: jnp.ndarray      # hidden
    k: jnp.ndarray            # hidden
    target: jnp.ndarray
    prev_action: jnp.ndarray
    flow: jnp.ndarray         # q of the last step
    overflow: jnp.ndarray     # bool, fill ever > 1
    t: jnp.ndarray


class Obs(NamedTuple):
    """One step's raw observation. image: [H, W]; audio: [N] waveform; proprio: [P]."""

    image: jnp.ndarray
    audio: jnp.ndarray
    proprio: jnp.ndarray


PROPRIO_DIM = 3


def resonance_hz(fill, p: PourParams = PourParams()):
    """Quarter-wave resonance of the air column above the liquid: c / (4 L (1 - min(f, cap)))."""
    return p.sound_speed / (4.0 * p.cup_length_m * (1.0 - jnp.clip(fill, 0.0, p.pitch_fill_cap)))


def fill_from_hz(freq_hz, p: PourParams = PourParams()):
    """Inverse of :func:`resonance_hz`."""
    return 1.0 - p.sound_speed / (4.0 * p.cup_length_m * freq_hz)


def reset(key, p: PourParams = PourParams()) -> PourState:
    k1, k2, k3, k4 = jax.random.split(key, 4)
    s0 = jax.random.uniform(k1, (), minval=0.3, maxval=1.0)
    f0 = jax.random.uniform(k3, (), minval=0.0, maxval=0.25)
    lo = jnp.maximum(0.4, f0 + 0.15)
    z = jnp.zeros(())
    return PourState(theta=z, fill=f0, theta_c=0.25 + 0.5 * (1.0 - s0),
                     k=jax.random.uniform(k2, (), minval=0.7, maxval=1.5),
                     target=lo + (0.85 - lo) * jax.random.uniform(k4, ()), prev_action=z, flow=z,
                     overflow=jnp.zeros((), bool), t=jnp.zeros((), jnp.int32))


def step(s: PourState, action, p: PourParams = PourParams()) -> PourState:
    """Advances one step. action: scalar (or [1]) tilt increment, clipped to [-max_dtheta, max_dtheta]."""
    a = jnp.clip(jnp.reshape(action, ()), -p.max_dtheta, p.max_dtheta)
    theta = jnp.clip(s.theta + a, 0.0, p.theta_max)
    q = s.k * jax.nn.relu(theta - s.theta_c)
    fill = s.fill + q * p.dt
    return s._replace(theta=theta, fill=fill, prev_action=a, flow=q, overflow=s.overflow | (fill > 1.0),
                      t=s.t + 1)


def render_image(s: PourState, key, p: PourParams = PourParams()):
    """24x24 gray frame. The stream width/brightness are random, the target cup is opaque. Returns [H, W]."""
    H = p.image_size
    k1, k2, k3 = jax.random.split(key, 3)
    img = jnp.zeros((H, H))
    img = draw_box(img, (0.72 * H, 0.8 * H), (0.14 * H, 0.17 * H), 0.0, 0.6)  # target cup (opaque)
    pivot = jnp.array([0.3 * H, 0.3 * H])
    img = draw_box(img, pivot, (0.08 * H, 0.2 * H), -s.theta, 1.0)  # source cup rotates with the tilt
    width = jax.random.uniform(k1, (), minval=0.3, maxval=1.2)
    bright = jax.random.uniform(k2, (), minval=0.3, maxval=0.9)
    streamed = draw_box(img, (0.62 * H, 0.48 * H), (width, 0.12 * H), 0.0, bright)
    img = jnp.where(s.flow > 0, streamed, img)
    return img + p.pixel_noise * jax.random.normal(k3, (H, H))


def render_audio(s: PourState, key, p: PourParams = PourParams()):
    """0.1 s of audio for the last step: resonance noise with RMS audio_gain * sqrt(q / 0.3). Returns [N]."""
    amp = p.audio_gain * jnp.sqrt(jax.nn.relu(s.flow) / 0.3)
    return resonance_noise(key, resonance_hz(s.fill, p), amp, n=p.samples_per_step,
                           background=p.audio_background)


def proprio(s: PourState, p: PourParams = PourParams()):
    """[theta, previous action / max_dtheta, target fill]. Returns [3]."""
    return jnp.stack([s.theta, s.prev_action / p.max_dtheta, s.target])


def observe(s: PourState, key, p: PourParams = PourParams()) -> Obs:
    k1, k2 = jax.random.split(key)
    return Obs(render_image(s, k1, p), render_audio(s, k2, p), proprio(s, p))


def success(s: PourState, p: PourParams = PourParams()):
    """Final-state success flag and absolute fill error."""
    err = jnp.abs(s.fill - s.target)
    return (err < p.success_tol) & ~s.overflow, err


def episode_metrics(s: PourState, p: PourParams = PourParams()):
    """Per-episode metrics of a final state (float arrays): success, fill_error, overflow."""
    succ, err = success(s, p)
    return {"success": succ.astype(jnp.float32), "fill_error": err, "overflow": s.overflow.astype(jnp.float32)}


# ------------------------------------------------------------------ scripted expert (oracle dynamics, audio fill)
class ExpertState(NamedTuple):
    phase: jnp.ndarray   # 0 tilt up until flow, 1 one more tilt step, 2 hold, 3 stop (tilt back)


def audio_fill_estimate(wave_n, p: PourParams = PourParams()):
    """Fill estimated from the audio alone: peak of the smoothed power spectrum -> inverse resonance.
    wave_n: [N]. Returns (fill estimate, rms)."""
    pw = jnp.abs(jnp.fft.rfft(wave_n)) ** 2
    pw = jnp.convolve(pw, jnp.ones(9) / 9.0, mode="same")
    freqs = jnp.fft.rfftfreq(wave_n.shape[-1], 1.0 / SR)
    return fill_from_hz(jnp.maximum(freqs[jnp.argmax(pw)], 1.0), p), jnp.sqrt(jnp.mean(wave_n**2))


def expert_init() -> ExpertState:
    return ExpertState(jnp.zeros((), jnp.int32))


def expert_action(es: ExpertState, s: PourState, obs: Obs, p: PourParams = PourParams()):
    """Scripted expert: tilt up until the audio says liquid flows, one more step, hold, and stop when the
    audio-derived fill plus the flow still to come is closest to the goal. Uses the hidden k, theta_c only
    to predict the flow during the stopping manoeuvre. Returns (action scalar, ExpertState)."""
    f_est, rms = audio_fill_estimate(obs.audio, p)
    flowing = rms > 5 * p.audio_background
    phase = es.phase
    phase = jnp.where((phase == 0) & flowing, 1, phase)
    # flow if we stop now (one step at theta - max) vs after holding one more step
    q_now = s.k * jax.nn.relu(s.theta - s.theta_c)
    q_stop = s.k * jax.nn.relu(s.theta - p.max_dtheta - s.theta_c)
    q_stop2 = s.k * jax.nn.relu(s.theta - 2 * p.max_dtheta - s.theta_c)
    f_stop = f_est + (q_stop + q_stop2) * p.dt
    f_hold = f_est + (q_now + q_stop + q_stop2) * p.dt
    stop = (phase >= 1) & flowing & (jnp.abs(f_stop - s.target) <= jnp.abs(f_hold - s.target))
    phase = jnp.where(stop | (phase == 3), 3, phase)
    a = jnp.select([phase == 0, phase == 1, phase == 2, phase == 3],
                   [p.max_dtheta, p.max_dtheta, 0.0, -p.max_dtheta])
    phase = jnp.where(phase == 1, 2, phase)
    return a, ExpertState(phase)


class Trajectory(NamedTuple):
    """A rollout. states: PourState with leading [T]; obs: Obs with leading [T] (obs[t] is seen after step t,
    obs before step 0 is ``first_obs``); actions: [T] expert (label) actions; executed: [T] executed actions."""

    first_obs: Obs
    states: PourState
    obs: Obs
    actions: jnp.ndarray
    executed: jnp.ndarray


def action_bounds(p: PourParams = PourParams()) -> tuple[float, float]:
    """(low, high) of the tilt increment: [-max_dtheta, max_dtheta]."""
    return -p.max_dtheta, p.max_dtheta


def scan_expert(key, p, *, reset, observe, step, expert_init, expert_action, bounds: tuple[float, float],
                action_noise: float = 0.0, record=lambda s: s):
    """One scripted-expert episode of any task in a ``lax.scan`` (pour and cabinet share it).

    The executed action is the expert's plus N(0, action_noise^2), clipped to ``bounds`` = (low, high); the recorded
    label stays the expert's (DART-style corrections). ``record(state)`` is what is stored per step.
    Returns (first_obs, states [T], obs [T], labels [T], executed [T]) for the task's ``Trajectory``."""
    k_reset, k_obs, k_loop = jax.random.split(key, 3)
    s0 = reset(k_reset, p)
    o0 = observe(s0, k_obs, p)

    def body(carry, k):
        s, es, o = carry
        k1, k2 = jax.random.split(k)
        a, es = expert_action(es, s, o, p)
        a_exec = jnp.clip(a + action_noise * jax.random.normal(k1, ()), *bounds)
        s = step(s, a_exec, p)
        o = observe(s, k2, p)
        return (s, es, o), (record(s), o, a, a_exec)

    _, (ss, oo, aa, ee) = jax.lax.scan(body, (s0, expert_init(), o0), jax.random.split(k_loop, p.horizon))
    return o0, ss, oo, aa, ee


def rollout_expert(key, p: PourParams = PourParams(), *, action_noise: float = 0.0) -> Trajectory:
    """One expert episode in a ``lax.scan``; with ``action_noise`` > 0 the executed action is perturbed by
    N(0, action_noise^2) while the recorded label stays the expert's (DART-style corrections)."""
    return Trajectory(*scan_expert(key, p, reset=reset, observe=observe, step=step, expert_init=expert_init,
                                   expert_action=expert_action, bounds=action_bounds(p),
                                   action_noise=action_noise))


def check_action(action, p: PourParams = PourParams()):
    """Eager validation for user-facing calls: action must be a scalar or [1] within [-max_dtheta, max_dtheta]."""
    import numpy as np

    a = np.asarray(action, dtype=np.float64)
    if a.shape not in ((), (1,)):
        raise ValueError(f"action must be a scalar or shape [1], got shape {a.shape}")
    if not np.all(np.abs(a) <= p.max_dtheta + 1e-6):
        raise ValueError(f"action must be in [-{p.max_dtheta}, {p.max_dtheta}], got {a}")
    return a
