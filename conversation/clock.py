"""The conversation's clock: the microphone's audio, frame by frame.

Every time the core records (speech start and end, a final, the first audio) is in ms since the
first microphone frame, so that times from the STT service, the endpointer and the speaker
line up whatever the front end's pacing.
"""

from __future__ import annotations

import time

from foundation.audio import FRAME_MS


class AudioClock:
    def __init__(self) -> None:
        self.frames = 0  # fed so far
        self._last_frame_at = time.monotonic()

    def tick(self) -> None:
        """A frame was fed."""
        self.frames += 1
        self._last_frame_at = time.monotonic()

    def now_ms(self) -> float:
        """ms since the first frame: the audio clock, plus the time since its last frame (at most one)."""
        since = min((time.monotonic() - self._last_frame_at) * 1000, FRAME_MS)
        return max(0.0, (self.frames - 1) * FRAME_MS + since) if self.frames else 0.0
