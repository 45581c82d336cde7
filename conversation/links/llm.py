"""The conversation's stream to the chat service: user turns and tool results in, the reply's
deltas, tool calls and end out, as the core's own types. The history (with the calls and their
results) is mirrored here to restore it on a new stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc

from conversation.links.base import RESEND_WAIT_S, Link, Notify
from conversation.messages import Reply, ReplyDelta, ReplyEnd, ToolCalls
from conversation.tools import ToolCall, ToolSpec
from foundation.channels import Security
from voice.llm.v1 import llm_pb2, llm_pb2_grpc


def tool_set(specs: Sequence[ToolSpec], tool_choice: str = "auto") -> llm_pb2.ToolSet:
    tools = [
        llm_pb2.Tool(name=s.name, description=s.description, parameters_json=json.dumps(s.parameters))
        for s in specs
    ]
    return llm_pb2.ToolSet(tools=tools, tool_choice=tool_choice)


@dataclass
class _Asked:
    """The LLM turn in progress."""

    text: str
    turn_id: int
    events: asyncio.Queue[Reply]
    deltas: str = ""  # all it wrote
    traceparent: str = ""  # of the turn, sent with it
    step: str = ""  # what it wrote since its last calls (or its start)
    steps: int = 0  # times it called tools
    awaiting: set[str] = field(default_factory=set)  # the calls without a result yet
    resumed: bool = False  # every call has its result, and the service has not answered since
    give_up: asyncio.TimerHandle | None = None  # ends the turn if the service stays away


class LlmLink(
    Link[llm_pb2.StreamingChatRequest, llm_pb2.StreamingChatRequest, llm_pb2.StreamingChatResponse]
):
    """The conversation's stream; the history is mirrored here to restore it on a new stream.

    A turn cut by a lost stream before its first word is asked again on the next
    stream (for up to ``RESEND_WAIT_S``); one cut after its first words or calls ends
    there, with an error: what was already said or done is never done again.

    A turn that calls tools yields ``ToolCalls``; when each call has its ``tool_result``
    the service goes on with the same turn.
    """

    service = "llm"

    def __init__(
        self,
        address: str,
        security: Security,
        system_prompt: str,
        max_tokens: int,
        notify: Notify,
        tools: llm_pb2.ToolSet | None = None,
        temperature: float | None = None,
    ) -> None:
        super().__init__(address, security, notify)
        self._config = llm_pb2.ChatConfig(
            system_prompt=system_prompt, max_tokens=max_tokens, tools=tools, temperature=temperature
        )
        self.history: list[llm_pb2.Message] = []
        self._asked: _Asked | None = None

    async def turn(self, text: str, turn_id: int) -> AsyncIterator[Reply]:
        """Ask; yield this turn's deltas and then its end (an error end if the service fails it)."""
        asked = self._asked = _Asked(text, turn_id, asyncio.Queue(), traceparent=self.trace_of(turn_id))
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_USER, content=text))
        if not self.send(self._ask(asked)):
            self._wait_for_service(asked)
        try:
            while True:
                event = await asked.events.get()
                yield event
                if isinstance(event, ReplyEnd):
                    text = asked.step if asked.steps else event.text
                    if text:
                        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=text))
                    return
        finally:
            if asked.give_up is not None:
                asked.give_up.cancel()
            if self._asked is asked:
                self._asked = None

    def tool_result(self, call_id: str, output: str, is_error: bool = False) -> None:
        """The outcome of one of the turn's calls; the turn goes on when each has its own."""
        asked = self._asked
        if asked is None or call_id not in asked.awaiting:
            return  # of a turn that is over
        asked.awaiting.discard(call_id)
        asked.resumed = not asked.awaiting
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_TOOL, content=output, tool_call_id=call_id))
        result = llm_pb2.ToolResult(call_id=call_id, output=output, is_error=is_error)
        self.send(llm_pb2.StreamingChatRequest(tool_result=result, traceparent=asked.traceparent))

    def update(self, system_prompt: str | None = None, tools: llm_pb2.ToolSet | None = None) -> None:
        """New instructions or tools from the next generation on (here and on any later stream)."""
        update = llm_pb2.ConfigUpdate(tools=tools)
        if system_prompt is not None:
            self._config.system_prompt = update.system_prompt = system_prompt
        if tools is not None:
            self._config.tools.CopyFrom(tools)
        self.send(llm_pb2.StreamingChatRequest(update=update))

    def cancel(self, turn_id: int) -> None:
        asked = self._asked
        sent = self.send(llm_pb2.StreamingChatRequest(cancel=llm_pb2.Cancel(turn_id=turn_id)))
        if asked is not None and (not sent or asked.awaiting):
            self._end(asked)  # nothing runs in the service to cancel

    def truncate(self, heard: str, turn_id: int) -> None:
        if self.history and self.history[-1].role == llm_pb2.ROLE_ASSISTANT:
            self.history[-1].content = heard
        elif heard:
            self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=heard))
        self.send(llm_pb2.StreamingChatRequest(truncate=llm_pb2.Truncate(heard_text=heard, turn_id=turn_id)))

    def retract(self, turn_id: int) -> None:
        """Withdraw the last turn (ended) from the conversation, here and in the service."""
        while self.history and self.history.pop().role != llm_pb2.ROLE_USER:
            pass
        self.send(llm_pb2.StreamingChatRequest(retract=llm_pb2.Retract(turn_id=turn_id)))

    def _ask(self, asked: _Asked) -> llm_pb2.StreamingChatRequest:
        return llm_pb2.StreamingChatRequest(
            user_turn=llm_pb2.UserTurn(text=asked.text, turn_id=asked.turn_id), traceparent=asked.traceparent
        )

    def _first(self) -> llm_pb2.StreamingChatRequest:
        asked = self._asked
        config = llm_pb2.ChatConfig()
        config.CopyFrom(self._config)
        config.history.extend(self.history[:-1] if asked is not None else self.history)
        return llm_pb2.StreamingChatRequest(config=config)

    def _call(
        self, channel: grpc.aio.Channel, requests: AsyncIterator[llm_pb2.StreamingChatRequest]
    ) -> AsyncIterator[llm_pb2.StreamingChatResponse]:
        return llm_pb2_grpc.LlmServiceStub(channel).StreamingChat(requests)  # type: ignore[no-any-return]

    def _on_open(self) -> None:
        if self._asked is not None:
            self.send(self._ask(self._asked))

    def _on_response(self, response: llm_pb2.StreamingChatResponse) -> None:
        asked = self._asked
        kind = response.WhichOneof("response")
        if kind == "error":
            self._refused(response.error)
            return
        turn_id = getattr(response, kind).turn_id
        if asked is None or turn_id != asked.turn_id:
            return  # of a turn that is over
        if asked.give_up is not None:
            asked.give_up.cancel()
        asked.resumed = False
        if kind == "delta":
            asked.deltas += response.delta.text
            asked.step += response.delta.text
            asked.events.put_nowait(ReplyDelta(turn_id, response.delta.text))
        elif kind == "turn_end" and response.turn_end.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS:
            self._called(asked, response.turn_end.tool_calls)
        elif kind == "turn_end":
            end = response.turn_end
            asked.events.put_nowait(ReplyEnd(turn_id, end.text, end.error.message))

    def _called(self, asked: _Asked, calls: Sequence[llm_pb2.ToolCall]) -> None:
        """The model called tools: the step goes into the history; the calls await their results."""
        message = llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=asked.step, tool_calls=calls)
        self.history.append(message)
        called = ToolCalls(asked.turn_id, asked.step, tuple(_call(c) for c in calls))
        asked.step, asked.steps = "", asked.steps + 1
        asked.awaiting = {c.id for c in calls}
        asked.events.put_nowait(called)

    def _refused(self, error: llm_pb2.RequestError) -> None:
        """The service refused a request; the stream goes on. A turn that waits on it ends."""
        message = f"the chat service refused a request: {error.message}"
        asked = self._asked
        if asked is not None and asked.resumed:
            self._end(asked, message)  # a refused tool result: the turn would not go on
        else:
            self._notify(message)

    def _on_lost(self) -> None:
        asked = self._asked
        if asked is not None and (asked.deltas or asked.steps):
            self._end(asked, "the chat service was lost during this reply")
        elif asked is not None:
            self._wait_for_service(asked)

    def _wait_for_service(self, asked: _Asked) -> None:
        if asked.give_up is None:
            message = f"the chat service did not come back within {RESEND_WAIT_S:.0f} s"
            asked.give_up = asyncio.get_running_loop().call_later(RESEND_WAIT_S, self._end, asked, message)

    def _end(self, asked: _Asked, error: str = "") -> None:
        """End ``asked`` here: with what it said so far, and the error that stopped it."""
        if self._asked is not asked:
            return
        self._asked = None
        asked.events.put_nowait(ReplyEnd(asked.turn_id, asked.deltas, error))


def _call(call: llm_pb2.ToolCall) -> ToolCall:
    try:
        arguments = json.loads(call.arguments_json or "{}")
    except ValueError:
        arguments = None
    # The service checks arguments against the tool's schema; this keeps the core's type honest.
    return ToolCall(call.id, call.name, arguments if isinstance(arguments, dict) else {})
