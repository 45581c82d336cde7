"""WAV in (uploads) and out (a header for audio of a length not known yet)."""

from __future__ import annotations

import audioop
import io
import struct
import wave

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
    if width == 1:
        pcm = audioop.bias(pcm, 1, -128)
    if width != 2:
        pcm = audioop.lin2lin(pcm, width, 2)
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif channels != 1:
        raise BadRequest(f"`file` has {channels} channels; send mono or stereo", "file")
    return pcm, rate


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
