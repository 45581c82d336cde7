"""The streaming Silero detector."""

from __future__ import annotations

import numpy as np

from foundation.audio import pcm16_to_float
from harness.speech import english
from services.stt.vad import WINDOW_SAMPLES, SpeechDetector


def test_speech_is_found_in_speech_and_not_in_silence_or_noise() -> None:
    audio = pcm16_to_float(english()[0].pcm())
    flags = SpeechDetector(0.5).push(audio)
    assert len(flags) == len(audio) // WINDOW_SAMPLES
    assert sum(flags) > 0.5 * len(flags)
    assert not any(SpeechDetector(0.5).push(np.zeros(16000, dtype=np.float32)))
    noise = np.random.default_rng(0).normal(0, 0.05, 32000).astype(np.float32)
    assert not any(SpeechDetector(0.5).push(noise))


def test_chunking_does_not_change_the_flags() -> None:
    audio = pcm16_to_float(english()[1].pcm())
    whole = SpeechDetector(0.5).push(audio)
    detector = SpeechDetector(0.5)
    pieces = [flag for i in range(0, len(audio), 700) for flag in detector.push(audio[i : i + 700])]
    assert pieces == whole
