"""Non-speech sounds for barge-in tests (16 kHz LINEAR16): made (a cough, a clap, a knock) or recorded."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

RATE_HZ = 16000
SOUNDS = Path(__file__).parent / "data" / "sounds"


def _pcm(audio: np.ndarray, peak: float) -> bytes:
    audio = audio / max(1e-9, float(np.abs(audio).max())) * peak
    return (audio * 32767).astype("<i2").tobytes()


def _band(noise: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(len(noise), 1 / RATE_HZ)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, len(noise))


def burst(kind: str, ms: int, seed: int = 0) -> bytes:
    """``kind`` is "cough" (voiced-band noise, quick attack, slower decay), "clap" or "knock"."""
    rng = np.random.default_rng(seed)
    n = RATE_HZ * ms // 1000
    t = np.arange(n) / RATE_HZ
    if kind == "cough":
        envelope = np.minimum(t / 0.02, 1) * np.exp(-t / (ms / 1000 / 2.5))
        # A rough glottal buzz under the noise, as in a real cough.
        buzz = np.sign(np.sin(2 * np.pi * 140 * t)) * 0.3
        return _pcm(envelope * (_band(rng.standard_normal(n), 300, 3500) + buzz), 0.5)
    if kind == "clap":
        return _pcm(np.exp(-t / 0.015) * rng.standard_normal(n), 0.7)
    if kind == "knock":
        tone = np.sin(2 * np.pi * 180 * t) + 0.5 * _band(rng.standard_normal(n), 100, 800)
        return _pcm(np.exp(-t / 0.04) * tone, 0.6)
    raise ValueError(f"unknown sound {kind!r}")


def recorded(name: str) -> bytes:
    """A real sound from ``tests/data/sounds`` (see its README): "trash-empty", "camera-shutter"."""
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE_HZ, 1, 2)
        return bytes(w.readframes(w.getnframes()))
