"""The Coqui engine behind TtsService, with a randomly initialised VITS model saved to a directory.

Runs only where the optional ``coqui-tts`` package (and torch) is installed; no Coqui
weights can be downloaded here, so the model speaks noise: the checks are on the
service's behaviour, not on words.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.common.errors import ConfigError
from services.tts.config import TtsSettings
from services.tts.engine import create_engine
from services.tts.servicer import SERVICE_NAME, TtsServicer
from tests.servers import running_server
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

torch = pytest.importorskip("torch")
vits_config = pytest.importorskip("TTS.tts.configs.vits_config")
vits = pytest.importorskip("TTS.tts.models.vits")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("coqui-vits")
    torch.manual_seed(0)
    config = vits_config.VitsConfig(use_phonemes=False, text_cleaner="basic_cleaners")
    model = vits.Vits.init_from_config(config)
    torch.save({"model": model.state_dict()}, directory / "model.pth")
    model.config.save_json(str(directory / "config.json"))
    return directory


@pytest.fixture(scope="module")
async def stub(model_dir: Path) -> AsyncIterator[tts_pb2_grpc.TtsServiceStub]:
    settings = TtsSettings(engine="coqui", voice=str(model_dir))
    engine = create_engine(settings)
    servicer = TtsServicer(engine, settings)
    register = lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)  # noqa: E731
    async with (
        running_server(settings, register, [SERVICE_NAME], engine.load) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield tts_pb2_grpc.TtsServiceStub(channel)


async def test_list_voices_reports_the_local_model(
    stub: tts_pb2_grpc.TtsServiceStub, model_dir: Path
) -> None:
    reply = await stub.ListVoices(tts_pb2.ListVoicesRequest())
    [voice] = reply.voices
    assert (voice.name, voice.engine) == (model_dir.name, "coqui")
    assert reply.default_voice == model_dir.name


async def test_unary_audio_at_the_requested_rate(stub: tts_pb2_grpc.TtsServiceStub) -> None:
    reply = await stub.Synthesize(
        tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(sample_rate_hz=16000), text="Hello there.")
    )
    assert reply.sample_rate_hz == 16000
    assert reply.duration_ms > 0
    assert len(reply.audio_content) // 2 * 1000 // 16000 == reply.duration_ms
    assert np.abs(np.frombuffer(reply.audio_content, dtype="<i2")).max() > 0


async def test_streamed_fragments_give_chunks_and_done(stub: tts_pb2_grpc.TtsServiceStub) -> None:
    async def requests() -> AsyncIterator[tts_pb2.StreamingSynthesizeRequest]:
        yield tts_pb2.StreamingSynthesizeRequest(config=tts_pb2.SynthesisConfig(speaking_rate=1.5))
        for fragment in ["Hel", "lo, wor", "ld. How ", "are you?"]:
            yield tts_pb2.StreamingSynthesizeRequest(text=fragment)

    responses = [response async for response in stub.StreamingSynthesize(requests())]
    audio = [r.audio for r in responses if r.HasField("audio")]
    assert audio and responses[-1].HasField("done")
    assert [chunk.text for chunk in audio if chunk.text] == ["Hello,", "world.", "How are you?"]
    rate = audio[0].sample_rate_hz
    assert all(len(chunk.audio_content) <= 2 * rate // 10 for chunk in audio)


def test_a_model_that_is_neither_a_directory_nor_downloadable_fails_at_start() -> None:
    engine = create_engine(TtsSettings(engine="coqui", voice="/nowhere/no-such-model"))
    with pytest.raises(ConfigError, match="not a local model directory"):
        engine.load()
