"""LINEAR16 conversion and streaming resampling."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.audio import Resampler, float_to_pcm16, pcm16_to_float


def test_pcm16_round_trip() -> None:
    pcm = np.array([0, 1, -1, 32767, -32768], dtype="<i2").tobytes()
    assert float_to_pcm16(pcm16_to_float(pcm)) == pcm
    clipped = float_to_pcm16(np.array([2.0, -2.0], dtype=np.float32))
    assert clipped == np.array([32767, -32768], "<i2").tobytes()


def test_odd_bytes_are_carried_over() -> None:
    pcm = np.arange(1000, dtype="<i2").tobytes()
    resampler = Resampler(16000, 16000, "float32")
    parts = [resampler.feed(pcm[i : i + 333]) for i in range(0, len(pcm), 333)]
    assert np.array_equal(np.concatenate(parts), pcm16_to_float(pcm))


@pytest.mark.parametrize("rate_hz", [8000, 22050, 48000])
def test_streamed_resampling_keeps_duration(rate_hz: int) -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(rate_hz) / rate_hz) * 0.5
    pcm = float_to_pcm16(tone.astype(np.float32))
    resampler = Resampler(rate_hz, 16000, "float32")
    out = np.concatenate(
        [resampler.feed(pcm[i : i + 999]) for i in range(0, len(pcm), 999)] + [resampler.flush()]
    )
    assert abs(len(out) - 16000) <= 2
    # Still a 440 Hz tone: the spectrum peaks there.
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) * 16000 / len(out) - 440) < 5
