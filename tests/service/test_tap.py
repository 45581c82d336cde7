"""harness.tap: a recording proxy passes calls through unchanged and reads them back per turn."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from harness.tap import STREAMING_SYNTHESIZE, LlmTap, TtsTap
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

RATE_HZ = 16000
CHUNK = b"\1\0" * 1600  # 100 ms


class _Tts(tts_pb2_grpc.TtsServiceServicer):
    """Two chunks per text, the first naming it; a flush that fails with the caller's metadata."""

    async def StreamingSynthesize(
        self, requests: AsyncIterator[tts_pb2.StreamingSynthesizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        async for request in requests:
            if request.HasField("text"):
                for text in (request.text, ""):
                    audio = tts_pb2.SynthesizedAudio(
                        audio_content=CHUNK, text=text, sample_rate_hz=RATE_HZ, turn_id=request.turn_id
                    )
                    yield tts_pb2.StreamingSynthesizeResponse(audio=audio)
            elif request.HasField("flush"):
                token = dict(context.invocation_metadata() or ()).get("token", "")
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"gone ({token})")


class _Llm(llm_pb2_grpc.LlmServiceServicer):
    """Replies "reply N" to each user turn."""

    async def StreamingChat(
        self, requests: AsyncIterator[llm_pb2.StreamingChatRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        async for request in requests:
            if request.HasField("user_turn"):
                turn_id = request.user_turn.turn_id
                yield llm_pb2.StreamingChatResponse(delta=llm_pb2.TextDelta(text="reply ", turn_id=turn_id))
                yield llm_pb2.StreamingChatResponse(
                    delta=llm_pb2.TextDelta(text=f"{turn_id}", turn_id=turn_id)
                )
                end = llm_pb2.TurnEnd(text=f"reply {turn_id}", turn_id=turn_id)
                yield llm_pb2.StreamingChatResponse(turn_end=end)


@asynccontextmanager
async def _service() -> AsyncIterator[str]:
    server = grpc.aio.server()
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    tts_pb2_grpc.add_TtsServiceServicer_to_server(_Tts(), server)
    llm_pb2_grpc.add_LlmServiceServicer_to_server(_Llm(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _tts_requests() -> Iterator[tts_pb2.StreamingSynthesizeRequest]:
    yield tts_pb2.StreamingSynthesizeRequest(config=tts_pb2.SynthesisConfig())
    yield tts_pb2.StreamingSynthesizeRequest(text="Hello there.", turn_id=3)
    yield tts_pb2.StreamingSynthesizeRequest(text="Bye.", turn_id=3)
    yield tts_pb2.StreamingSynthesizeRequest(text="Other.", turn_id=4)


async def test_a_call_passes_through_and_is_read_back_per_turn() -> None:
    async with (
        _service() as address,
        TtsTap(address) as tap,
        grpc.aio.insecure_channel(tap.address) as channel,
    ):
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        async def requests() -> AsyncIterator[tts_pb2.StreamingSynthesizeRequest]:
            for request in _tts_requests():
                yield request
            yield tts_pb2.StreamingSynthesizeRequest(flush=tts_pb2.Flush(), turn_id=3)

        stub = tts_pb2_grpc.TtsServiceStub(channel)
        call = stub.StreamingSynthesize(requests(), metadata=(("token", "abc"),))
        got = []
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            async for response in call:
                got.append(response)
        # The service's failure, with what the client told it, reaches the client as it was.
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE and failed.value.details() == "gone (abc)"
        assert [r.audio.text for r in got] == ["Hello there.", "", "Bye.", "", "Other.", ""]
    assert [(p.text, len(p.samples)) for p in tap.pieces(3)] == [("Hello there.", 3200), ("Bye.", 3200)]
    assert len(tap.audio(4)) == 3200 and tap.audio(4)[0] == 1
    received = tap.received(STREAMING_SYNTHESIZE, tts_pb2.StreamingSynthesizeRequest)
    assert [r.text for r in received if r.text] == ["Hello there.", "Bye.", "Other."]


async def test_paced_audio_comes_no_faster_than_it_plays() -> None:
    async with _service() as address, TtsTap(address, lead_s=0.0) as tap:
        async with grpc.aio.insecure_channel(tap.address) as channel:
            started = time.monotonic()
            stub = tts_pb2_grpc.TtsServiceStub(channel)
            async for _ in stub.StreamingSynthesize(iter(list(_tts_requests())[:3])):
                pass
            # Turn 3's four chunks of 100 ms: the last passed on 300 ms after the first.
            assert time.monotonic() - started >= 0.3
        delivered = [m.at_s for m in tap.messages if not m.from_client]
        assert len(delivered) == 4 and delivered[-1] - delivered[0] >= 0.29


async def test_the_chat_history_follows_retract_and_truncate() -> None:
    async with (
        _service() as address,
        LlmTap(address) as tap,
        grpc.aio.insecure_channel(tap.address) as channel,
    ):
        history = [llm_pb2.Message(role=llm_pb2.ROLE_USER, content="before")]
        sent = [
            llm_pb2.StreamingChatRequest(config=llm_pb2.ChatConfig(history=history)),
            llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text="first", turn_id=1)),
            llm_pb2.StreamingChatRequest(retract=llm_pb2.Retract(turn_id=1)),
            llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text="second", turn_id=2)),
            llm_pb2.StreamingChatRequest(truncate=llm_pb2.Truncate(heard_text="rep", turn_id=2)),
            llm_pb2.StreamingChatRequest(retract=llm_pb2.Retract(turn_id=1)),  # not the last turn: no effect
        ]
        async for _ in llm_pb2_grpc.LlmServiceStub(channel).StreamingChat(iter(sent)):
            pass
    assert tap.turn_id("second") == 2 and tap.reply(2) == "reply 2"
    assert tap.retracted() == [1, 1] and [t.heard_text for t in tap.truncated()] == ["rep"]
    assert [(m.role, m.content) for m in tap.history()] == [
        (llm_pb2.ROLE_USER, "before"),
        (llm_pb2.ROLE_USER, "second"),
        (llm_pb2.ROLE_ASSISTANT, "rep"),
    ]
