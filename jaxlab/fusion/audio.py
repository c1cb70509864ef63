"""JAX STFT and log-mel spectrogram (librosa conventions), and band-passed-noise resonance rendering.

The mel filterbank is built once with ``librosa.filters.mel`` (Slaney scale and norm, librosa's defaults) and
used as a constant, so the spectrogram itself is pure ``jnp`` and can run inside a jitted closed loop.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

SR = 16_000


@functools.lru_cache(maxsize=None)
def mel_filterbank(sr: int = SR, n_fft: int = 512, n_mels: int = 32, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """librosa.filters.mel as a cached float32 numpy constant. Returns [n_mels, n_fft // 2 + 1]."""
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


def stft_power(wave_n: jnp.ndarray, *, n_fft: int = 512, hop: int = 128, center: bool = True,
               pad_mode: str = "constant") -> jnp.ndarray:
    """|STFT|^2 with a periodic Hann window; when ``center``, pads n_fft // 2 on both sides with
    ``pad_mode`` ("constant" = zeros, librosa >= 0.10's default, or "reflect").

    Args:
      wave_n: [..., N] waveform.
    Returns:
      power: [..., 1 + (N + 2 (n_fft // 2) center - n_fft) // hop, n_fft // 2 + 1].
    """
    if center:
        pad = [(0, 0)] * (wave_n.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        wave_n = jnp.pad(wave_n, pad, mode=pad_mode)
    n = wave_n.shape[-1]
    if n < n_fft:
        raise ValueError(f"wave_n must have at least n_fft={n_fft} samples after padding, got {n}")
    n_frames = 1 + (n - n_fft) // hop
    idx = jnp.arange(n_fft)[None, :] + hop * jnp.arange(n_frames)[:, None]
    window = 0.5 - 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(n_fft) / n_fft)
    frames = wave_n[..., idx] * window
    return jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2


def mel_spectrogram(wave_n: jnp.ndarray, *, sr: int = SR, n_fft: int = 512, hop: int = 128, n_mels: int = 32,
                    center: bool = True, pad_mode: str = "constant") -> jnp.ndarray:
    """Power mel spectrogram, time-major. wave_n: [..., N]; returns [..., frames, n_mels]."""
    mel = jnp.asarray(mel_filterbank(sr, n_fft, n_mels))
    return stft_power(wave_n, n_fft=n_fft, hop=hop, center=center, pad_mode=pad_mode) @ mel.T


def log_mel(wave_n: jnp.ndarray, *, eps: float = 1e-6, **kw) -> jnp.ndarray:
    """log(mel + eps). wave_n: [..., N]; returns [..., frames, n_mels]."""
    return jnp.log(mel_spectrogram(wave_n, **kw) + eps)


def resonance_noise(key, freq_hz, amplitude, *, n: int, sr: int = SR, rel_bandwidth: float = 0.04,
                    background: float = 0.0) -> jnp.ndarray:
    """White noise band-passed (Gaussian in frequency) around ``freq_hz``, scaled to RMS ``amplitude``,
    plus white background noise of RMS ``background``. Components above Nyquist are dropped by construction.

    Args:
      key: PRNG key; freq_hz, amplitude: scalars. Returns [n] waveform.
    """
    k1, k2 = jax.random.split(key)
    spec = jnp.fft.rfft(jax.random.normal(k1, (n,)))
    f = jnp.fft.rfftfreq(n, 1.0 / sr)
    bw = rel_bandwidth * freq_hz
    band = spec * jnp.exp(-0.5 * ((f - freq_hz) / bw) ** 2)
    x = jnp.fft.irfft(band, n=n)
    x = x / (jnp.sqrt(jnp.mean(x**2)) + 1e-8)
    return amplitude * x + background * jax.random.normal(k2, (n,))
