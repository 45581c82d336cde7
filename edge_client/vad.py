"""Endpointing: webrtcvad frame decisions turned into speech start and end."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from enum import Enum

import webrtcvad

FRAME_MS = 30
RATE_HZ = 16000


class Edge(Enum):
    START = "start"
    END = "end"


@dataclass(frozen=True)
class Boundary:
    edge: Edge
    # Frame index (from the first frame) where voiced audio began or last was.
    frame: int


class Endpointer:
    """Feeds 30 ms frames of 16 kHz PCM; says when speech starts and when it has ended.

    Speech starts after ``min_speech_ms`` of voiced frames (a click does not
    count) and ends after ``silence_ms`` without voiced frames.
    """

    def __init__(self, aggressiveness: int, min_speech_ms: int, silence_ms: int) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = max(1, min_speech_ms // FRAME_MS)
        self._end_frames = max(1, silence_ms // FRAME_MS)
        self._recent: collections.deque[bool] = collections.deque(maxlen=self._start_frames + 1)
        self._frame = -1
        self._last_voiced = -1
        self.speaking = False
        self.start_frame = 0

    def push(self, frame: bytes) -> Boundary | None:
        self._frame += 1
        voiced = self._vad.is_speech(frame, RATE_HZ)
        self._recent.append(voiced)
        if voiced:
            self._last_voiced = self._frame
        if not self.speaking:
            # Start: all but at most one of the recent frames voiced, the newest among them.
            if voiced and sum(self._recent) >= self._start_frames:
                self.speaking = True
                self.start_frame = self._frame - len(self._recent) + 1 + self._recent.index(True)
                return Boundary(Edge.START, self.start_frame)
            return None
        if self._frame - self._last_voiced >= self._end_frames:
            self.speaking = False
            self._recent.clear()
            return Boundary(Edge.END, self._last_voiced)
        return None

    def speech_ms(self) -> int:
        """How long the current speech has gone on (0 when there is none)."""
        return (self._frame - self.start_frame + 1) * FRAME_MS if self.speaking else 0
