"""The tts service of the compose stack, as a client reaches it on 127.0.0.1:50053."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from voice.tts.v1 import tts_pb2, tts_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
TARGET = "127.0.0.1:50053"
Request = tts_pb2.StreamingSynthesizeRequest


@pytest.fixture(scope="module")
def tts_up() -> None:
    """Start (or keep) the compose service; a missing docker fails the test, it does not skip it."""
    subprocess.run(["docker", "compose", "up", "-d", "--wait", "tts"], cwd=REPO, check=True, timeout=600)


@pytest.fixture
async def stub(tts_up: None) -> AsyncIterator[tts_pb2_grpc.TtsServiceStub]:
    async with grpc.aio.insecure_channel(TARGET) as channel:
        yield tts_pb2_grpc.TtsServiceStub(channel)


async def test_llm_fragments_stream_back_as_speech(stub: tts_pb2_grpc.TtsServiceStub) -> None:
    reply = "Hi there! I'm your assistant, and I can read this reply out loud as it streams in."
    fragments = [reply[i : i + 3] for i in range(0, len(reply), 3)]

    async def requests() -> AsyncIterator[Request]:
        yield Request(config=tts_pb2.SynthesisConfig(sample_rate_hz=16000))
        for fragment in fragments:
            yield Request(text=fragment)

    audio: list[tts_pb2.SynthesizedAudio] = []
    done: list[tts_pb2.SynthesisDone] = []
    async for response in stub.StreamingSynthesize(requests(), timeout=60):
        if response.HasField("audio"):
            audio.append(response.audio)
        else:
            done.append(response.done)

    assert len(done) == 1 and not done[0].cancelled
    assert [chunk.sequence_number for chunk in audio] == list(range(len(audio)))
    assert " ".join(chunk.text for chunk in audio if chunk.text) == reply
    pcm = np.frombuffer(b"".join(chunk.audio_content for chunk in audio), dtype="<i2")
    seconds = len(pcm) / 16000
    assert 2.0 < seconds < 10.0
    assert float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 500


async def test_list_voices(stub: tts_pb2_grpc.TtsServiceStub) -> None:
    reply = await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=10)
    assert reply.default_voice == "en_US-joe-medium"
