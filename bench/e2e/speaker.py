"""voice-agent on files, its output recorded through the speaker's jitter buffer.

The file output (``WavOutput``) records audio the moment it is written; a sound card plays
it from a ``JitterBuffer``, which holds each burst until ``DEFAULT_JITTER_MS`` of it is queued
(or the burst is complete) and is read in ``SPEAKER_BLOCK_MS`` blocks. Here the recording is
read out of such a buffer, on the input's clock, so latency read off the WAV includes that
start-up wait. Not included: the sound card's own output latency.

    python -m bench.e2e.speaker --input in.wav --output out.wav [voice-agent flags]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import edge_client.__main__ as cli
from edge_client.audio_io import DEFAULT_JITTER_MS, SPEAKER_BLOCK_MS, JitterBuffer
from edge_client.files import WavOutput


class SpeakerPathOutput(WavOutput):
    """``WavOutput`` that records what a ``Speaker`` would hand to the sound card."""

    def __init__(self, path: Path, sample_rate_hz: int, taps: Sequence[Callable[[bytes], None]] = ()) -> None:
        super().__init__(path, sample_rate_hz, taps)
        self.jitter = JitterBuffer(sample_rate_hz * DEFAULT_JITTER_MS // 1000)
        self._block = sample_rate_hz * SPEAKER_BLOCK_MS // 1000
        self._clock_s = 0.0
        self._pulled = 0  # samples read out of the jitter buffer

    def write(self, pcm: bytes) -> None:
        self.jitter.write(pcm)

    def flush_pending(self) -> None:
        self.jitter.flush_pending()

    def clear(self) -> None:
        self.jitter.clear()

    @property
    def buffered_samples(self) -> int:
        return self.jitter.buffered_samples

    @property
    def is_playing(self) -> bool:
        return self.jitter.is_playing

    def advance(self, seconds: float) -> None:
        # The sound card's callbacks over these seconds, each taking one block.
        self._clock_s += seconds
        due = round(self._clock_s * self.sample_rate_hz) - self._pulled
        while due > 0:
            block = bytearray(2 * min(due, self._block))
            self.jitter.read_into(memoryview(block))
            super().write(bytes(block))
            due -= len(block) // 2
            self._pulled += len(block) // 2
        super().advance(seconds)
        self.played_samples = self.jitter.played_source_samples


if __name__ == "__main__":
    setattr(cli, "WavOutput", SpeakerPathOutput)  # noqa: B010 - the CLI's own name for its file output
    cli.main()
