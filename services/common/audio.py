"""LINEAR16 conversion and resampling (soxr) shared by the speech services."""

from __future__ import annotations

import numpy as np
import soxr

_INT16_SCALE = 32768.0
# Rates the services take and give (LINEAR16 mono).
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Signed 16-bit little-endian PCM to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _INT16_SCALE


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """float32 in [-1, 1) to signed 16-bit little-endian PCM, clipping what lies outside."""
    return bytes(np.clip(np.round(audio * _INT16_SCALE), -32768, 32767).astype("<i2").tobytes())


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    if from_hz == to_hz:
        return audio.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(audio, from_hz, to_hz), dtype=np.float32)


class StreamResampler:
    """PCM16 bytes of any length at ``from_hz`` in, float32 at ``to_hz`` out.

    An odd trailing byte is carried over to the next chunk, never dropped.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self._carry = b""
        self._stream = None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, dtype="float32")

    def feed(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        cut = len(data) - len(data) % 2
        self._carry = data[cut:]
        audio = pcm16_to_float(data[:cut])
        if self._stream is None:
            return audio
        return np.asarray(self._stream.resample_chunk(audio), dtype=np.float32)

    def flush(self) -> np.ndarray:
        """The last few ms the resampler still holds (its filter delay); call once, at the end."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(
            self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True), dtype=np.float32
        )
