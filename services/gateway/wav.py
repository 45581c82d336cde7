"""WAV in (uploads) and out (a header for audio of a length not known yet)."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np

from services.gateway.errors import BadRequest

# The data size a streamed WAV header carries; readers take it as "until the end".
_UNKNOWN_SIZE = 0xFFFFFFFF


def read_wav(data: bytes) -> tuple[bytes, int]:
    """16-bit mono PCM and its sample rate, from a PCM WAV file of any width and channel count."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise BadRequest(f"`file` is not a PCM WAV file ({exc}); send 16-bit PCM WAV", "file") from exc
    if width not in (1, 2, 3, 4):
        raise BadRequest(f"`file` has {width}-byte samples; send 8, 16, 24 or 32-bit PCM", "file")
    samples = _to_int16(pcm, width)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    return samples.tobytes(), rate


def _to_int16(pcm: bytes, width: int) -> np.ndarray:
    if width == 1:  # unsigned
        return ((np.frombuffer(pcm, np.uint8).astype(np.int16) - 128) << 8).astype("<i2")
    if width == 2:
        return np.frombuffer(pcm, "<i2")
    # The two most significant bytes of each little-endian sample.
    frames = np.frombuffer(pcm, np.uint8).reshape(-1, width)[:, width - 2 :]
    return np.ascontiguousarray(frames).view("<i2").reshape(-1)


def streaming_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown", for audio sent as it is made."""
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )
