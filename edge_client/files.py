"""Files in place of the sound card: a WAV as the microphone, a WAV that records the speaker.

Both run on the input's clock: each 30 ms frame the microphone yields moves the
recorded output on by 30 ms, so output sample n is n / rate seconds after the
first input sample, and latency can be read off the two files.

On that one clock a simulated room can play the recorded output back into the
next input frames (open speakers), and an echo canceller can hear what was played.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from edge_client.room import Room
from foundation.audio import (
    FRAME_BYTES,
    FRAME_MS,
    RATE_HZ,
    Resampler,
    float_to_pcm16,
    pcm16_to_float,
    resample,
)


def read_wav_16k(path: Path) -> bytes:
    """A WAV file as 16 kHz mono LINEAR16, converted if it is not."""
    with wave.open(str(path)) as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        data = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit audio; give a 16-bit PCM WAV")
    audio = pcm16_to_float(data).reshape(-1, channels).mean(axis=1)
    return float_to_pcm16(resample(audio, rate, RATE_HZ))


class WavOutput:
    """Records what would be played, time-aligned with the input. Same calls as ``Speaker``.

    Each ``tap`` hears what was recorded (silence too) as 16 kHz int16 PCM, in order.
    """

    def __init__(self, path: Path, sample_rate_hz: int, taps: Sequence[Callable[[bytes], None]] = ()) -> None:
        self.path = path
        self.sample_rate_hz = sample_rate_hz
        self._buffer = bytearray()
        self._out = wave.open(str(path), "wb")  # noqa: SIM115 - closed in close()
        self._out.setnchannels(1)
        self._out.setsampwidth(2)
        self._out.setframerate(sample_rate_hz)
        self._elapsed = 0.0  # input seconds recorded so far
        self._written = 0  # output samples recorded so far
        self.played_samples = 0
        self._taps = list(taps)
        # Quick (cubic) resampling: it holds back about one sample, where the others hold
        # back tens of milliseconds that the room's echo could not yet hear.
        self._to_16k = Resampler(sample_rate_hz, RATE_HZ, quality="QQ")

    def write(self, pcm: bytes) -> None:
        self._buffer += pcm

    def flush_pending(self) -> None:
        pass

    def clear(self) -> None:
        self._buffer.clear()

    @property
    def buffered_samples(self) -> int:
        return len(self._buffer) // 2

    @property
    def is_playing(self) -> bool:
        return bool(self._buffer)

    def advance(self, seconds: float) -> None:
        """The input clock moved on: record that much of the output (audio, or silence)."""
        self._elapsed += seconds
        due = round(self._elapsed * self.sample_rate_hz) - self._written
        take = min(due * 2, len(self._buffer))
        chunk = bytes(self._buffer[:take])
        del self._buffer[:take]
        self.played_samples += take // 2
        recorded = chunk + b"\0" * (due * 2 - take)
        self._out.writeframes(recorded)
        self._written += due
        if self._taps:
            pcm = self._to_16k.feed_pcm(recorded)
            for tap in self._taps:
                tap(pcm)

    def close(self) -> None:
        self._out.close()


class WavInput:
    """A WAV file as the microphone, 30 ms frames, paced in real time unless ``fast``.

    After the file it yields silence until ``stop()``. ``hold()`` (a callable
    polled per frame) makes it yield silence in place of the file's next frames,
    paced in real time, while the agent is busy; with ``fast`` that is the only
    pacing, so a whole file runs turn by turn without waiting through speech.
    With a ``room``, each frame also hears the echo of what was played before it.
    """

    def __init__(
        self,
        path: Path,
        fast: bool = False,
        output: WavOutput | None = None,
        hold: Callable[[], bool] = lambda: False,
        room: Room | None = None,
    ) -> None:
        self._pcm = read_wav_16k(path)
        self._fast = fast
        self._output = output
        self._hold = hold
        self._room = room
        self._stopped = False
        self.ended = False  # the file has been fed

    @property
    def duration_s(self) -> float:
        return len(self._pcm) / 2 / RATE_HZ

    def stop(self) -> None:
        self._stopped = True

    async def frames(self) -> AsyncIterator[bytes]:
        frame_bytes = FRAME_BYTES
        silence = b"\0" * frame_bytes
        offset = 0
        next_at = time.monotonic()
        while not self._stopped:
            held = self._hold()
            if offset < len(self._pcm) and not held:
                frame = self._pcm[offset : offset + frame_bytes].ljust(frame_bytes, b"\0")
                offset += frame_bytes
            else:
                frame = silence
            self.ended = offset >= len(self._pcm)
            if self._room is not None:
                frame = self._room.mic(frame)
            if self._output is not None:
                self._output.advance(FRAME_MS / 1000)
            yield frame
            if self._fast and not held and not self.ended:
                await asyncio.sleep(0)
                next_at = time.monotonic()
            else:
                next_at += FRAME_MS / 1000
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
