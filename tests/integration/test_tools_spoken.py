"""Tools by voice, every part real: the question is heard by the STT service, the embedded
Qwen2.5-Coder-1.5B calls the test MCP server's tool (tests/mcp_orders.py, over stdio) with the
right arguments, and the spoken answer, transcribed back by the STT service, holds the tool's
result. Slow calls get a filler each, a different one each time; a tool that raises is told
and the talk goes on; speech over the filler is heard and answered.

The questions are synthesized by the TTS service (no recording here asks about orders or sums).
What is checked comes from the taps (harness/tap.py): the calls the chat service made, the
results it received, the audio it had synthesized per turn and piece.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from conversation import Conversation
from conversation.tools import open_tools
from edge_client.config import EdgeSettings
from harness import servers
from harness.edge import Session, converse, frames_of, silence, while_
from harness.speech import REPO, cer, normalize, wer
from harness.spoken import heard, said
from harness.tap import STREAMING_CHAT, Taps, tapped
from voice.llm.v1 import llm_pb2
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

# The embedded model that calls tools well (services/llm/models.py).
CAPABLE_MODEL = "qwen2.5-coder-1.5b"
ORDER = "What is the status of order 42?"
# Needs no tool.
CAPITAL = "What is the capital of France?"
# As a shop would configure its agent.
PROMPT = (
    "You are the voice assistant of a shop, speaking with a customer. Use the tools for order "
    "statuses. Answer in one short sentence."
)
SORRY = re.compile(
    r"sorry|unable|not able|couldn't|could not|can't|cannot|problem|error|down|unavailable|trouble"
)


@dataclass(frozen=True)
class Services:
    stt: str
    llm: str
    tts: str
    stt_stub: stt_pb2_grpc.SttServiceStub
    tts_stub: tts_pb2_grpc.TtsServiceStub


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Services]:
    """The three services with their real models, the capable chat model among them."""
    async with AsyncExitStack() as stack:
        stt_server = await stack.enter_async_context(servers.stt_server())
        llm_server = await stack.enter_async_context(servers.llm_server(CAPABLE_MODEL))
        tts_server = await stack.enter_async_context(servers.tts_server())
        stt_address, tts_address = f"127.0.0.1:{stt_server.port}", f"127.0.0.1:{tts_server.port}"
        stt_channel = await stack.enter_async_context(grpc.aio.insecure_channel(stt_address))
        tts_channel = await stack.enter_async_context(grpc.aio.insecure_channel(tts_address))
        yield Services(
            stt_address,
            f"127.0.0.1:{llm_server.port}",
            tts_address,
            stt_pb2_grpc.SttServiceStub(stt_channel),
            tts_pb2_grpc.TtsServiceStub(tts_channel),
        )


async def spoken(services: Services, text: str) -> bytes:
    """``text`` said by the TTS service's voice, as 16 kHz PCM."""
    return await said(services.tts_stub, text)


def mcp_config(tmp: Path, **env: str) -> str:
    """The test MCP server, offering ``add`` and ``order_status``, with ``env``."""
    path = tmp / "mcp.json"
    server = {"command": sys.executable, "args": [str(REPO / "tests" / "mcp_orders.py")]}
    path.write_text(
        json.dumps({"mcpServers": {"orders": {**server, "env": {"TOOLS": "add,order_status", **env}}}})
    )
    return str(path)


Frames = Callable[[Conversation], AsyncIterator[bytes]]


def one_after_another(*questions: bytes) -> Frames:
    """Each question, then silence while the agent answers it."""

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        for question in questions:
            for frame in frames_of(question + silence(1.0)):
                yield frame
            async for frame in while_(lambda: conversation.busy, 400):
                yield frame

    return frames


async def talk(services: Services, tmp: Path, frames: Frames, **env: str) -> tuple[Session, Taps]:
    settings = EdgeSettings(
        stt=services.stt,
        llm=services.llm,
        tts=services.tts,
        system_prompt=PROMPT,
        temperature=0.0,  # the model's choice to call, alike each run
        mcp_config=mcp_config(tmp, **env),
    )
    told: list[str] = []
    async with tapped(settings) as (settings, taps), open_tools(settings, told.append) as tools:
        assert tools is not None and not told, told
        _, session = await converse(settings, tmp, frames, timeout_s=900, tools=tools)
    print("\n".join(json.dumps(turn) for turn in session.turns))
    return session, taps


def calls(taps: Taps) -> list[tuple[int, str, dict[str, object]]]:
    """Every call the chat service made: (turn id, tool, arguments)."""
    ends = [
        r.turn_end
        for r in taps.llm.delivered(STREAMING_CHAT, llm_pb2.StreamingChatResponse)
        if r.HasField("turn_end") and r.turn_end.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS
    ]
    return [(end.turn_id, c.name, json.loads(c.arguments_json)) for end in ends for c in end.tool_calls]


def digits(value: object) -> str:
    return "".join(c for c in str(value) if c.isdigit())


def results(taps: Taps) -> list[llm_pb2.ToolResult]:
    return [r.tool_result for r in taps.llm.requests() if r.HasField("tool_result")]


def turn_id(taps: Taps, turn: dict[str, object]) -> int:
    return taps.llm.turn_id(str(turn["user_text"]))


async def answer(services: Services, taps: Taps, turn: dict[str, object]) -> str:
    """The reply of ``turn`` as the speech service synthesized it, heard by the STT service."""
    audio = taps.tts.audio(turn_id(taps, turn))
    return normalize(await heard(services.stt_stub, audio.tobytes(), EdgeSettings().output_rate_hz))


async def answered(services: Services, taps: Taps, turn: dict[str, object], word: str) -> None:
    """The reply of ``turn`` the chat service delivered holds ``word``, and the audio the speech
    service synthesized for it is that reply, heard back within half its letters (a lone "Paris"
    is heard as "harris" now and then)."""
    reply = normalize(taps.llm.reply(turn_id(taps, turn)))
    assert word in reply, reply
    heard = await answer(services, taps, turn)
    assert cer(reply, heard) <= 0.5, (reply, heard)


def said_before(taps: Taps, turn: dict[str, object], at_s: float) -> list[str]:
    """The pieces of ``turn``'s reply whose audio the speech service delivered before ``at_s``."""
    tid, start, said = turn_id(taps, turn), 0, []
    for piece in taps.tts.pieces(tid):
        if taps.tts.delivered_at(tid, start) < at_s:
            said.append(piece.text.strip())
        start += len(piece.samples)
    return said


def result_sent_at(taps: Taps) -> list[float]:
    """When the chat service received each tool result."""
    return [
        m.at_s
        for m in taps.llm.messages
        if m.from_client and llm_pb2.StreamingChatRequest.FromString(m.data).HasField("tool_result")
    ]


async def test_a_typed_question_calls_the_tool_and_the_answer_holds_its_result(
    services: Services, tmp_path: Path
) -> None:
    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        async for frame in while_(lambda: not conversation.agent.llm.connected, 60):
            yield frame
        conversation.ask("What is the status of order 42?", {"transcript_final": conversation.now_ms()})
        async for frame in while_(lambda: conversation.agent_busy, 400):
            yield frame

    session, taps = await talk(services, tmp_path, frames)
    [(_, name, arguments)] = calls(taps)
    assert name == "order_status" and digits(arguments["order_id"]) == "42", calls(taps)
    [status] = results(taps)
    assert not status.is_error and json.loads(status.output)["carrier"] == "DHL"
    heard = await answer(services, taps, session.turns[0])
    assert "shipped" in heard or "thursday" in heard or "dhl" in heard, heard


async def test_a_spoken_question_calls_the_right_tool_and_the_answer_holds_its_result(
    services: Services, tmp_path: Path
) -> None:
    order = await spoken(services, ORDER)
    session, taps = await talk(services, tmp_path, one_after_another(order))
    [(_, name, arguments)] = calls(taps)
    assert name == "order_status" and digits(arguments["order_id"]) == "42", calls(taps)
    [status] = results(taps)
    assert not status.is_error and json.loads(status.output)["status"] == "shipped"
    heard = await answer(services, taps, session.turns[0])
    assert "shipped" in heard or "thursday" in heard or "dhl" in heard, heard


async def test_a_slow_call_gets_a_filler_before_its_answer(services: Services, tmp_path: Path) -> None:
    # Two slow calls in a row getting different fillers: tests/service/test_conversation_tools.py.
    order = await spoken(services, ORDER)
    session, taps = await talk(services, tmp_path, one_after_another(order), DELAY_S="1.5")
    [turn] = session.turns
    [sent] = result_sent_at(taps)
    assert said_before(taps, turn, sent), "nothing was said while the call worked"
    assert turn["fillers"] and turn["tools"][0]["ms"] >= 1500, turn  # type: ignore[index]
    heard = await answer(services, taps, turn)
    assert "shipped" in heard or "thursday" in heard or "dhl" in heard, heard


async def test_a_tool_that_raises_is_told_and_the_next_turn_works(services: Services, tmp_path: Path) -> None:
    order, capital = await spoken(services, ORDER), await spoken(services, CAPITAL)
    session, taps = await talk(services, tmp_path, one_after_another(order, capital), BROKEN="1")
    [failed] = results(taps)
    assert failed.is_error, failed
    # What the model said of it, and that it was spoken: Whisper tiny.en hears "Error executing
    # tool ..." now and then as "air executing tool ...".
    said = normalize(taps.llm.reply(turn_id(taps, session.turns[0])))
    assert SORRY.search(said), said
    heard = await answer(services, taps, session.turns[0])
    assert wer(said, heard) <= 0.5, (said, heard)
    await answered(services, taps, session.turns[1], "paris")


async def test_speech_over_the_filler_is_heard_and_answered(services: Services, tmp_path: Path) -> None:
    order, capital = await spoken(services, ORDER), await spoken(services, CAPITAL)

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        for frame in frames_of(order + silence(1.0)):
            yield frame
        # The call waits 4 s: speak once the filler is playing.
        async for frame in while_(lambda: not (conversation.current and conversation.current.fillers), 120):
            yield frame
        async for frame in one_after_another(capital)(conversation):
            yield frame

    session, taps = await talk(services, tmp_path, frames, DELAY_S="4")
    first, second = session.turns[0], session.turns[-1]
    assert first["interrupted"] and first["fillers"], first
    assert "capital" in normalize(str(second["user_text"])), second
    kept = results(taps)[0]
    assert not kept.is_error and json.loads(kept.output)["status"] == "shipped"  # the call's result is kept
    await answered(services, taps, second, "paris")
