"""LINEAR16 audio: resampling, cutting into stream chunks, WAV files."""

from __future__ import annotations

import io
import wave

import soxr

from services.tts.engine import Samples

MAX_CHUNK_MS = 100


def resample(samples: Samples, from_hz: int, to_hz: int) -> Samples:
    """``samples`` at ``to_hz``; soxr's high quality, a few ms per second of audio."""
    if from_hz == to_hz or samples.size == 0:
        return samples
    out: Samples = soxr.resample(samples, from_hz, to_hz, quality="HQ")
    return out


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
