"""The echo canceller in a simulated room, with real speech at both ends."""

from __future__ import annotations

import numpy as np
import pytest

from edge_client.config import from_args, parser
from edge_client.echo import CONVERGING_BARGE_IN_MS, EchoCanceller
from edge_client.room import Room
from foundation.audio import RATE_HZ
from harness.speech import english

FRAME = 480  # 30 ms


def speech(*indexes: int) -> np.ndarray:
    return np.concatenate([np.frombuffer(english()[i].pcm(), "<i2") for i in indexes])


def power(x: np.ndarray) -> float:
    return float(np.mean(x.astype(np.float64) ** 2))


def run(far: np.ndarray, near: np.ndarray, room: Room, echo: EchoCanceller) -> tuple[np.ndarray, np.ndarray]:
    """Microphone and cleaned frames while ``far`` plays and ``near`` is spoken, on one clock."""
    mic, cleaned = [], []
    for at in range(0, min(len(far), len(near)) // FRAME * FRAME, FRAME):
        frame = room.mic(near[at : at + FRAME].tobytes())
        mic.append(np.frombuffer(frame, "<i2"))
        cleaned.append(np.frombuffer(echo.clean(frame), "<i2"))
        played = far[at : at + FRAME].tobytes()
        room.played(played)
        echo.played(played)
    return np.concatenate(mic), np.concatenate(cleaned)


@pytest.fixture(scope="module")
def far() -> np.ndarray:
    """About 20 s of the agent's speech."""
    return speech(0, 2, 3, 5)


def test_the_echo_of_speech_is_cut_25_db_once_converged(far: np.ndarray) -> None:
    room = Room(echo_db=-6.0, delay_ms=80, rt60_s=0.4, noise_dbfs=-70)
    echo = EchoCanceller()
    assert echo.barge_in_ms(300) == 300 + CONVERGING_BARGE_IN_MS
    mic, cleaned = run(far, np.zeros_like(far), room, echo)
    # ERLE over each second of far-end speech after the first three.
    erle = [
        10 * np.log10(power(mic[s : s + RATE_HZ]) / power(cleaned[s : s + RATE_HZ]))
        for s in range(3 * RATE_HZ, len(mic) - RATE_HZ, RATE_HZ)
        if power(far[s - 1280 : s + RATE_HZ - 1280]) > power(far) / 10
    ]
    assert len(erle) >= 10 and min(erle) >= 25, [round(e, 1) for e in erle]
    assert echo.converged and echo.barge_in_ms(300) == 300
    assert echo.erle_db >= 25


def log_spectrogram(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // 320 * 320].astype(np.float64).reshape(-1, 320) * np.hanning(320)
    return np.asarray(np.log1p(np.abs(np.fft.rfft(frames, axis=1))))


def likeness(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Correlation of the log spectrograms of ``a`` and ``b`` in the 20 ms frames where ``where`` speaks."""
    frames = where[: len(where) // 320 * 320].astype(np.float64).reshape(-1, 320)
    loud = 10 * np.log10(np.mean(frames**2, axis=1) / 32768**2 + 1e-12) > -40
    return float(np.corrcoef(log_spectrogram(a)[loud].ravel(), log_spectrogram(b)[loud].ravel())[0, 1])


def test_the_users_speech_over_the_echo_comes_through(far: np.ndarray) -> None:
    """Double talk: the user speaks from 5 s on, over the agent; the cleaned audio is the user's speech."""
    user = speech(1, 4)
    near = np.concatenate([np.zeros(5 * RATE_HZ, dtype="<i2"), user])[: len(far)]
    room = Room(echo_db=-6.0, delay_ms=80, rt60_s=0.4, noise_dbfs=-70)
    mic, cleaned = run(far, near, room, EchoCanceller())
    talk = slice(5 * RATE_HZ, 5 * RATE_HZ + len(user))
    echo_only = mic[talk].astype(np.float64) - near[talk]
    # Where the user speaks, the microphone sounds like both; the cleaned audio like the user,
    # hardly like the agent.
    user_talk = near[talk]
    assert likeness(mic[talk], echo_only, user_talk) > 0.7
    assert likeness(cleaned[talk], echo_only, user_talk) < 0.45
    assert likeness(cleaned[talk], near[talk], user_talk) > 0.65
    # The user's level is kept, second by second (the suppressor does not duck it).
    for s in range(talk.start, talk.stop - RATE_HZ, RATE_HZ):
        kept_db = 10 * np.log10(power(cleaned[s : s + RATE_HZ]) / power(near[s : s + RATE_HZ]))
        assert -4 < kept_db < 2, (s / RATE_HZ, kept_db)


def test_the_delay_hint_follows_the_device_latencies() -> None:
    echo = EchoCanceller()
    echo.set_latency(output_s=0.064)
    echo.set_latency(input_s=0.032)
    assert echo.delay_ms == 96
    echo.set_latency(output_s=0.02)
    assert echo.delay_ms == 52


def test_frames_must_be_whole_10_ms() -> None:
    with pytest.raises(ValueError, match="10 ms"):
        EchoCanceller().clean(bytes(500))


def test_the_flags_turn_the_canceller_and_the_room_on_and_off(capsys: pytest.CaptureFixture[str]) -> None:
    settings = from_args(parser().parse_args([]))
    assert settings.aec and settings.echo_db is None
    args = [
        "--aec",
        "off",
        "--input",
        "in.wav",
        "--output",
        "out.wav",
        "--echo-db",
        "-6",
        "--echo-delay-ms",
        "120",
    ]
    settings = from_args(parser().parse_args(args))
    assert (settings.aec, settings.echo_db, settings.echo_delay_ms) == (False, -6.0, 120)
    for wrong in (["--input", "in.wav", "--echo-db", "-6"], [*args, "--echo-delay-ms", "20"]):
        with pytest.raises(SystemExit):
            from_args(parser().parse_args(wrong))
    assert "--echo-db" in capsys.readouterr().err
