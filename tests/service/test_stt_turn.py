"""End-of-turn decisions on a real stream: the real tiny.en and Smart Turn models over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services.stt.config import SttSettings
from services.stt.turn import bundled_model_path
from tests.servers import stt_stub
from tests.speech import english, wer
from tests.stt_client import silence, stream
from tests.turns import cut, sentences, to_pcm, whole
from voice.stt.v1 import stt_pb2, stt_pb2_grpc

pytestmark = pytest.mark.skipif(bundled_model_path() is None, reason="pipecat-ai (the model file) missing")
TURNS = stt_pb2.RecognitionConfig(sample_rate_hz=16000, enable_turn_detection=True)
DECISIONS = (stt_pb2.SPEECH_EVENT_TYPE_END_OF_TURN, stt_pb2.SPEECH_EVENT_TYPE_TURN_INCOMPLETE)


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
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream(stub, config, [])  # the config alone: a write after the refusal would race it
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "end_of_turn_threshold" in (err.value.details() or "")
