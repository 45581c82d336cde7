"""Endpointing: webrtcvad frame decisions turned into speech start and end."""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from enum import Enum

import numpy as np
import webrtcvad

from foundation.audio import FRAME_MS, RATE_HZ

# Frames whose voicing is remembered for ``voiced_ms``.
_HISTORY_FRAMES = 200
# Quieter frames are silence, whatever webrtcvad says: it takes the faint noise of a bit or two
# over digital silence (what resampling leaves of it) for voice, and holds a turn open on it.
FLOOR_DBFS = -75.0
_FLOOR_RMS = 32768 * 10 ** (FLOOR_DBFS / 20)


class Edge(Enum):
    START = "start"
    PAUSE = "pause"  # a short silence: the utterance may be over
    RESUME = "resume"  # speech again after a pause, before the end
    END = "end"


@dataclass(frozen=True)
class Boundary:
    edge: Edge
    # Frame index (from the first frame) where voiced audio began or last was.
    frame: int


class Endpointer:
    """Feeds 30 ms frames of 16 kHz PCM; says when speech starts, pauses, resumes and ends.

    Speech starts after ``min_speech_ms`` of voiced frames (a click does not
    count), pauses after ``pause_ms`` without voiced frames (0: never), resumes
    with ``min_speech_ms`` of voice again, and ends after ``silence_ms`` of silence.
    """

    def __init__(self, aggressiveness: int, min_speech_ms: int, silence_ms: int, pause_ms: int = 0) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = max(1, min_speech_ms // FRAME_MS)
        self._end_frames = max(1, silence_ms // FRAME_MS)
        self._pause_frames = pause_ms // FRAME_MS if 0 < pause_ms < silence_ms else 0
        self._paused = False
        self._recent: collections.deque[bool] = collections.deque(maxlen=self._start_frames + 1)
        self._history: collections.deque[bool] = collections.deque(maxlen=_HISTORY_FRAMES)
        self._frame = -1
        self._last_voiced = -1
        self.speaking = False
        self.start_frame = 0

    def push(self, frame: bytes) -> Boundary | None:
        self._frame += 1
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        voiced = float(np.sqrt(np.mean(samples**2))) >= _FLOOR_RMS and self._vad.is_speech(frame, RATE_HZ)
        self._recent.append(voiced)
        self._history.append(voiced)
        if voiced:
            self._last_voiced = self._frame
        if not self.speaking:
            # Start: all but at most one of the recent frames voiced, the newest among them.
            if voiced and sum(self._recent) >= self._start_frames:
                self.speaking = True
                self.start_frame = self._frame - len(self._recent) + 1 + self._recent.index(True)
                return Boundary(Edge.START, self.start_frame)
            return None
        silent = self._frame - self._last_voiced
        if self._paused and voiced and sum(self._recent) >= self._start_frames:
            self._paused = False
            return Boundary(Edge.RESUME, self._frame)
        if silent >= self._end_frames:
            self.speaking = self._paused = False
            self._recent.clear()
            return Boundary(Edge.END, self._last_voiced)
        if self._pause_frames and not self._paused and silent >= self._pause_frames:
            self._paused = True
            return Boundary(Edge.PAUSE, self._last_voiced)
        return None

    def set_silence_ms(self, silence_ms: int) -> None:
        """From now on, speech ends after ``silence_ms`` of silence."""
        self._end_frames = max(1, silence_ms // FRAME_MS)

    def end_now(self) -> Boundary | None:
        """End the current speech here (the turn was judged complete); None when there is none."""
        if not self.speaking:
            return None
        self.speaking = self._paused = False
        self._recent.clear()
        return Boundary(Edge.END, self._last_voiced)

    def voiced_ms(self, window_ms: int) -> int:
        """Voiced audio within the last ``window_ms``: silence inside the window does not count."""
        frames = min(len(self._history), max(1, window_ms // FRAME_MS))
        return sum(itertools.islice(reversed(self._history), frames)) * FRAME_MS

    def barges_in(self, barge_in_ms: int, listened_ms: int | None = None) -> bool:
        """The barge-in rule: ``barge_in_ms`` of voiced audio within twice that time.

        Only the last ``listened_ms`` count (the time since the user's turn ended): the end
        of the user's own turn is no barge-in, however long the window.
        """
        window_ms = 2 * barge_in_ms if listened_ms is None else min(2 * barge_in_ms, listened_ms)
        return window_ms > 0 and self.voiced_ms(window_ms) >= barge_in_ms

    def quiet_ms(self) -> int:
        """How long since the last voiced frame (since the first frame when none was voiced)."""
        return (self._frame - self._last_voiced) * FRAME_MS
