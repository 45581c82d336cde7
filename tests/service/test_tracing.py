"""Traces of spoken turns through the three real services, in this process, to an in-memory exporter.

The services run on free ports with their real models, the conversation is fed real speech in
real time, and what is checked is what the exporter received: one trace per conversation, each
turn's span with the services' spans of its work under it, its times agreeing with the report.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import websockets
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conversation import Conversation
from edge_client.config import EdgeSettings
from foundation import tracing
from foundation.audio import FRAME_MS
from harness import servers
from harness.edge import converse, frames_of, over_the_reply, silence, then_quiet, while_
from harness.gateway_stack import Stack, gateway_stack
from harness.speech import at_rate, english, normalize
from services.common.server import VoiceServer, build_server
from services.gateway.realtime import API_RATE_HZ
from services.llm.config import LlmSettings
from services.llm.engines.local import LocalEngine
from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
from services.llm.servicer import LlmServicer
from services.tts.servicer import TtsServicer
from tests.service.test_conversation_tools import Shop, Step, talk, typed
from voice.llm.v1 import llm_pb2_grpc

EXPORTER = InMemorySpanExporter()


@dataclass
class Services:
    stt: str
    tts: str
    llm_port: int
    restart_llm: Callable[[], Coroutine[Any, Any, None]]  # stops the chat service and starts it on llm_port

    def settings(self, **more: Any) -> EdgeSettings:
        return EdgeSettings(stt=self.stt, llm=f"127.0.0.1:{self.llm_port}", tts=self.tts, **more)


@pytest.fixture(scope="module")
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on, before any server or channel is made (the grpc.aio instrumentors wrap those)."""
    tracing.setup("voice-test", EXPORTER)
    yield EXPORTER
    tracing.shutdown()


@pytest.fixture(scope="module")
async def services(traced: InMemorySpanExporter) -> AsyncIterator[Services]:
    async with AsyncExitStack() as stack:
        stt_server = await stack.enter_async_context(servers.stt_server())
        tts_server = await stack.enter_async_context(servers.tts_server())
        llm_settings = LlmSettings(engine="local", metrics_port=0)
        chat = LocalEngine(llm_settings)
        await asyncio.to_thread(chat.load)
        llm_servicer = LlmServicer(chat, llm_settings)

        async def start_llm(port: int = 0) -> VoiceServer:
            server = await build_server(
                llm_settings.model_copy(update={"host": "127.0.0.1", "port": port}),
                lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(llm_servicer, s),
                [LLM_SERVICE],
            )
            await server.set_ready()
            return server

        llm = [await start_llm()]
        port = llm[0].port
        stack.push_async_callback(lambda: llm[-1].stop(0))

        async def restart_llm() -> None:
            await llm[-1].stop(0)
            llm.append(await start_llm(port))

        yield Services(f"127.0.0.1:{stt_server.port}", f"127.0.0.1:{tts_server.port}", port, restart_llm)


@pytest.fixture(scope="module")
async def gateway(traced: InMemorySpanExporter) -> AsyncIterator[Stack]:
    async with gateway_stack(llm=True) as stack:
        yield stack


def _spans() -> list[ReadableSpan]:
    spans = list(EXPORTER.get_finished_spans())
    EXPORTER.clear()
    return spans


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name or (name == "chat" and s.name.startswith("chat "))]


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _scope(span: ReadableSpan) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope else ""


def _no_orphans(spans: list[ReadableSpan], root: str = "conversation") -> None:
    """Every span is in the conversation's one trace, under a span that was exported."""
    ids = {s.context.span_id for s in spans if s.context is not None}
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == [root], [(s.name, s.parent) for s in roots]
    assert {s.context.trace_id for s in spans if s.context is not None} == {roots[0].context.trace_id}
    lost = [s.name for s in spans if s.parent is not None and s.parent.span_id not in ids]
    assert not lost, f"spans whose parent was never exported: {lost}"


def _event_ns(span: ReadableSpan, name: str) -> int:
    times = [e.timestamp for e in span.events if e.name == name]
    assert times, f"no {name} event on {span.name}: {[e.name for e in span.events]}"
    return times[0]


async def test_a_spoken_turn_is_one_trace_through_the_three_services(
    services: Services, tmp_path: Path
) -> None:
    _spans()
    said = english()[7]
    settings = services.settings(max_tokens=40)
    _, session = await converse(settings, tmp_path, then_quiet(silence(0.5) + said.pcm() + silence(1.0)))
    spans = _spans()
    assert len(session.turns) == 1, session.turns
    _no_orphans(spans)
    (conversation,) = _named(spans, "conversation")
    (turn,) = _named(spans, "turn")
    assert turn.parent is not None and conversation.context is not None
    assert turn.parent.span_id == conversation.context.span_id
    # The services' spans of the turn's work are its children, each from its own service.
    under = _children(spans, turn)
    by_name = {s.name.split(" ")[0]: s for s in under}
    assert {"end_of_turn", "stt.final", "chat", "tts"} <= set(by_name), [s.name for s in under]
    assert _scope(by_name["stt.final"]) == "voice.stt"
    assert _scope(by_name["chat"]) == "voice.llm"
    assert _scope(by_name["tts"]) == "voice.tts"
    # The streams to the services: the client's and the server's spans of each call, under the conversation.
    for method in (
        "SttService/StreamingRecognize",
        "LlmService/StreamingChat",
        "TtsService/StreamingSynthesize",
    ):
        calls = [s for s in spans if s.name.endswith(method)]
        client = [
            s for s in calls if s.parent is not None and s.parent.span_id == conversation.context.span_id
        ]
        assert client, (method, [s.name for s in spans])
        assert any(_children(calls, c) for c in client), f"no server span under the client's call {method}"
    # The model's span, by the GenAI conventions.
    chat = by_name["chat"].attributes or {}
    assert chat["gen_ai.operation.name"] == "chat" and chat["gen_ai.request.model"]
    assert int(chat["gen_ai.usage.input_tokens"]) > 0 < int(chat["gen_ai.usage.output_tokens"])  # type: ignore[arg-type]
    assert float(chat["voice.time_to_first_token_ms"]) > 0  # type: ignore[arg-type]
    tts = by_name["tts"].attributes or {}
    assert int(tts["voice.tts.pieces"]) >= 1 and float(tts["voice.time_to_first_audio_ms"]) > 0  # type: ignore[arg-type]
    # Voice to voice: the span's equals the report's, and its events agree within a frame.
    t = session.turns[0]["t_ms"]
    assert isinstance(t, dict)
    reported = t["first_audio"] - t["speech_end"]
    attributes = turn.attributes or {}
    assert abs(float(attributes["voice.voice_to_voice_ms"]) - reported) <= FRAME_MS  # type: ignore[arg-type]
    between = (_event_ns(turn, "first_audio") - _event_ns(turn, "speech_end")) / 1e6
    assert abs(between - reported) <= FRAME_MS, (between, reported)
    # The services' spans fall within the turn: the final before the first token, synthesis after it.
    assert by_name["stt.final"].end_time <= _event_ns(turn, "transcript_final") + FRAME_MS * 1e6  # type: ignore[operator]
    assert _event_ns(by_name["tts"], "first_audio") <= _event_ns(turn, "first_audio") + FRAME_MS * 1e6
    assert attributes["voice.turn.interrupted"] is False
    # No words of the user's in any attribute (privacy by default).
    words = set(normalize(str(session.turns[0]["user_text"])).split()) - {"a", "the", "i", "to", "of"}
    for span in spans:
        for value in (span.attributes or {}).values():
            found = words & set(normalize(str(value)).split())
            assert not found or len(found) < 2, (span.name, value)


async def test_an_interrupted_turn_says_so(services: Services, tmp_path: Path) -> None:
    _spans()
    question, interruption = english()[0], english()[4]
    settings = services.settings(system_prompt="Tell a long story of at least six sentences.", max_tokens=60)
    spoke_at: list[float] = []
    frames = over_the_reply(question.pcm(), interruption.pcm() + silence(1.0), spoke_at)
    _, session = await converse(settings, tmp_path, frames, timeout_s=240)
    spans = _spans()
    assert [t["interrupted"] for t in session.turns][:1] == [True], session.turns
    _no_orphans(spans)
    turns = sorted(_named(spans, "turn"), key=lambda s: s.start_time or 0)
    assert len(turns) == len(session.turns), [s.attributes for s in turns]
    first = turns[0].attributes or {}
    assert first["voice.turn.interrupted"] is True
    assert {"paused", "barge_in"} <= {e.name for e in turns[0].events}
    assert all((s.attributes or {})["voice.turn.interrupted"] is False for s in turns[1:])
    # Each turn has its own model span; the cut one's service was told to stop.
    for span in turns:
        assert len([s for s in _children(spans, span) if s.name.startswith("chat ")]) == 1


async def test_a_service_restarted_mid_turn_leaves_a_fault_on_the_turn(
    services: Services, tmp_path: Path
) -> None:
    """The chat service stopped at the reply's first words and started again on the same port."""
    _spans()
    first, second = english()[7], english()[4]
    settings = services.settings(system_prompt="Tell a long story of at least six sentences.", max_tokens=120)
    restart: list[asyncio.Task[None]] = []

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        for frame in frames_of(first.pcm() + silence(1.0)):
            yield frame
        async for frame in while_(lambda: conversation.busy):
            yield frame
            turn = conversation.current
            if not restart and turn is not None and "first_token" in turn.t_ms:
                restart.append(asyncio.create_task(services.restart_llm()))
        async for frame in while_(lambda: not restart[0].done(), 30):
            yield frame
        async for frame in then_quiet(silence(1.0) + second.pcm() + silence(1.0))(conversation):
            yield frame

    _, session = await converse(settings, tmp_path, frames, timeout_s=180)
    spans = _spans()
    assert restart and restart[0].done() and restart[0].exception() is None
    assert len(session.turns) == 2 and "error" in session.turns[0], session.turns
    _no_orphans(spans)
    turns = sorted(_named(spans, "turn"), key=lambda s: s.start_time or 0)
    assert len(turns) == 2, [s.name for s in spans]
    cut, after = turns
    assert cut.status.status_code is StatusCode.ERROR
    faults = [e for e in cut.events if e.name == "fault"]
    assert faults and any("llm" in str((e.attributes or {}).get("message")) for e in faults), cut.events
    # The next turn's model span comes from the restarted service, in the same trace, under its turn.
    assert after.status.status_code is not StatusCode.ERROR
    assert [s.name.split(" ")[0] for s in _children(spans, after)].count("chat") == 1


async def test_each_tool_call_is_a_span_under_its_turn_with_no_arguments(
    traced: InMemorySpanExporter, tmp_path: Path, tts: TtsServicer
) -> None:
    """A scripted chat service calls two tools in one reply, one of which fails."""
    _spans()
    asked = "what about order 4217"
    script = {
        asked: [Step([("order_status", {"order_id": "4217"}), ("broken_lookup", {"order_id": "4217"})])]
    }
    session, taps = await talk(tmp_path, tts, script, typed(asked), Shop())
    spans = _spans()
    [line] = session.turns
    assert [call["name"] for call in line["tools"]] == ["order_status", "broken_lookup"]  # type: ignore[attr-defined]
    (turn,) = _named(spans, "turn")
    calls = sorted(
        (s for s in _children(spans, turn) if s.name.startswith("execute_tool ")), key=lambda s: s.name
    )
    assert [s.name for s in calls] == ["execute_tool broken_lookup", "execute_tool order_status"]
    assert [(s.attributes or {})["voice.tool.failed"] for s in calls] == [True, False]
    assert (calls[0].attributes or {})["gen_ai.tool.name"] == "broken_lookup"
    # The chat service was given the turn's context with the turn and with each call's result.
    assert turn.context is not None
    ids = turn.context
    context = f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{int(ids.trace_flags):02x}"
    received = [r for r in taps.llm.requests() if r.HasField("user_turn") or r.HasField("tool_result")]
    assert [r.WhichOneof("request") for r in received] == ["user_turn", "tool_result", "tool_result"]
    assert {r.traceparent for r in received} == {context}
    # A tool's note is no fault, and its arguments and result are nowhere.
    assert not [e for e in turn.events if e.name == "fault"], turn.events
    for span in spans:
        texts = [*map(str, (span.attributes or {}).values()), *(str(e.attributes) for e in span.events)]
        assert not [t for t in texts if "4217" in t or "shipped" in t], span.name


async def test_a_turn_at_the_realtime_door_is_one_trace_too(gateway: Stack) -> None:
    """The gateway's conversations are traced as the edge client's are: a spoken turn over
    /v1/realtime, its times as the gateway's own voice_agent.turn event gives them. A health
    check (compose's, every 5 s) makes no trace."""
    _spans()
    async with httpx2.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{gateway.ports.http}/health")).status_code == 200
    said = english()[7]
    url = f"ws://127.0.0.1:{gateway.ports.http}/v1/realtime?voice_agent_events=true"
    events: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:

        async def listen() -> None:
            async for message in ws:
                events.append(json.loads(message))

        listening = asyncio.create_task(listen())
        pcm = at_rate(silence(0.5) + said.pcm() + silence(1.5), API_RATE_HZ)
        chunk = API_RATE_HZ // 10 * 2  # 100 ms, in real time as a microphone sends it
        for at in range(0, len(pcm), chunk):
            audio = base64.b64encode(pcm[at : at + chunk]).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            await asyncio.sleep(0.1)
        async with asyncio.timeout(90):
            while not [e for e in events if e["type"] == "voice_agent.turn"]:
                await asyncio.sleep(0.1)
        listening.cancel()
    deadline = time.monotonic() + 10  # the socket's conversation ends after it closes
    while not _named(list(EXPORTER.get_finished_spans()), "conversation") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    spans = _spans()
    # One trace: the gateway's span of the WebSocket, the conversation under it.
    _no_orphans(spans, root="WS /v1/realtime")  # and none of /health
    (conversation,) = _named(spans, "conversation")
    assert (conversation.attributes or {})["voice.front_door"] == "realtime"
    (turn,) = _named(spans, "turn")
    under = {s.name.split(" ")[0]: s for s in _children(spans, turn)}
    assert {"end_of_turn", "stt.final", "chat", "tts"} <= set(under), sorted(under)
    assert (_scope(under["stt.final"]), _scope(under["chat"]), _scope(under["tts"])) == (
        "voice.stt",
        "voice.llm",
        "voice.tts",
    )
    [reported] = [e for e in events if e["type"] == "voice_agent.turn"]
    t = reported["t_ms"]
    v2v = float((turn.attributes or {})["voice.voice_to_voice_ms"])  # type: ignore[arg-type]
    assert abs(v2v - (t["first_audio"] - t["speech_end"])) <= FRAME_MS, (v2v, t)
