"""End-of-turn decisions on a real stream: the real tiny.en and Smart Turn models over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from foundation.audio import silence
from harness.servers import stt_stub
from harness.speech import english, wer
from harness.stt_client import stream
from harness.turns import cut, sentences, to_pcm, whole
from services.stt.config import SttSettings
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

TURNS = stt_pb2.RecognitionConfig(sample_rate_hz=16000, enable_turn_detection=True)
CONFIG_PLAIN = stt_pb2.RecognitionConfig(sample_rate_hz=16000)
DECISIONS = (stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN, stt_pb2.SPEECH_EVENT_TYPE_TURN_INCOMPLETE)


async def _refused(
    stub: stt_pb2_grpc.SttServiceStub, config: stt_pb2.RecognitionConfig
) -> grpc.aio.AioRpcError:
    """The error a stream gets for ``config`` (sent alone: audio after a refusal races the abort)."""

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=config)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in stub.StreamingRecognize(requests()):
            pass
    return err.value


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[stt_pb2_grpc.SttServiceStub]:
    async with stt_stub(SttSettings()) as stub:
        yield stub


async def test_the_service_offers_turn_detection(stub: stt_pb2_grpc.SttServiceStub) -> None:
    assert (await stub.GetInfo(stt_pb2.GetInfoRequest())).supports_turn_detection


async def test_a_finished_sentence_ends_the_turn_and_a_cut_one_does_not(
    stub: stt_pb2_grpc.SttServiceStub,
) -> None:
    rec = sentences()[0]
    for audio, last in ((whole(rec), stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN), (cut(rec), None)):
        # At the pace of speech, with a second of silence after it, as a microphone sends it.
        outcome = await stream(stub, TURNS, [to_pcm(audio) + silence(1.0)], pace_s=0.1)
        decisions = [e for e in outcome.events if e.type in DECISIONS]
        print(
            [
                (stt_pb2.SpeechEventType.Name(e.type), e.offset_ms, round(e.end_of_turn_probability, 3))
                for e in decisions
            ]
        )
        assert decisions, "no turn decision"
        # At most one decision per pause: each names a different place where speech stopped.
        offsets = [e.offset_ms for e in decisions]
        assert offsets == sorted(set(offsets))
        final = decisions[-1]
        assert abs(final.offset_ms - len(audio) / 16) < 300 and final.utterance_index == 0
        if last is None:
            assert final.type == stt_pb2.SPEECH_EVENT_TYPE_TURN_INCOMPLETE
            assert final.end_of_turn_probability < 0.5
        else:
            assert final.type == last and final.end_of_turn_probability >= 0.5
        assert len(outcome.finals) == 1


async def test_decisions_follow_each_utterance_and_a_threshold_of_ones_own(
    stub: stt_pb2_grpc.SttServiceStub,
) -> None:
    first, second = english()[5], sentences()[0]
    config = stt_pb2.RecognitionConfig(
        sample_rate_hz=16000, enable_turn_detection=True, turn_silence_ms=300, end_of_turn_threshold=0.99
    )
    outcome = await stream(
        stub, config, [first.pcm() + silence(0.8), to_pcm(whole(second)) + silence(0.8)], pace_s=0.1
    )
    assert [f.utterance_index for f in outcome.finals] == [0, 1]
    assert wer(second.text, outcome.finals[1].transcript) <= 0.3
    decisions = [e for e in outcome.events if e.type in DECISIONS]
    assert {e.utterance_index for e in decisions} == {0, 1}
    # The threshold is the client's: a probability below it is TURN_INCOMPLETE.
    for event in decisions:
        expected = event.end_of_turn_probability >= 0.99
        assert (event.type == stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN) == expected


async def test_no_decisions_unless_asked(stub: stt_pb2_grpc.SttServiceStub) -> None:
    rec = sentences()[0]
    outcome = await stream(stub, stt_pb2.RecognitionConfig(sample_rate_hz=16000), [rec.pcm()])
    assert not [e for e in outcome.events if e.type in DECISIONS] and outcome.finals


async def test_a_threshold_of_one_is_invalid_argument(stub: stt_pb2_grpc.SttServiceStub) -> None:
    config = stt_pb2.RecognitionConfig(
        sample_rate_hz=16000, enable_turn_detection=True, end_of_turn_threshold=1
    )
    err = await _refused(stub, config)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "end_of_turn_threshold" in (err.details() or "")


async def test_without_the_model_turn_detection_is_failed_precondition(tmp_path: Path) -> None:
    async with stt_stub(SttSettings(turn_model=str(tmp_path / "missing.onnx"))) as stub:
        assert not (await stub.GetInfo(stt_pb2.GetInfoRequest())).supports_turn_detection
        err = await _refused(stub, TURNS)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "pipecat-ai" in (err.details() or "")
        # Streams that do not ask for it are served as before.
        assert (await stream(stub, CONFIG_PLAIN, [sentences()[0].pcm()])).finals
