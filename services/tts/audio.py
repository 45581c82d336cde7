"""LINEAR16 audio: resampling, cutting into stream chunks, WAV files."""

from __future__ import annotations

import io
import wave

import numpy as np

from services.tts.engine import Samples

MAX_CHUNK_MS = 100
# 10 ms windows quieter than this are silence; a soft onset ("h", "f") is louder.
SILENT_DBFS = -50.0


def trim_silence(samples: Samples, sample_rate_hz: int, lead_ms: int, tail_ms: int | None) -> Samples:
    """``samples`` with at most ``lead_ms`` of silence before the first sound and ``tail_ms``
    after the last (None: the tail as it is). All silence: left as it is."""
    window = sample_rate_hz // 100
    whole = len(samples) // window * window
    if not whole:
        return samples
    power = np.mean(samples[:whole].astype(np.float64).reshape(-1, window) ** 2, axis=1) / 32768**2
    loud = np.flatnonzero(power > 10 ** (SILENT_DBFS / 10))
    if not loud.size:
        return samples
    start = max(0, loud[0] * window - sample_rate_hz * lead_ms // 1000)
    end = len(samples) if tail_ms is None else (loud[-1] + 1) * window + sample_rate_hz * tail_ms // 1000
    return samples[start:end]


def split(samples: Samples, sample_rate_hz: int, chunk_ms: int = MAX_CHUNK_MS) -> list[bytes]:
    """Little-endian PCM chunks of at most ``chunk_ms`` each."""
    size = sample_rate_hz * chunk_ms // 1000
    data = samples.astype("<i2", copy=False)
    return [data[start : start + size].tobytes() for start in range(0, len(data), size)]


def duration_ms(num_samples: int, sample_rate_hz: int) -> int:
    return num_samples * 1000 // sample_rate_hz


def to_wav(pcm: bytes, sample_rate_hz: int) -> bytes:
    """A mono 16-bit WAV file holding ``pcm``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate_hz)
        wav.writeframes(pcm)
    return buffer.getvalue()
