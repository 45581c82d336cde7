"""The conversation's links against real services that fail: a stream that dies, a service that restarts.

Each case would hang, lose a message or say a reply twice if a link let the
request iterator of a dead stream take what was meant for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import pytest

from conversation.links import LlmLink, SttLink, TtsLink
from conversation.messages import AudioChunk, AudioDone, Final, Reply, ReplyDelta, ReplyEnd, Speech
from foundation.channels import Security
from harness.edge import silence
from harness.speech import english, wer
from services.common.server import VoiceServer, build_server
from services.llm.config import LlmSettings
from services.llm.engines.local import LocalEngine
from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
from services.llm.servicer import LlmServicer
from services.stt.config import SttSettings
from services.stt.engine import create_engine as create_stt_engine
from services.stt.servicer import SERVICE_NAME as STT_SERVICE
from services.stt.servicer import SttServicer
from services.tts.config import TtsSettings
from services.tts.engine import create_engine as create_tts_engine
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

pytestmark = pytest.mark.service

T = TypeVar("T")
WAIT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def server_on(
    port: int, register: Callable[[grpc.aio.Server], None], name: str
) -> AsyncIterator[VoiceServer]:
    settings = LlmSettings(host="127.0.0.1", port=port, metrics_port=0)
    server = await build_server(settings, register, [name])
    await server.set_ready()
    try:
        yield server
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def running(link: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(link.run())
    try:
        yield
    finally:
        link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def whole_turn(link: LlmLink, text: str, turn_id: int) -> list[Reply]:
    async with asyncio.timeout(WAIT_S):
        return [event async for event in link.turn(text, turn_id)]


@pytest.fixture(scope="module")
def llm_engine() -> LocalEngine:
    engine = LocalEngine(LlmSettings(engine="local"))
    engine.load()
    return engine


class FailingStreams(LlmServicer):
    """The real servicer, but its first ``fail`` streams end with UNAVAILABLE after ``after`` deltas."""

    def __init__(self, engine: LocalEngine, fail: int, after: int) -> None:
        super().__init__(engine, LlmSettings(engine="local"))
        self.fail, self.after, self.streams = fail, after, 0

    async def StreamingChat(
        self, request_iterator: AsyncIterator[llm_pb2.StreamingChatRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        self.streams += 1
        failing, deltas = self.streams <= self.fail, 0
        async for response in super().StreamingChat(request_iterator, context):
            if failing and response.HasField("delta"):
                if deltas == self.after:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the service is restarting")
                deltas += 1
            yield response


def llm_register(servicer: LlmServicer) -> Callable[[grpc.aio.Server], None]:
    return lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server)


async def test_a_turn_after_a_restart_while_silent_is_answered(llm_engine: LocalEngine) -> None:
    """The service restarts while nobody speaks; the next turn goes on the new stream, not the dead one."""
    port, notes = free_port(), list[str]()
    link = LlmLink(f"127.0.0.1:{port}", Security(), "", 12, notes.append)
    servicer = LlmServicer(llm_engine, LlmSettings(engine="local"))
    async with running(link):
        async with server_on(port, llm_register(servicer), LLM_SERVICE):
            await until(lambda: link.connected)
        await until(lambda: not link.connected)
        async with server_on(port, llm_register(servicer), LLM_SERVICE):
            events = await whole_turn(link, "Say hello.", 7)
            second = await whole_turn(link, "Say goodbye.", 8)
    for turn, turn_id in ((events, 7), (second, 8)):
        end = turn[-1]
        assert isinstance(end, ReplyEnd) and end.turn_id == turn_id and not end.error and end.text.strip(), (
            turn
        )
        assert all(isinstance(e, ReplyDelta) and e.turn_id == turn_id for e in turn[:-1])
    assert any("llm service" in note for note in notes), notes


async def test_a_turn_cut_before_its_first_word_is_asked_again_once(llm_engine: LocalEngine) -> None:
    port, notes = free_port(), list[str]()
    servicer = FailingStreams(llm_engine, fail=2, after=0)
    link = LlmLink(f"127.0.0.1:{port}", Security(), "", 12, notes.append)
    async with server_on(port, llm_register(servicer), LLM_SERVICE), running(link):
        events = await whole_turn(link, "Say hello.", 1)
    ends = [e for e in events if isinstance(e, ReplyEnd)]
    assert len(ends) == 1 and not ends[0].error, events
    # Said once: the reply is the deltas of one generation, and the history holds it once.
    assert ends[0].text == "".join(e.text for e in events[:-1])
    assert [m.role for m in link.history] == [llm_pb2.ROLE_USER, llm_pb2.ROLE_ASSISTANT]
    assert servicer.streams == 3


async def test_a_turn_cut_after_its_first_words_ends_with_them_and_the_next_is_answered(
    llm_engine: LocalEngine,
) -> None:
    port, notes = free_port(), list[str]()
    servicer = FailingStreams(llm_engine, fail=1, after=2)
    link = LlmLink(f"127.0.0.1:{port}", Security(), "", 24, notes.append)
    async with server_on(port, llm_register(servicer), LLM_SERVICE), running(link):
        cut = await whole_turn(link, "Tell me a story about a cat.", 1)
        nxt = await whole_turn(link, "Say hello.", 2)
    deltas = [e.text for e in cut if isinstance(e, ReplyDelta)]
    end, nxt_end = cut[-1], nxt[-1]
    assert isinstance(end, ReplyEnd) and len(deltas) == 2 and end.text == "".join(deltas), cut
    assert "lost" in end.error
    assert isinstance(nxt_end, ReplyEnd) and nxt_end.turn_id == 2 and not nxt_end.error
    # The new stream was restored with the words that were said, not asked to say them again.
    assert [m.content for m in link.history[:2]] == ["Tell me a story about a cat.", end.text]


async def test_a_cancel_of_an_older_turn_does_not_stop_the_current_one(llm_engine: LocalEngine) -> None:
    servicer = LlmServicer(llm_engine, LlmSettings(engine="local"))
    port = free_port()
    async with (
        server_on(port, llm_register(servicer), LLM_SERVICE),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = llm_pb2_grpc.LlmServiceStub(channel).StreamingChat()
        await call.write(llm_pb2.StreamingChatRequest(config=llm_pb2.ChatConfig(max_tokens=12)))
        await call.write(llm_pb2.StreamingChatRequest(user_turn=llm_pb2.UserTurn(text="Hi!", turn_id=5)))
        await call.write(llm_pb2.StreamingChatRequest(cancel=llm_pb2.Cancel(turn_id=4)))
        await call.write(llm_pb2.StreamingChatRequest(truncate=llm_pb2.Truncate(heard_text="x", turn_id=4)))
        events = []
        while not (event := await call.read()).HasField("turn_end"):
            events.append(event)
        await call.done_writing()
    assert event.turn_end.turn_id == 5 and events and all(e.delta.turn_id == 5 for e in events)
    assert event.turn_end.finish_reason != llm_pb2.FINISH_REASON_CANCELLED


@pytest.fixture(scope="module")
def tts_engine() -> Any:
    engine = create_tts_engine(TtsSettings())
    engine.load()
    return engine


class FailingTts(TtsServicer):
    """The real servicer; its first stream ends with UNAVAILABLE after its first audio chunk."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine, TtsSettings())
        self.streams = 0

    async def StreamingSynthesize(
        self,
        request_iterator: AsyncIterator[tts_pb2.StreamingSynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tts_pb2.StreamingSynthesizeResponse]:
        self.streams += 1
        first = self.streams == 1
        async for response in super().StreamingSynthesize(request_iterator, context):
            yield response
            if first and response.HasField("audio"):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the service is restarting")


async def test_speech_lost_with_its_stream_goes_on_from_where_it_stopped(tts_engine: Any) -> None:
    port, notes = free_port(), list[str]()
    servicer = FailingTts(tts_engine)
    got: list[Speech] = []
    link = TtsLink(f"127.0.0.1:{port}", Security(), "", 16000, got.append, notes.append)
    register = lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)  # noqa: E731
    sentences = ["The first sentence is here.", " The second one follows it.", " And a third ends it."]
    async with server_on(port, register, TTS_SERVICE), running(link):
        await until(lambda: link.connected)
        for sentence in sentences:
            link.text(sentence, 3)
        link.flush(3)
        await until(lambda: any(isinstance(r, AudioDone) for r in got))
    texts = [r.text for r in got if isinstance(r, AudioChunk) and r.text]
    # Every word spoken exactly once, in order, across the two streams; the done names the turn.
    assert " ".join(texts).split() == "".join(sentences).split(), texts
    assert all(r.turn_id == 3 for r in got if isinstance(r, AudioChunk))
    assert [r.turn_id for r in got if isinstance(r, AudioDone)] == [3]
    assert servicer.streams == 2


async def test_a_cancelled_turns_done_names_that_turn(tts_engine: Any) -> None:
    servicer = TtsServicer(tts_engine, TtsSettings())
    port = free_port()
    register = lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)  # noqa: E731
    got: list[Speech] = []
    link = TtsLink(f"127.0.0.1:{port}", Security(), "", 16000, got.append, lambda _: None)
    async with server_on(port, register, TTS_SERVICE), running(link):
        await until(lambda: link.connected)
        link.text("A reply that the user will not hear, because it is withdrawn.", 1)
        link.cancel(1)
        link.text("The reply to hear.", 2)
        link.flush(2)
        await until(lambda: sum(isinstance(r, AudioDone) for r in got) == 2)
    dones = [(r.turn_id, r.cancelled) for r in got if isinstance(r, AudioDone)]
    assert dones == [(1, True), (2, False)]
    spoken = [r.text for r in got if isinstance(r, AudioChunk) and r.turn_id == 2 and r.text]
    assert " ".join(spoken) == "The reply to hear."


async def test_an_exception_in_a_link_is_reported_and_the_link_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A final the conversation cannot take breaks that stream only: its audio is sent again and heard."""
    settings = SttSettings()
    engine = create_stt_engine(settings)
    await asyncio.to_thread(engine.load)
    servicer = SttServicer(engine, settings)
    register = lambda server: stt_pb2_grpc.add_SttServiceServicer_to_server(servicer, server)  # noqa: E731
    port, notes, finals = free_port(), list[str](), list[Final]()

    def on_final(final: Final) -> None:
        finals.append(final)
        if len(finals) == 1:
            raise RuntimeError("a bug in the conversation")

    clip = english()[5]
    link = SttLink(f"127.0.0.1:{port}", Security(), on_final, notes.append, 120)
    with caplog.at_level(logging.ERROR):
        async with server_on(port, register, STT_SERVICE), running(link):
            await until(lambda: link.connected)
            pcm = silence(0.3) + clip.pcm() + silence(0.3)
            for i in range(0, len(pcm), 960):
                link.send_audio(pcm[i : i + 960].ljust(960, b"\0"))
            link.end_utterance()
            await until(lambda: len(finals) == 2)
    assert any("stt link failed" in note and "a bug in the conversation" in note for note in notes), notes
    assert "stt link failed" in caplog.text
    assert link.streams == 2
    # Heard both times: "ten of clubs" with at most one word wrong (tiny.en may hear "close").
    assert all(wer(clip.text, f.text) <= 1 / 3 for f in finals), finals
