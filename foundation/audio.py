"""The audio format every part speaks, and the one resampler.

Between the front doors, the conversation and the STT service, audio is 16 kHz mono
LINEAR16 (signed 16-bit little-endian) in frames of 30 ms. Any other rate is
resampled here, with soxr, streaming or whole.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr

RATE_HZ = 16000
FRAME_MS = 30
SAMPLE_BYTES = 2
FRAME_SAMPLES = RATE_HZ * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_BYTES
# Rates the services take and give.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000

_INT16_SCALE = 32768.0
Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Signed 16-bit little-endian PCM to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _INT16_SCALE


def float_to_pcm16(audio: np.ndarray) -> bytes:
    """float32 in [-1, 1) to signed 16-bit little-endian PCM, clipping what lies outside."""
    return bytes(np.clip(np.round(audio * _INT16_SCALE), -32768, 32767).astype("<i2").tobytes())


def resample(audio: np.ndarray, from_hz: int, to_hz: int, quality: Quality = "HQ") -> np.ndarray:
    """A whole signal (int16 or float32 samples) at ``to_hz``, in the same sample type."""
    if from_hz == to_hz or audio.size == 0:
        return audio
    return np.asarray(soxr.resample(audio, from_hz, to_hz, quality=quality), dtype=audio.dtype)


def silence(seconds: float, rate_hz: int = RATE_HZ) -> bytes:
    return bytes(SAMPLE_BYTES * int(seconds * rate_hz))


def frames(pcm: bytes) -> list[bytes]:
    """16 kHz ``pcm`` as 30 ms frames, the last padded with silence."""
    return [pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0") for i in range(0, len(pcm), FRAME_BYTES)]


class Resampler:
    """Streamed mono LINEAR16 bytes at ``from_hz`` in, samples at ``to_hz`` out: int16 samples, or
    float32 in [-1, 1) for a model (``dtype``). Bytes pass through untouched at equal rates.

    An odd trailing byte is carried to the next call, never dropped. Not thread-safe.
    """

    def __init__(
        self, from_hz: int, to_hz: int, dtype: Literal["int16", "float32"] = "int16", quality: Quality = "HQ"
    ) -> None:
        self.from_hz, self.to_hz = from_hz, to_hz
        self._float = dtype == "float32"
        self._carry = b""
        self._stream = (
            None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, dtype=dtype, quality=quality)
        )

    def feed(self, pcm: bytes) -> np.ndarray:
        if self._carry:
            pcm = self._carry + pcm
        cut = len(pcm) & ~1
        pcm, self._carry = pcm[:cut], pcm[cut:]
        samples = pcm16_to_float(pcm) if self._float else np.frombuffer(pcm, dtype="<i2")
        return self._resample(samples, last=False)

    def feed_pcm(self, pcm: bytes) -> bytes:
        """``feed``, as LINEAR16 bytes (an int16 resampler)."""
        return bytes(self.feed(pcm).tobytes())

    @property
    def carried_bytes(self) -> int:
        return len(self._carry)

    def flush(self) -> np.ndarray:
        """The filter's tail (a few ms), at the end of a signal; the next feed starts a fresh one."""
        self._carry = b""
        tail = self._resample(np.zeros(0, dtype=np.float32 if self._float else "<i2"), last=True)
        if self._stream is not None:
            self._stream.clear()
        return tail

    def clear(self) -> None:
        """Forget what was fed and not yet given back (playback stopped)."""
        self._carry = b""
        if self._stream is not None:
            self._stream.clear()

    def _resample(self, samples: np.ndarray, last: bool) -> np.ndarray:
        if self._stream is None:
            return samples
        out = np.asarray(self._stream.resample_chunk(samples, last=last))
        return out.astype(np.float32 if self._float else "<i2", copy=False)


class FrameSplitter:
    """LINEAR16 blocks of any size at ``rate_hz`` in, 30 ms frames at 16 kHz out."""

    def __init__(self, rate_hz: int = RATE_HZ) -> None:
        self._resampler = Resampler(rate_hz, RATE_HZ)
        self._pending = bytearray()

    def feed(self, block: bytes) -> list[bytes]:
        self._pending += self._resampler.feed_pcm(block)
        count = len(self._pending) // FRAME_BYTES
        out = [bytes(self._pending[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]) for i in range(count)]
        del self._pending[: count * FRAME_BYTES]
        return out

    def clear(self) -> None:
        """Drop a partial frame and what the resampler holds."""
        self._resampler.clear()
        self._pending.clear()
