"""Audio front end (JAX mel == librosa), resonance pitch, the pour task and the audio-leakage checks
(spec tests 12-14)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.fusion import pour as P
from jaxlab.fusion.audio import log_mel, mel_spectrogram, stft_power
from jaxlab.fusion.raster import box_coverage

p = P.PourParams()


def test_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    x = np.random.default_rng(0).normal(size=3200).astype(np.float32)
    for pad in ("constant", "reflect"):
        ref = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=512, hop_length=128, n_mels=32, center=True,
                                             power=2.0, pad_mode=pad).T
        ours = np.asarray(mel_spectrogram(jnp.asarray(x), pad_mode=pad))
        assert ours.shape == (26, 32)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(ValueError, match="pad_mode"):
        stft_power(jnp.asarray(x), pad_mode="wrap")


def _state(fill, flow):
    s = P.reset(jax.random.PRNGKey(0), p)
    return s._replace(fill=jnp.asarray(fill, jnp.float32), flow=jnp.asarray(flow, jnp.float32))


def test_resonance_pitch_rises_with_fill_and_silent_without_flow():
    fills = [0.0, 0.2, 0.4, 0.6, 0.8]
    peaks = []
    for f in fills:
        w = P.render_audio(_state(f, 0.3), jax.random.PRNGKey(1), p)
        peaks.append(int(jnp.argmax(mel_spectrogram(w).mean(0))))
    assert all(a < b for a, b in zip(peaks, peaks[1:])), peaks
    # resonance closed form: 715 Hz empty
    assert float(P.resonance_hz(0.0, p)) == pytest.approx(343 / 0.48)
    assert float(P.fill_from_hz(P.resonance_hz(0.63, p), p)) == pytest.approx(0.63, abs=1e-5)
    silent = P.render_audio(_state(0.5, 0.0), jax.random.PRNGKey(2), p._replace(audio_background=0.0))
    assert float(jnp.abs(silent).max()) == 0.0
    loud = P.render_audio(_state(0.5, 0.3), jax.random.PRNGKey(2), p)
    quiet = P.render_audio(_state(0.5, 0.0), jax.random.PRNGKey(2), p)
    assert float(jnp.mean(quiet**2)) < 1e-3 * float(jnp.mean(loud**2))


def test_step_dynamics_closed_form_and_clipping():
    s = P.reset(jax.random.PRNGKey(3), p)._replace(theta=jnp.asarray(0.5), theta_c=jnp.asarray(0.4),
                                                 k=jnp.asarray(1.0), fill=jnp.asarray(0.2))
    s1 = P.step(s, 0.1, p)
    assert float(s1.flow) == pytest.approx(0.2)
    assert float(s1.fill) == pytest.approx(0.2 + 0.2 * 0.1)
    s2 = P.step(s, 5.0, p)  # clipped to max_dtheta
    assert float(s2.theta) == pytest.approx(0.65) and float(s2.prev_action) == pytest.approx(0.15)
    s3 = P.step(s._replace(fill=jnp.asarray(0.99)), 0.15, p)
    assert bool(s3.overflow)


def test_rasterizer_box_area():
    cov = box_coverage(24, 24, (12.0, 12.0), (3.0, 2.0), 0.0)
    assert float(cov.sum()) == pytest.approx(24.0, abs=1e-4)
    cov_r = box_coverage(24, 24, (12.0, 12.0), (3.0, 2.0), 0.7)
    assert float(cov_r.sum()) == pytest.approx(24.0, rel=0.05)


@pytest.fixture(scope="module")
def expert_rollouts():
    keys = jax.random.split(jax.random.PRNGKey(0), 120)
    return jax.jit(jax.vmap(lambda k: P.rollout_expert(k, p)))(keys)


def test_audio_oracle_policy_succeeds(expert_rollouts):
    last = jax.tree.map(lambda x: x[:, -1], expert_rollouts.states)
    succ, err = jax.vmap(lambda s: P.success(s, p))(last)
    assert float(succ.mean()) >= 0.95
    assert float(err.mean()) < 0.02


def _features(tr):
    """Per-frame features of pouring frames (flow > 0): vision+proprio, goal only, audio+goal; label = fill tercile."""
    flow = np.asarray(tr.states.flow).reshape(-1)
    fill = np.asarray(tr.states.fill).reshape(-1)
    img = np.asarray(tr.obs.image).reshape(flow.size, -1)
    prop = np.asarray(tr.obs.proprio).reshape(flow.size, -1)
    mel = np.asarray(log_mel(tr.obs.audio)).mean(axis=-2).reshape(flow.size, -1)
    m = flow > 0
    return img[m], prop[m], mel[m], fill[m]


def test_fill_is_hidden_from_vision_and_proprio_but_not_from_audio(expert_rollouts):
    """Spec test 14 (leakage). Among pouring frames, predict the fill tercile. Vision+proprio must be no better
    than the goal f* alone (the command, which bounds how far one pours) + 0.06; audio (+ goal) must be >= 0.85."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    img, prop, mel, fill = _features(expert_rollouts)
    y = np.digitize(fill, np.quantile(fill, [1 / 3, 2 / 3]))
    n = len(y)
    tr, te = np.arange(n) < int(0.7 * n), np.arange(n) >= int(0.7 * n)  # episodes are contiguous
    def acc(X):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(X[tr], y[tr])
        return clf.score(X[te], y[te])
    a_goal = acc(prop[:, 2:3])
    a_vp = acc(np.concatenate([img, prop], 1))
    a_audio = acc(np.concatenate([mel, prop[:, 2:3]], 1))
    assert a_vp <= a_goal + 0.06, (a_vp, a_goal)
    assert a_vp < 0.6, a_vp
    assert a_audio >= 0.85, a_audio
