"""The multilingual Whisper base model: language detection and Russian speech."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import jiwer
import pytest

from harness.servers import stt_stub
from harness.speech import english, normalize, russian, wer
from harness.stt_client import stream
from services.stt.config import SttSettings
from voice.stt.v1 import stt_pb2, stt_pb2_grpc


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[stt_pb2_grpc.SttServiceStub]:
    async with stt_stub(SttSettings(model="base")) as stub:
        yield stub


async def test_russian_is_detected_and_transcribed(stub: stt_pb2_grpc.SttServiceStub) -> None:
    info = await stub.GetInfo(stt_pb2.GetInfoRequest())
    assert info.multilingual and {"en", "ru", "de"} <= set(info.languages)
    refs, hyps = [], []
    for rec in russian():
        final = (await stream(stub, stt_pb2.RecognitionConfig(sample_rate_hz=16000), [rec.pcm()])).finals[0]
        assert final.language_code == "ru", final
        refs.append(normalize(rec.text, "ru"))
        hyps.append(normalize(final.transcript, "ru"))
    cer = jiwer.cer(refs, hyps)
    print(f"Russian CER {cer:.3f}: {hyps}")
    assert cer <= 0.25


async def test_english_is_detected_and_a_fixed_language_is_kept(stub: stt_pb2_grpc.SttServiceStub) -> None:
    rec = english()[0]
    final = (await stream(stub, stt_pb2.RecognitionConfig(sample_rate_hz=16000), [rec.pcm()])).finals[0]
    assert final.language_code == "en" and wer(rec.text, final.transcript) <= 0.2
    config = stt_pb2.RecognitionConfig(sample_rate_hz=16000, language_code="ru-RU")
    fixed = (await stream(stub, config, [russian()[0].pcm()])).finals[0]
    assert fixed.language_code == "ru" and normalize(fixed.transcript, "ru")


async def test_an_unknown_language_names_the_choices(stub: stt_pb2_grpc.SttServiceStub) -> None:
    config = stt_pb2.RecognitionConfig(sample_rate_hz=16000, language_code="xx")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream(stub, config, [b"\0\0"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ru" in (err.value.details() or "")
