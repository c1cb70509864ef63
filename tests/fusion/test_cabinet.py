"""Latch cabinet (Brax mjx): MJCF in radians, latch hold/release, click at the release step, slam on the exact
step, audio-oracle success vs audio-free failure (leakage), bad inputs, vmap == single environment."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.fusion import cabinet as C
from jaxlab.fusion import policy as PL
from jaxlab.fusion.audio import SR, log_mel

p = C.CabinetParams()
B = 64  # every schedule batch has this size, so the vmapped rollout compiles once


def _episode(key, actions_t, threshold, use_expert):
    """One episode driven by a fixed schedule or (use_expert) by the audio expert with DART noise 0.05 — a single
    scan for both, so the tests compile the mjx rollout once."""
    k_reset, k_obs, k_loop = jax.random.split(key, 3)
    s0 = C.reset(k_reset, p)
    s0 = s0._replace(threshold=jnp.where(threshold >= 0, threshold, s0.threshold))
    o0 = C.observe(s0, k_obs, p)

    def body(carry, inp):
        s, es, o = carry
        a_s, k = inp
        k1, k2 = jax.random.split(k)
        a_e, es = C.expert_action(es, s, o, p)
        a = jnp.where(use_expert, jnp.clip(a_e + 0.05 * jax.random.normal(k1, ()), 0.0, p.max_force), a_s)
        s = C.step(s, a, p)
        o = C.observe(s, k2, p)
        return (s, es, o), (s._replace(ps=C.PhysQ(s.ps.q, s.ps.qd)), o, a)

    _, (ss, oo, aa) = jax.lax.scan(body, (s0, C.expert_init(), o0),
                                   (actions_t, jax.random.split(k_loop, actions_t.shape[0])))
    return C.Trajectory(o0, ss, oo, aa, aa)


_run = jax.jit(jax.vmap(_episode))


def _batch(actions_bt, thresholds_b, seed=0, use_expert=False):
    a = np.asarray(actions_bt, np.float32)
    n = a.shape[0]
    a = np.concatenate([a, np.repeat(a[-1:], B - n, 0)])
    th = np.concatenate([thresholds_b, np.repeat(thresholds_b[-1:], B - n)]).astype(np.float32)
    tr = _run(jax.random.split(jax.random.PRNGKey(seed), B), jnp.asarray(a), jnp.asarray(th),
              jnp.full((B,), use_expert))
    return jax.tree.map(lambda x: np.asarray(x)[:n], tr)


@pytest.fixture(scope="module")
def run_schedules():
    return _batch


@pytest.fixture(scope="module")
def expert():
    """128 audio-expert episodes (hidden thresholds sampled)."""
    parts = [_batch(np.zeros((B, p.horizon)), -np.ones(B), seed=100 + i, use_expert=True) for i in range(2)]
    return jax.tree.map(lambda *x: np.concatenate(x), *parts)


def _sched(k_hard, soft=C.EXPERT_SOFT, T=p.horizon):
    return np.where(np.arange(T) < k_hard, 2.0, soft)


def test_mjcf_compiles_in_radians():
    m = C.mj_model(p)
    assert 'angle="radian"' in C._mjcf(p)
    np.testing.assert_allclose(m.jnt_range[0], [0.0, np.deg2rad(100.0)], rtol=1e-6)  # degrees would give 100
    np.testing.assert_allclose(m.jnt_range[1], [0.0, p.handle_range], rtol=1e-6)
    assert m.nu == 2 and m.njnt == 2
    assert C._system(p).q_size() == 2


def test_latch_holds_below_threshold_and_releases_past_it(run_schedules):
    T = p.horizon
    pulsed = np.tile([2.0, 2.0, 0.0], T)[:T]  # pawl travel decays between pulses: never reaches 0.5
    tr = run_schedules([_sched(T), np.full(T, 0.8), pulsed], np.array([1.0, 0.5, 0.5]))
    st = tr.states
    # closed form of the pawl travel under a sustained hard pull: A_k = k * dt * (2 - 0.8)
    np.testing.assert_allclose(st.accum[0, :8], 0.12 * np.arange(1, 9), rtol=1e-5)
    r = int(st.release_t[0, -1])
    assert r == 8  # A after 9 steps = 1.08 >= 1.0 > 0.96
    assert bool(st.latched[0, r - 1]) and not bool(st.latched[0, r])
    phi = st.ps.q[..., 0]
    assert np.abs(phi[0, :r]).max() < 1e-3  # held (latch spring deflection only)
    assert phi[0, r + 5] > 0.05 and phi[0, -1] > p.open_angle  # swings after the release
    for i in (1, 2):  # at the detent force / pulsed: never released, door stays shut
        assert int(st.release_t[i, -1]) == -1 and np.abs(phi[i]).max() < 1e-3


def test_click_rendered_exactly_at_release_step(run_schedules):
    tr = run_schedules([_sched(p.horizon)], np.array([1.0]))
    r = int(tr.states.release_t[0, -1])
    scores = np.asarray(jax.vmap(lambda w: C.click_score(w, p))(tr.obs.audio[0]))
    assert scores[r] > 20.0
    others = np.delete(np.arange(p.horizon), [r, r + 1])
    assert scores[others].max() < 2.0  # background only
    # spectral peak of the release step near 2.5 kHz; onset at the crossing sample (A crosses 1.0 at 1/3 step)
    w = tr.obs.audio[0, r]
    f = np.fft.rfftfreq(w.size, 1 / SR)
    assert abs(f[np.argmax(np.abs(np.fft.rfft(w)))] - p.click_hz) < 100.0
    onset = int(np.floor(float(tr.states.click_frac[0, r]) * (p.samples_per_step - 1)))
    assert onset == pytest.approx(p.samples_per_step / 3, abs=3)
    assert np.abs(w[:onset - 5]).max() < 6 * p.audio_background
    assert np.abs(w[onset:onset + 40]).max() > 0.2
    # the log-mel sees it too: the click step's log-mel energy is far above the background steps'
    lm = np.asarray(log_mel(jnp.asarray(tr.obs.audio[0]))).mean(axis=(-1, -2))
    assert lm[r] > lm[others].max() + 1.0


def test_slam_detected_on_exact_step(run_schedules):
    T = p.horizon
    r = 8  # threshold 1.0 (see above)
    tr = run_schedules([_sched(T), _sched(r + 2), _sched(r + 3)], np.array([1.0, 1.0, 1.0]))
    st = tr.states
    assert int(st.slam_t[0, -1]) == r + 2 and bool(st.slam[0, r + 2]) and not bool(st.slam[0, r + 1])
    # hard on the release step and the next one only: 2 steps -> no slam, door opens -> success
    assert not bool(st.slam[1, -1]) and bool(st.opened[1, -1])
    assert int(st.slam_t[2, -1]) == r + 2  # three hard steps from the release on
    m = jax.vmap(lambda s: C.episode_metrics(s, p))(jax.tree.map(lambda x: jnp.asarray(x[:, -1]), st))
    np.testing.assert_array_equal(np.asarray(m["success"]), [0, 1, 0])
    np.testing.assert_array_equal(np.asarray(m["slam"]), [1, 0, 1])


def test_audio_oracle_succeeds(expert):
    last = jax.tree.map(lambda x: jnp.asarray(x[:, -1]), expert.states)
    m = jax.vmap(lambda s: C.episode_metrics(s, p))(last)
    assert float(m["success"].mean()) >= 0.95, float(m["success"].mean())
    assert bool(np.all(expert.states.release_t[:, -1] >= 0))


def test_best_fixed_schedule_without_audio_fails(run_schedules):
    """No open-loop 'pull hard k steps, then softly' schedule opens the door reliably (release time is hidden)."""
    rng = np.random.default_rng(0)
    th = rng.uniform(p.threshold_lo, p.threshold_hi, B)
    succ = []
    for k in range(2, 17):
        tr = run_schedules(np.tile(_sched(k), (B, 1)), th, seed=k)
        succ.append(float(np.mean(tr.states.opened[:, -1] & ~tr.states.slam[:, -1])))
    assert max(succ) <= 0.45, succ


def test_release_hidden_from_vision_and_proprio_but_not_audio(expert):
    """Obs after step r-1 (latched) vs after step r (released): vision+proprio near chance, audio ~perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    r = expert.states.release_t[:, -1]
    n = r.size
    idx = np.arange(n)
    img = np.concatenate([expert.obs.image[idx, r - 1], expert.obs.image[idx, r]]).reshape(2 * n, -1)
    prop = np.concatenate([expert.obs.proprio[idx, r - 1], expert.obs.proprio[idx, r]])
    aud = np.concatenate([expert.obs.audio[idx, r - 1], expert.obs.audio[idx, r]])
    mel = np.asarray(log_mel(jnp.asarray(aud))).mean(axis=-2)
    y = np.r_[np.zeros(n), np.ones(n)]
    ep = np.r_[idx, idx]
    tr, te = ep < int(0.6 * n), ep >= int(0.6 * n)

    def acc(X):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(X[tr], y[tr])
        return clf.score(X[te], y[te])

    a_vp = acc(np.concatenate([img, prop], 1))
    a_audio = acc(mel)
    assert a_vp < 0.65, a_vp
    assert a_audio >= 0.95, a_audio
    # the hard-rasterised door is pixel-identical (up to noise) until r+2: the mean frames agree to noise level
    d = np.abs(expert.obs.image[idx, r + 1].mean(0) - expert.obs.image[idx, r - 1].mean(0)).max()
    assert d < 0.05, d


def test_bad_inputs():
    with pytest.raises(ValueError, match="action must be in"):
        C.check_action(2.5)
    with pytest.raises(ValueError, match="action must be in"):
        C.check_action(-0.1)
    with pytest.raises(ValueError, match="action must be in"):
        C.check_action(float("nan"))
    with pytest.raises(ValueError, match="shape"):
        C.check_action(np.zeros(2))
    C.check_action(2.0)
    C.check_action([0.0])
    good = C.Obs(np.zeros((24, 24)), np.zeros(1600), np.zeros(3))
    C.check_obs(good)
    with pytest.raises(ValueError, match="obs.image"):
        C.check_obs(good._replace(image=np.zeros((32, 32))))
    with pytest.raises(ValueError, match="obs.audio"):
        C.check_obs(good._replace(audio=np.zeros(800)))
    with pytest.raises(ValueError, match="task"):
        PL.task_params("door")
    with pytest.raises(ValueError, match="PourParams or CabinetParams"):
        PL.task_module(3)
    n = PL.action_normalizer(p)
    np.testing.assert_allclose(n.normalize(jnp.array([0.0, 1.0, 2.0])), [-1.0, 0.0, 1.0], atol=1e-6)


def test_vmapped_scan_equals_single_environment_steps(run_schedules):
    acts = _sched(10)
    tr = run_schedules([acts] * 3, np.array([1.0, 1.0, 1.0]), seed=3)
    acts = acts[:14]
    keys = jax.random.split(jax.random.PRNGKey(3), B)
    k_reset = jax.random.split(keys[1], 3)[0]
    s = jax.jit(lambda k: C.reset(k, p))(k_reset)._replace(threshold=jnp.asarray(1.0))
    step = jax.jit(lambda st, a: C.step(st, a, p))
    qs = []
    for a in acts:
        s = step(s, a)
        qs.append(np.asarray(s.ps.q))
    np.testing.assert_allclose(np.stack(qs), tr.states.ps.q[1, :14], atol=1e-5)
    assert int(s.release_t) == int(tr.states.release_t[1, 13]) == 8
    np.testing.assert_allclose(tr.states.ps.q[0], tr.states.ps.q[2], atol=1e-6)  # same schedule, same physics


@pytest.mark.slow
def test_diffusion_policy_learns_to_stop_on_the_click():
    """Learning check (quick-config settings, 1 seed): with audio the policy opens the door; without audio it
    cannot time the release and slams or times out."""
    data = PL.expert_dataset(jax.random.PRNGKey(1000), 32, obs_horizon=2, pred_horizon=4, action_noise=0.05, p=p)
    out = {}
    for variant in ("havp", "havp_noaudio"):
        cfg = PL.PolicyConfig(variant=variant, pred_horizon=4, action_horizon=1, num_diffusion_steps=20,
                              batch_size=64, lr=2e-3, warmup=50, train_steps=600, denoiser="mlp")
        net, init, train_chunk = PL.make_train(cfg, data, p)
        st, _ = train_chunk(init(jax.random.PRNGKey(0)), jax.random.PRNGKey(7), 600)
        act = PL.make_policy_fn(net, cfg, p)
        ev = jax.jit(lambda prm, k: PL.rollout_policy(act, prm, k, 32, cfg, p))(st.extra["ema"], jax.random.PRNGKey(5000))
        out[variant] = {k: float(v.mean()) for k, v in ev.items()}
    assert out["havp"]["success"] >= 0.8, out
    assert out["havp_noaudio"]["success"] <= 0.5 and out["havp_noaudio"]["slam"] >= 0.2, out


def test_distractor_task_audio():
    """The cabinet with distractor knocks: the original task's audio is unchanged (no extra keys drawn); in the
    distractor task a knock sounds in about distractor_rate of the steps, never crosses the expert's click
    threshold, while the quiet click always does (in its own step or, for a late onset, the next one)."""
    p0, p = C.CabinetParams(), PL.task_params("cabinet_distractor")
    # render_audio reads only the release bookkeeping of the state (no physics: no mjx compile here)
    Audio = collections.namedtuple("Audio", "release_t t click_frac")
    s = Audio(jnp.int32(3), jnp.int32(4), jnp.float32(0.3))
    key = jax.random.PRNGKey(5)
    k1, k2 = jax.random.split(key)
    manual = C.click_waveform(k1, jnp.int32(int(0.3 * (p0.samples_per_step - 1))), p0) + \
        p0.audio_background * jax.random.normal(k2, (p0.samples_per_step,))
    np.testing.assert_array_equal(np.asarray(C.render_audio(s, key, p0)), np.asarray(manual))
    quiet = Audio(jnp.int32(-1), jnp.int32(4), jnp.float32(0.0))   # latched: background + knocks only
    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    waves = jax.vmap(lambda k: C.render_audio(quiet, k, p))(keys)
    knocks = np.asarray(jax.vmap(lambda k: C.distractor_waveform(jax.random.fold_in(k, 1), p))(keys))
    has_knock = np.abs(knocks).max(1) > 0
    assert 0.18 < has_knock.mean() < 0.32                                     # rate 0.25, n = 400
    scores = np.asarray(jax.vmap(lambda w: C.click_score(w, p))(waves))
    assert scores.max() < p.expert_threshold and scores[has_knock].mean() > scores[~has_knock].mean()
    for onset in (0, 400, 800, 1200, 1599):                                   # the click: this step or the next
        s = quiet._replace(release_t=jnp.int32(3), click_frac=jnp.float32(onset / (p.samples_per_step - 1)))
        now = C.click_score(C.render_audio(s._replace(t=jnp.int32(4)), jax.random.PRNGKey(onset), p), p)
        nxt = C.click_score(C.render_audio(s._replace(t=jnp.int32(5)), jax.random.PRNGKey(onset + 1), p), p)
        assert max(float(now), float(nxt)) > p.expert_threshold, onset
