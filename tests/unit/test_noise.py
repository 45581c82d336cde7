"""Noise suppression on real speech with noise mixed in, the μ-law codec of the phone doors, and
the edge client's flag."""

from __future__ import annotations

import numpy as np
import pytest

from edge_client.config import from_args, parser
from foundation.noise import NoiseSuppressor
from harness.speech import at_rate, english
from services.gateway import mulaw

RATE_HZ = 8000


def _power_db(samples: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-9))


@pytest.mark.parametrize("rate_hz", [8000, 16000])
def test_noise_alone_is_cut_and_speech_kept(rate_hz: int) -> None:
    speech = np.frombuffer(at_rate(english()[0].pcm(), rate_hz), dtype="<i2").astype(np.float64)
    rng = np.random.default_rng(0)
    lead = rate_hz  # 1 s of noise alone first
    noise = rng.standard_normal(lead + speech.size) * 600
    mixed = noise.copy()
    mixed[lead:] += speech
    pcm = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
    suppressor = NoiseSuppressor(rate_hz)
    # Blocks of odd sizes: the part of 10 ms left over is carried, never dropped.
    out = b"".join(suppressor.process(pcm[at : at + 1234]) for at in range(0, len(pcm), 1234))
    assert len(pcm) - len(out) < rate_hz // 100 * 2
    cleaned = np.frombuffer(out, dtype="<i2")
    before, after = _power_db(mixed[lead // 2 : lead]), _power_db(cleaned[lead // 2 : lead])
    assert before - after > 8  # the noise alone, after the suppressor settled
    kept = _power_db(cleaned[lead : cleaned.size]) - _power_db(mixed[lead : cleaned.size])
    assert kept > -6  # speech loses a few dB at most


def test_noise_suppression_runs_at_the_rates_webrtc_knows() -> None:
    with pytest.raises(ValueError, match="8000"):
        NoiseSuppressor(22050)


def test_mulaw_round_trip_keeps_speech_within_its_quantisation() -> None:
    pcm = at_rate(english()[1].pcm(), RATE_HZ)
    coded = mulaw.encode(pcm)
    assert len(coded) == len(pcm) // 2
    back = np.frombuffer(mulaw.decode(coded), dtype="<i2").astype(np.float64)
    original = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    snr = _power_db(original) - _power_db(original - back)
    assert 30 < snr < 45  # G.711 gives about 38 dB on speech


def test_the_edge_client_flag() -> None:
    assert not from_args(parser().parse_args([])).noise_suppression
    assert from_args(parser().parse_args(["--noise-suppression", "on"])).noise_suppression
