"""The core's tool calls, end to end through the links: the tools offered, each call run and its
result sent back, the words said while a slow call works, failures, the bound, speech over a call,
and a change of tools mid-conversation.

Plumbing only: the chat service here follows a script (a stand-in for the model, which
test_tools_spoken.py puts in its place); speech synthesis is the real service. What is checked
is the services' account, recorded by harness/tap.py: the requests the chat service received,
the audio synthesized per turn and piece.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from conversation import Conversation
from conversation.fillers import PHRASES
from conversation.tools import Toolbox, ToolCall, ToolSpec
from edge_client.config import EdgeSettings
from harness.edge import Session, converse, while_
from harness.gateway_stack import NOWHERE
from harness.servers import running_server
from harness.tap import LlmTap, Taps, tapped
from services.common.config import ServerSettings
from services.tts.config import TtsSettings
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

SLOW_S = 1.5
ORDERS = {"4217": "shipped on Monday", "1009": "being packed"}


@dataclass(frozen=True)
class Step:
    """What the scripted model does next in a turn: write ``words``, then call ``calls``."""

    calls: list[tuple[str, dict[str, object]]]
    words: str = ""


class ScriptedChat(llm_pb2_grpc.LlmServiceServicer):
    """A chat service that follows ``script``: for a user turn it knows, it takes the steps one
    after the other (each waiting for its calls' results), then says the results; any other
    turn gets "I heard you."."""

    def __init__(self, script: dict[str, list[Step]], streams: int = 0) -> None:
        self.script = script
        self.streams = streams  # end this many streams after a turn, as a restarted service would

    async def StreamingChat(
        self, requests: AsyncIterator[llm_pb2.StreamingChatRequest], context: Any
    ) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        turn_id, calls = 0, 0
        steps: list[Step] = []
        awaiting: set[str] = set()
        outputs: list[str] = []
        async for request in requests:
            kind = request.WhichOneof("request")
            if kind == "user_turn":
                turn_id, outputs = request.user_turn.turn_id, []
                steps = list(self.script.get(request.user_turn.text, []))
            elif kind == "tool_result" and request.tool_result.call_id in awaiting:
                awaiting.discard(request.tool_result.call_id)
                outputs.append(request.tool_result.output)
                if awaiting:
                    continue
            elif kind == "tool_result":
                yield _response(error=llm_pb2.RequestError(code=3, message="no such call"))
                continue
            elif kind == "cancel" and awaiting:
                awaiting.clear()
                yield _response(
                    turn_end=llm_pb2.TurnEnd(finish_reason=llm_pb2.FINISH_REASON_CANCELLED, turn_id=turn_id)
                )
                continue
            else:
                continue
            if steps:
                step = steps.pop(0)
                if step.words:
                    yield _response(delta=llm_pb2.TextDelta(text=step.words, turn_id=turn_id))
                made = []
                for index, (name, arguments) in enumerate(step.calls):
                    calls += 1
                    made.append(
                        llm_pb2.ToolCall(id=f"call-{calls}", name=name, arguments_json=json.dumps(arguments))
                    )
                    yield _response(
                        tool_call=llm_pb2.ToolCallDelta(
                            index=index, id=f"call-{calls}", name=name, turn_id=turn_id
                        )
                    )
                awaiting = {c.id for c in made}
                end = llm_pb2.TurnEnd(
                    finish_reason=llm_pb2.FINISH_REASON_TOOL_CALLS, turn_id=turn_id, tool_calls=made
                )
                yield _response(turn_end=end)
            else:
                text = f"The answer is {'; '.join(outputs)}." if outputs else "I heard you."
                yield _response(delta=llm_pb2.TextDelta(text=text, turn_id=turn_id))
                yield _response(
                    turn_end=llm_pb2.TurnEnd(
                        finish_reason=llm_pb2.FINISH_REASON_STOP, turn_id=turn_id, text=text
                    )
                )
                if self.streams > 0:
                    self.streams -= 1
                    return


def _response(**kind: Any) -> llm_pb2.StreamingChatResponse:
    return llm_pb2.StreamingChatResponse(**kind)


@dataclass
class Shop:
    """The front end's tools: an order's status (at once, or after ``SLOW_S``), a lookup that
    always fails, and sums."""

    timeout_s: float = 5.0
    fillers: bool = True
    tool_choice: str = "auto"
    started: list[float] = field(default_factory=list)

    def specs(self) -> list[ToolSpec]:
        order: dict[str, object] = {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        }
        numbers: dict[str, object] = {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        }
        return [
            ToolSpec("order_status", "An order's status.", order),
            ToolSpec("slow_status", "An order's status, from the slow system.", order),
            ToolSpec("broken_lookup", "An order, from the old system.", order),
            ToolSpec("add", "a + b", numbers),
        ]

    async def call(self, call: ToolCall) -> str:
        if call.name == "add":
            return str(float(str(call.arguments["a"])) + float(str(call.arguments["b"])))
        if call.name == "broken_lookup":
            raise RuntimeError("the order database is down")
        if call.name == "slow_status":
            await asyncio.sleep(SLOW_S)
        return ORDERS[str(call.arguments["order_id"])]


async def talk(
    tmp: Path,
    tts: TtsServicer,
    script: dict[str, list[Step]],
    frames: Callable[[Conversation], AsyncIterator[bytes]],
    tools: Any,
    chat: ScriptedChat | None = None,
    **settings: Any,
) -> tuple[Session, Taps]:
    """A conversation with the scripted chat service and the real voice, fed ``frames``."""
    chat = chat or ScriptedChat(script)
    add_chat = lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(chat, s)  # noqa: E731
    add_tts = lambda s: tts_pb2_grpc.add_TtsServiceServicer_to_server(tts, s)  # noqa: E731
    async with (
        running_server(ServerSettings(metrics_port=0), add_chat, ["voice.llm.v1.LlmService"]) as llm_server,
        running_server(TtsSettings(metrics_port=0), add_tts, [TTS_SERVICE]) as tts_server,
    ):
        base = EdgeSettings(
            stt=NOWHERE, llm=f"127.0.0.1:{llm_server.port}", tts=f"127.0.0.1:{tts_server.port}", **settings
        )
        async with tapped(base) as (tapped_settings, taps):
            _, session = await converse(tapped_settings, tmp, frames, timeout_s=90, tools=tools)
    return session, taps


def typed(*lines: str, then: Callable[[Conversation], AsyncIterator[bytes]] | None = None) -> Any:
    """Each line asked when the agent is done with the last."""

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        async for frame in while_(lambda: not conversation.agent.llm.connected, 30):
            yield frame
        for line in lines:
            conversation.ask(line, {"transcript_final": conversation.now_ms()})
            async for frame in while_(lambda: conversation.agent_busy, 30):
                yield frame

    return frames


def results(taps: Taps) -> list[llm_pb2.ToolResult]:
    return [r.tool_result for r in taps.llm.requests() if r.HasField("tool_result")]


def spoken(taps: Taps, user_text: str) -> list[str]:
    """The pieces of the reply to ``user_text`` as the speech service synthesized them."""
    return [piece.text.strip() for piece in taps.tts.pieces(taps.llm.turn_id(user_text))]


def tools_of(turn: dict[str, object]) -> list[dict[str, Any]]:
    """The calls a turn's report line gives."""
    return cast(list[dict[str, Any]], turn["tools"])


def said_before(taps: Taps, user_text: str, at_s: float) -> str:
    """The text of the reply to ``user_text`` the speech service was given (and flushed) before
    ``at_s``: said while the call worked, whatever the synthesis took under load."""
    turn_id, said, flushed = taps.llm.turn_id(user_text), "", ""
    for message in taps.tts.messages:
        if message.from_client and message.at_s < at_s:
            request = tts_pb2.StreamingSynthesizeRequest.FromString(message.data)
            if request.turn_id == turn_id and request.HasField("text"):
                said += request.text
            elif request.turn_id == turn_id and request.HasField("flush"):
                flushed = said
    return " ".join(flushed.split())


def sent_at(tap: LlmTap, kind: str) -> list[float]:
    """When the chat service received each request of ``kind``."""
    found = []
    for message in tap.messages:
        if message.from_client and llm_pb2.StreamingChatRequest.FromString(message.data).HasField(kind):
            found.append(message.at_s)
    return found


async def test_a_call_runs_and_its_result_answers_the_same_turn(tmp_path: Path, tts: TtsServicer) -> None:
    asked = "what about order 4217"
    script = {asked: [Step([("order_status", {"order_id": "4217"})])]}
    session, taps = await talk(tmp_path, tts, script, typed(asked), Shop())
    config = taps.llm.requests()[0].config
    assert not config.HasField("temperature")
    assert [t.name for t in config.tools.tools] == ["order_status", "slow_status", "broken_lookup", "add"]
    assert json.loads(config.tools.tools[0].parameters_json)["required"] == ["order_id"]
    [result] = results(taps)
    assert (result.call_id, result.output, result.is_error) == ("call-1", "shipped on Monday", False)
    assert " ".join(spoken(taps, asked)) == "The answer is shipped on Monday."  # no filler: it was quick
    [turn] = session.turns
    [call] = tools_of(turn)
    assert call["name"] == "order_status" and call["arguments"] == {"order_id": "4217"}
    assert call["result"] == "shipped on Monday" and 0 <= call["ms"] < 500 and "fillers" not in turn


async def test_a_slow_call_gets_one_filler_and_the_next_slow_call_another(
    tmp_path: Path, tts: TtsServicer
) -> None:
    first, second = "where is order 4217", "and order 1009"
    script = {
        first: [Step([("slow_status", {"order_id": "4217"})])],
        second: [Step([("slow_status", {"order_id": "1009"})])],
    }
    session, taps = await talk(tmp_path, tts, script, typed(first, second), Shop())
    fillers = []
    for asked, answer, sent in zip(
        (first, second), ORDERS.values(), sent_at(taps.llm, "tool_result"), strict=True
    ):
        filler = said_before(taps, asked, sent)  # the filler came while the call worked
        assert filler in PHRASES and " ".join(spoken(taps, asked)) == f"{filler} The answer is {answer}.", (
            filler
        )
        fillers.append(filler)
    assert fillers[0] != fillers[1]
    assert [t["fillers"] for t in session.turns] == [[f] for f in fillers]
    assert all(SLOW_S * 1000 <= tools_of(t)[0]["ms"] < SLOW_S * 1000 + 500 for t in session.turns)


async def test_the_models_own_words_before_a_slow_call_are_said_while_it_works(
    tmp_path: Path, tts: TtsServicer
) -> None:
    asked = "where is order 4217"
    script = {asked: [Step([("slow_status", {"order_id": "4217"})], words="Let me look at that order.")]}
    session, taps = await talk(tmp_path, tts, script, typed(asked), Shop())
    [result_at] = sent_at(taps.llm, "tool_result")
    assert said_before(taps, asked, result_at) == "Let me look at that order."
    assert " ".join(spoken(taps, asked)) == "Let me look at that order. The answer is shipped on Monday."
    assert "fillers" not in session.turns[0]


async def test_a_failed_or_timed_out_call_is_an_error_for_the_model_and_the_talk_goes_on(
    tmp_path: Path, tts: TtsServicer
) -> None:
    broken, slow, then = "check the old system", "where is order 4217", "hello"
    script = {
        broken: [Step([("broken_lookup", {"order_id": "4217"})])],
        slow: [Step([("slow_status", {"order_id": "4217"})])],
    }
    session, taps = await talk(tmp_path, tts, script, typed(broken, slow, then), Shop(timeout_s=0.5))
    failed, timed_out = results(taps)
    assert failed.is_error and failed.output == "broken_lookup failed: the order database is down"
    assert timed_out.is_error and timed_out.output == "slow_status did not answer within 0.5 s"
    assert spoken(taps, then) == ["I heard you."]
    assert [tools_of(t)[0].get("error") for t in session.turns[:2]] == [True, True]
    assert "error" not in session.turns[2]


async def test_calls_past_the_bound_of_a_turn_are_refused(tmp_path: Path, tts: TtsServicer) -> None:
    asked = "add a lot"
    script = {asked: [Step([("add", {"a": i, "b": 1}) for i in range(6)])]}
    session, taps = await talk(tmp_path, tts, script, typed(asked), Shop())
    sent = {r.call_id: r for r in results(taps)}
    assert [sent[f"call-{i}"].output for i in range(1, 5)] == ["1.0", "2.0", "3.0", "4.0"]
    refused = [sent["call-5"], sent["call-6"]]
    assert all(r.is_error and "at most 4 tool calls a turn" in r.output for r in refused) and len(sent) == 6
    assert len(tools_of(session.turns[0])) == 4


async def test_speech_over_a_slow_call_is_answered_and_the_calls_result_is_kept(
    tmp_path: Path, tts: TtsServicer
) -> None:
    slow, cut_in = "where is order 4217", "never mind, add two and three"
    script = {
        slow: [Step([("slow_status", {"order_id": "4217"})])],
        cut_in: [Step([("add", {"a": 2, "b": 3})])],
    }

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        async for frame in while_(lambda: not conversation.agent.llm.connected, 30):
            yield frame
        conversation.ask(slow, {"transcript_final": conversation.now_ms()})
        async for frame in while_(lambda: not (conversation.current and conversation.current.fillers), 10):
            yield frame
        conversation.ask(cut_in, {"transcript_final": conversation.now_ms()})  # as a final over the filler
        async for frame in while_(lambda: conversation.agent_busy, 30):
            yield frame

    session, taps = await talk(tmp_path, tts, script, frames, Shop())
    kept, _ = results(taps)
    assert (kept.output, kept.is_error) == ("shipped on Monday", False)  # not cancelled
    requests = [r.WhichOneof("request") for r in taps.llm.requests()]
    # The result goes into the model's history before its turn is cancelled; then the new turn.
    assert requests[1:] == ["user_turn", "tool_result", "cancel", "truncate", "user_turn", "tool_result"], (
        requests
    )
    assert len(spoken(taps, slow)) <= 1  # the filler at most: nothing said after the cut
    assert " ".join(spoken(taps, cut_in)) == "The answer is 5.0."
    first = session.turns[0]
    assert first["interrupted"] and tools_of(first)[0]["result"] == "shipped on Monday"
    assert taps.llm.truncated()[-1].heard_text == ""  # the filler is not the model's


async def test_new_instructions_and_tools_from_the_next_reply(tmp_path: Path, tts: TtsServicer) -> None:
    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        async for frame in typed("hello")(conversation):
            yield frame
        conversation.update(system_prompt="Answer in French.", tools=Toolbox({}))
        async for frame in typed("again")(conversation):
            yield frame

    _, taps = await talk(tmp_path, tts, {}, frames, Shop(), temperature=0.25)
    assert taps.llm.requests()[0].config.temperature == 0.25  # set, where by default the service's
    requests = [r for r in taps.llm.requests() if r.WhichOneof("request") != "config"]
    kinds = [r.WhichOneof("request") for r in requests]
    assert kinds == ["user_turn", "update", "user_turn"], kinds
    update = requests[1].update
    assert update.system_prompt == "Answer in French." and update.HasField("tools") and not update.tools.tools


async def test_the_history_keeps_calls_and_results_on_a_new_stream(tmp_path: Path, tts: TtsServicer) -> None:
    asked = "what about order 4217"
    script = {asked: [Step([("order_status", {"order_id": "4217"})], words="Let me see.")]}
    chat = ScriptedChat(script, streams=1)  # the stream ends after the first turn
    _, taps = await talk(tmp_path, tts, script, typed(asked, "thanks"), Shop(), chat)
    configs = [r.config for r in taps.llm.requests() if r.HasField("config")]
    assert len(configs) == 2, "no new stream was opened"
    history = [
        (m.role, m.content, [(c.name, c.arguments_json) for c in m.tool_calls], m.tool_call_id)
        for m in configs[1].history
    ]
    assert history == [
        (llm_pb2.ROLE_USER, asked, [], ""),
        (llm_pb2.ROLE_ASSISTANT, "Let me see.", [("order_status", '{"order_id": "4217"}')], ""),
        (llm_pb2.ROLE_TOOL, "shipped on Monday", [], "call-1"),
        (llm_pb2.ROLE_ASSISTANT, "The answer is shipped on Monday.", [], ""),
    ]
    assert spoken(taps, "thanks") == ["I heard you."]
