"""The Coqui engine behind TtsService, with randomly initialised models of the released shapes.

tacotron2-DDC and its HiFiGAN vocoder are put where Coqui's model manager keeps
downloads and loaded by name, as the original configuration loads them; VITS loads
from a model directory. Untrained models speak noise: the checks are on the
service's behaviour (rates, chunking, cancel, lengths, metrics), not on words.
Needs the ``coqui`` extra (``make venv-coqui``, which ``make test`` runs): where it is
missing or broken the imports below fail, and so do these tests, rather than skip.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from harness.servers import serving
from services.common.errors import ConfigError
from services.tts.config import TtsSettings
from services.tts.engine import Engine, VoiceRequest, create_engine
from services.tts.servicer import SERVICE_NAME, TtsServicer
from tests.coqui_models import (
    HIFIGAN_V2,
    TACOTRON2_DDC,
    TACOTRON2_PIECE_SAMPLES,
    downloaded_dir,
    save_hifigan_v2,
    save_tacotron2_ddc,
    save_vits,
)
from tests.service.test_tts import Request, Stream, config
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

NATIVE_RATE_HZ = 22050


@pytest.fixture(scope="module")
def tts_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A TTS_HOME where tacotron2-DDC and hifigan_v2 are 'already downloaded'."""
    home = tmp_path_factory.mktemp("tts-home")
    save_tacotron2_ddc(downloaded_dir(home, TACOTRON2_DDC))
    save_hifigan_v2(downloaded_dir(home, HIFIGAN_V2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TTS_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
async def tacotron2(tts_home: Path) -> AsyncIterator[tts_pb2_grpc.TtsServiceStub]:
    settings = TtsSettings(engine="coqui", voice=TACOTRON2_DDC)
    async with _serving(settings) as stub:
        yield stub


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("coqui-vits")
    save_vits(directory)
    return directory


@pytest.fixture(scope="module")
async def vits(vits_dir: Path) -> AsyncIterator[tts_pb2_grpc.TtsServiceStub]:
    async with _serving(TtsSettings(engine="coqui", voice=str(vits_dir))) as stub:
        yield stub


def _serving(settings: TtsSettings) -> AbstractAsyncContextManager[tts_pb2_grpc.TtsServiceStub]:
    engine = create_engine(settings)
    servicer = TtsServicer(engine, settings)
    add = tts_pb2_grpc.add_TtsServiceServicer_to_server
    return serving(settings, servicer, add, tts_pb2_grpc.TtsServiceStub, SERVICE_NAME, engine.load)


def _latency_count(stage: str) -> float:
    labels = {"service": "tts", "stage": stage}
    return REGISTRY.get_sample_value("voice_stage_latency_seconds_count", labels) or 0.0


async def _speak(stub: tts_pb2_grpc.TtsServiceStub, text: str, rate: int = 16000) -> Stream:
    stream = Stream(stub, config(sample_rate_hz=rate))
    stream.text(text)
    stream.close()
    return stream


async def test_tacotron2_ddc_loads_by_name_with_its_vocoder(tacotron2: tts_pb2_grpc.TtsServiceStub) -> None:
    reply = await tacotron2.ListVoices(tts_pb2.ListVoicesRequest())
    [voice] = reply.voices
    assert (voice.name, voice.engine, list(voice.language_codes)) == (TACOTRON2_DDC, "coqui", ["en"])
    assert voice.native_sample_rate_hz == NATIVE_RATE_HZ
    assert reply.default_voice == TACOTRON2_DDC


async def test_tacotron2_streams_100_ms_chunks_at_the_requested_rate(
    tacotron2: tts_pb2_grpc.TtsServiceStub,
) -> None:
    synthesized, first_audio = _latency_count("synthesize"), _latency_count("first_audio")
    received = await (await _speak(tacotron2, "Hello there. How are you?")).until_done()

    assert [chunk.text for chunk in received.audio if chunk.text] == ["Hello there.", "How are you?"]
    assert all(chunk.sample_rate_hz == 16000 for chunk in received.audio)
    assert all(len(chunk.audio_content) <= 2 * 1600 for chunk in received.audio), "a chunk over 100 ms"
    assert [chunk.sequence_number for chunk in received.audio] == list(range(len(received.audio)))
    [done] = received.done
    assert not done.cancelled and done.chunks == len(received.audio)
    assert done.audio_ms == len(received.pcm) // 2 * 1000 // 16000
    # Each piece is synthesized on its own, and HiFiGAN's noise is far from silence.
    assert np.abs(np.frombuffer(received.pcm, dtype="<i2")).max() > 100
    assert _latency_count("synthesize") == synthesized + 2
    assert _latency_count("first_audio") == first_audio + 1


async def test_tacotron2_audio_grows_with_the_text(tacotron2: tts_pb2_grpc.TtsServiceStub) -> None:
    short = await (await _speak(tacotron2, "Hello.", NATIVE_RATE_HZ)).until_done()
    long = await (await _speak(tacotron2, "Hello. How are you? I am well.", NATIVE_RATE_HZ)).until_done()
    # Untrained, Tacotron2 decodes every piece to its step limit: the length is per piece.
    assert len(short.pcm) // 2 == pytest.approx(TACOTRON2_PIECE_SAMPLES, rel=0.15)
    assert len(long.pcm) == pytest.approx(3 * len(short.pcm), rel=0.05)


async def test_tacotron2_cancel_stops_the_audio_and_the_stream_goes_on(
    tacotron2: tts_pb2_grpc.TtsServiceStub,
) -> None:
    stream = Stream(tacotron2, config(sample_rate_hz=16000))
    stream.text("One more thing. " * 6)
    first = await stream.read()
    assert first is not None and first.HasField("audio") and first.audio.text == "One more thing."
    stream.send(Request(cancel=tts_pb2.Cancel()))
    rest = await stream.until_done()
    [done] = rest.done
    assert done.cancelled
    # What was already on its way may arrive; no later piece does.
    assert not any(chunk.text for chunk in rest.audio), "a piece after the cancel was spoken"
    piece_chunks = math.ceil(TACOTRON2_PIECE_SAMPLES * 16000 / NATIVE_RATE_HZ / 1600)
    assert done.chunks == 1 + len(rest.audio) <= piece_chunks

    stream.text("Goodbye now.")
    stream.close()
    again = await stream.until_done()
    assert [chunk.text for chunk in again.audio if chunk.text] == ["Goodbye now."]
    assert not again.done[0].cancelled


def test_tacotron2_from_a_model_directory_with_a_vocoder_folder(tts_home: Path, tmp_path: Path) -> None:
    # A directory of one's own: the model's files, and the vocoder's in vocoder/.
    for model, target in ((TACOTRON2_DDC, tmp_path), (HIFIGAN_V2, tmp_path / "vocoder")):
        target.mkdir(exist_ok=True)
        for file in downloaded_dir(tts_home, model).iterdir():
            (target / file.name).symlink_to(file)
    engine: Engine = create_engine(TtsSettings(engine="coqui", voice=str(tmp_path)))
    engine.load()
    [voice] = engine.voices()
    assert (voice.name, voice.native_sample_rate_hz) == (tmp_path.name, NATIVE_RATE_HZ)
    samples = engine.synthesize("Hello.", VoiceRequest(voice=voice.name))
    assert len(samples) == pytest.approx(TACOTRON2_PIECE_SAMPLES, rel=0.15)


async def test_vits_lists_the_local_model(vits: tts_pb2_grpc.TtsServiceStub, vits_dir: Path) -> None:
    reply = await vits.ListVoices(tts_pb2.ListVoicesRequest())
    [voice] = reply.voices
    assert (voice.name, voice.engine) == (vits_dir.name, "coqui")
    assert reply.default_voice == vits_dir.name


async def test_vits_unary_audio_at_the_requested_rate(vits: tts_pb2_grpc.TtsServiceStub) -> None:
    reply = await vits.Synthesize(
        tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(sample_rate_hz=16000), text="Hello there.")
    )
    assert reply.sample_rate_hz == 16000
    assert reply.duration_ms > 0
    assert len(reply.audio_content) // 2 * 1000 // 16000 == reply.duration_ms
    assert np.abs(np.frombuffer(reply.audio_content, dtype="<i2")).max() > 0


async def test_vits_streamed_fragments_give_chunks_and_done(vits: tts_pb2_grpc.TtsServiceStub) -> None:
    stream = Stream(vits, config(speaking_rate=1.5))
    for fragment in ["Hel", "lo, wor", "ld. How ", "are you?"]:
        stream.text(fragment)
    stream.close()
    received = await stream.until_done()
    assert [chunk.text for chunk in received.audio if chunk.text] == ["Hello,", "world.", "How are you?"]
    rate = received.audio[0].sample_rate_hz
    assert all(len(chunk.audio_content) <= 2 * rate // 10 for chunk in received.audio)


def test_a_path_without_a_model_fails_at_start() -> None:
    engine = create_engine(TtsSettings(engine="coqui", voice="/nowhere/no-such-model"))
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        engine.load()


def test_a_model_name_without_network_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty model cache, and every download sent to a closed port: no network.
    monkeypatch.setenv("TTS_HOME", str(tmp_path))
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    engine = create_engine(TtsSettings(engine="coqui", voice=TACOTRON2_DDC))
    with pytest.raises(ConfigError) as failure:
        engine.load()
    message = str(failure.value)
    assert f"the Coqui model {TACOTRON2_DDC!r} is not in {downloaded_dir(tmp_path, TACOTRON2_DDC)}" in message
    assert "could not be downloaded" in message and "TTS_VOICE" in message
