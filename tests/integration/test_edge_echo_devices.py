"""Echo cancellation on the real audio path: JACK devices with a simulated room in between."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from conversation.endpointing import Endpointer
from edge_client.audio_io import Microphone, Speaker
from edge_client.echo import EchoCanceller
from harness.speech import english
from tests.audio_devices import MIC_DEVICE, RATE_HZ, SPEAKER_DEVICE, virtual_audio
from tests.room_jack import RoomAudio


@pytest.fixture(scope="module")
def room_devices() -> Iterator[RoomAudio]:
    with virtual_audio(RoomAudio) as devices:
        assert isinstance(devices, RoomAudio)
        yield devices


def speech(*indexes: int) -> bytes:
    return b"".join(english()[i].pcm() for i in indexes)


def power(frames: list[bytes]) -> float:
    samples = np.frombuffer(b"".join(frames), "<i2").astype(np.float64)
    return float(np.mean(samples**2))


async def test_the_agents_echo_is_cancelled_and_the_user_still_heard(room_devices: RoomAudio) -> None:
    """The reply plays into the room; 5 s in the user speaks. Only then does the endpointer hear speech."""
    reply, user = speech(0, 2, 3), speech(4)
    echo = EchoCanceller()
    endpointer = Endpointer(2, 150, 600)
    raw: list[bytes] = []
    cleaned: list[bytes] = []
    speech_at: list[int] = []
    async with (
        Speaker(SPEAKER_DEVICE, RATE_HZ, echo=echo) as speaker,
        Microphone(MIC_DEVICE, echo=echo) as mic,
    ):
        speaker.write(reply)
        speaker.flush_pending()
        frames = mic.frames()
        while len(raw) * 0.03 < len(reply) / 2 / RATE_HZ:
            frame = await asyncio.wait_for(anext(frames), 2)
            if len(raw) == round(5 / 0.03):
                room_devices.play(user)
            raw.append(frame)
            cleaned.append(echo.clean(frame))
            endpointer.push(cleaned[-1])
            if endpointer.speaking:
                speech_at.append(len(raw) - 1)
    # An xrun skips a period for the whole graph, the room included: the echo path stays whole.
    assert 0 < echo.delay_ms < 500  # PortAudio's latencies, as the hint
    # The echo alone, from 2 s to 5 s: cut by 25 dB.
    echo_only = slice(round(2 / 0.03), round(5 / 0.03))
    erle = 10 * np.log10(power(raw[echo_only]) / power(cleaned[echo_only]))
    assert erle >= 25, erle
    # Speech is heard only once the user speaks (the clip has a short lead-in).
    assert speech_at and 5 / 0.03 <= speech_at[0] <= (5 + 1.0) / 0.03, speech_at[:5]
