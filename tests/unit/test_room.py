"""The simulated room: the echo has the delay, gain and reverberation asked for."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from edge_client.files import WavInput, WavOutput
from edge_client.room import Room, impulse_response
from foundation.audio import RATE_HZ


def noise(seconds: float, dbfs: float = -20.0, seed: int = 3) -> bytes:
    rms = 10 ** (dbfs / 20) * 32768
    samples = np.random.default_rng(seed).standard_normal(int(seconds * RATE_HZ)) * rms
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def through(room: Room, far: bytes, frame: int = 480) -> np.ndarray:
    """The microphone of a silent room while ``far`` plays, frame by frame on one clock."""
    out = []
    for at in range(0, len(far), frame * 2):
        out.append(np.frombuffer(room.mic(bytes(frame * 2)), "<i2"))
        room.played(far[at : at + frame * 2])
    return np.concatenate(out).astype(np.float64)


@pytest.mark.parametrize(("echo_db", "delay_ms"), [(0.0, 30), (-6.0, 80), (-12.0, 150)])
def test_the_echo_has_the_delay_and_gain_asked_for(echo_db: float, delay_ms: int) -> None:
    far = noise(3.0)
    room = Room(echo_db=echo_db, delay_ms=delay_ms + 30, rt60_s=0.3, noise_dbfs=-120)
    mic = through(room, far)
    # Played one 30 ms frame after the microphone's clock: the echo comes delay_ms after playing.
    x = np.frombuffer(far, "<i2").astype(np.float64)
    lags = np.arange(0, 4000)
    corr = [float(np.dot(mic[lag + 480 : lag + 480 + 16000], x[:16000])) for lag in lags]
    assert int(np.argmax(corr)) == delay_ms * RATE_HZ // 1000
    steady = slice(RATE_HZ, 3 * RATE_HZ - 480)
    gain_db = 10 * np.log10(np.mean(mic[steady] ** 2) / np.mean(x[steady] ** 2))
    assert gain_db == pytest.approx(echo_db, abs=0.5)


@pytest.mark.parametrize("rt60_s", [0.2, 0.5])
def test_the_reverberation_decays_60_db_in_rt60(rt60_s: float) -> None:
    h = impulse_response(rt60_s, 0.0)
    # Schroeder's backward integral; its slope from -5 to -25 dB, extrapolated to -60 dB.
    decay = 10 * np.log10(np.cumsum(h[::-1] ** 2)[::-1] / np.sum(h**2))
    t5, t25 = (np.flatnonzero(decay <= level)[0] / RATE_HZ for level in (-5.0, -25.0))
    assert 3 * (t25 - t5) == pytest.approx(rt60_s, rel=0.2)


def test_a_microphone_ahead_of_the_speaker_is_refused() -> None:
    room = Room(delay_ms=30)
    room.mic(bytes(960))  # 30 ms: the echo of nothing played yet is silence
    with pytest.raises(RuntimeError, match="ahead"):
        room.mic(bytes(960))


async def test_in_file_mode_the_output_comes_back_into_the_input(tmp_path: Path) -> None:
    """What the agent plays is heard by the next input frames, delayed and attenuated."""
    with wave.open(str(tmp_path / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(bytes(RATE_HZ * 2 * 2))
    room = Room(echo_db=-6.0, delay_ms=80, noise_dbfs=-120)
    output = WavOutput(tmp_path / "out.wav", 22050, taps=[room.played])
    mic = WavInput(tmp_path / "in.wav", fast=True, room=room)
    reply = noise(1.0, seed=5)  # as the synthesiser would send it, at 22.05 kHz
    reply_22k = np.frombuffer(reply, "<i2").repeat(2)[: int(1.0 * 22050)].astype("<i2").tobytes()
    heard: list[bytes] = []
    async for frame in mic.frames():
        heard.append(frame)
        if len(heard) == 10:
            output.write(reply_22k)  # plays from 270 ms on: the period of the 10th frame
        output.advance(0.03)
        if len(heard) == 100:
            mic.stop()
    output.close()
    level = [10 * np.log10(np.mean(np.frombuffer(f, "<i2").astype(np.float64) ** 2) + 1e-9) for f in heard]
    first_loud = next(i for i, db in enumerate(level) if db > 40)
    # Echoed 80 ms later, at 350 ms: inside the 12th frame (330-360 ms).
    assert first_loud == 11, level[:20]
    played_db = 10 * np.log10(np.mean(np.frombuffer(reply_22k, "<i2").astype(np.float64) ** 2))
    assert np.median(level[20:40]) == pytest.approx(played_db - 6.0, abs=1.5)
    assert max(level[60:]) < 10  # the reply has ended, and so has its echo
