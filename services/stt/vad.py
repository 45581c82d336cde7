"""Streaming voice activity detection with the Silero model that faster-whisper ships."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from faster_whisper.vad import get_vad_model

# Silero judges 512-sample (32 ms) windows at 16 kHz, each seeing 64 samples of the one before.
WINDOW_SAMPLES = 512
_CONTEXT_SAMPLES = 64
# Below threshold minus this, speech is over (hysteresis, as in Silero's own code).
_HYSTERESIS = 0.15


@lru_cache(maxsize=1)
def _silero() -> Any:
    return get_vad_model()


def load_vad() -> None:
    """Load the shared Silero model (blocking)."""
    _silero()


class SpeechDetector:
    """Feeds 16 kHz float32 audio; reports which 32 ms windows hold speech."""

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(_CONTEXT_SAMPLES, dtype=np.float32)
        self._speaking = False
        # The model is recurrent over windows: its state goes on from push to push.
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)

    def push(self, audio: np.ndarray) -> list[bool]:
        """One flag per window completed by ``audio``: True where it is speech."""
        self._pending = np.concatenate([self._pending, audio])
        count = len(self._pending) // WINDOW_SAMPLES
        if count == 0:
            return []
        windows = self._pending[: count * WINDOW_SAMPLES].reshape(count, WINDOW_SAMPLES)
        self._pending = self._pending[count * WINDOW_SAMPLES :]
        contexts = np.vstack([self._context, windows[:-1, -_CONTEXT_SAMPLES:]])
        self._context = windows[-1, -_CONTEXT_SAMPLES:].copy()
        batch = np.hstack([contexts, windows]).astype(np.float32)
        probs, self._h, self._c = _silero().session.run(None, {"input": batch, "h": self._h, "c": self._c})
        flags = []
        for prob in probs.reshape(-1):
            if prob >= self._threshold:
                self._speaking = True
            elif prob < self._threshold - _HYSTERESIS:
                self._speaking = False
            flags.append(self._speaking)
        return flags
