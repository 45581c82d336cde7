"""The Smart Turn model as the STT service runs it, on real read speech."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.speech import Recording
from harness.turns import cut, sentences, whole
from services.stt.config import DEFAULT_END_OF_TURN_THRESHOLD, DEFAULT_TURN_SILENCE_MS
from services.stt.turn import TurnDetector

# What the service hands the model: the speech, then the silence that triggers the decision.
PAUSE = np.zeros(DEFAULT_TURN_SILENCE_MS * 16, dtype=np.float32)


@pytest.fixture(scope="module")
def detector() -> TurnDetector:
    detector = TurnDetector()
    detector.load()
    return detector


@pytest.mark.parametrize("rec", sentences(), ids=lambda r: r.id.rsplit("-", 1)[-1])
def test_a_whole_sentence_is_complete_and_a_cut_one_is_not(detector: TurnDetector, rec: Recording) -> None:
    done = detector.probability(np.concatenate([whole(rec), PAUSE]))
    unfinished = detector.probability(np.concatenate([cut(rec), PAUSE]))
    print(f"whole {done:.3f}, cut before its last words {unfinished:.3f}")
    assert done >= DEFAULT_END_OF_TURN_THRESHOLD > unfinished


def test_features_are_whisper_log_mels_of_the_last_8_s(detector: TurnDetector) -> None:
    audio = np.concatenate([whole(rec) for rec in sentences()])
    assert len(audio) > 8 * 16000
    features = detector.features(audio)
    assert features.shape == (80, 800) and features.dtype == np.float32
    # Only the last 8 s count; shorter audio is padded with silence at the front.
    assert np.array_equal(features, detector.features(np.concatenate([np.ones(16000, np.float32), audio])))
    short = detector.features(whole(sentences()[0])[-16000:])
    # (constant in time over the padding, which starts 7 s before the end)
    assert short[:, :600].std(axis=1).max() < 1e-3 < short[:, -90:].std(axis=1).min()


def test_cost_of_one_decision(detector: TurnDetector) -> None:
    audio = np.concatenate([whole(sentences()[0]), PAUSE])
    started = time.perf_counter()
    for _ in range(5):
        detector.features(audio)
    features_ms = (time.perf_counter() - started) * 200
    started = time.perf_counter()
    for _ in range(5):
        detector.probability(audio)
    total_ms = (time.perf_counter() - started) * 200
    print(f"one decision: {total_ms:.0f} ms ({features_ms:.0f} ms features, the rest the model)")
    assert 0 < features_ms < total_ms
