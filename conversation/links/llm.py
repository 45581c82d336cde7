"""The conversation's stream to the chat service: user turns in, the reply's deltas and end out,
as the core's own types. The history is mirrored here to restore it on a new stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from conversation.links.base import RESEND_WAIT_S, Link, Notify
from conversation.messages import Reply, ReplyDelta, ReplyEnd
from foundation.channels import Security
from voice.llm.v1 import llm_pb2, llm_pb2_grpc


@dataclass
class _Asked:
    """The LLM turn in progress."""

    text: str
    turn_id: int
    events: asyncio.Queue[Reply]
    deltas: str = ""
    give_up: asyncio.TimerHandle | None = None  # ends the turn if the service stays away


class LlmLink(
    Link[llm_pb2.StreamingChatRequest, llm_pb2.StreamingChatRequest, llm_pb2.StreamingChatResponse]
):
    """The conversation's stream; the history is mirrored here to restore it on a new stream.

    A turn cut by a lost stream before its first word is asked again on the next
    stream (for up to ``RESEND_WAIT_S``); one cut after its first words ends there,
    with an error: what was already said is never said again.
    """

    service = "llm"

    def __init__(
        self, address: str, security: Security, system_prompt: str, max_tokens: int, notify: Notify
    ) -> None:
        super().__init__(address, security, notify)
        self._config = llm_pb2.ChatConfig(system_prompt=system_prompt, max_tokens=max_tokens)
        self.history: list[llm_pb2.Message] = []
        self._asked: _Asked | None = None

    async def turn(self, text: str, turn_id: int) -> AsyncIterator[Reply]:
        """Ask; yield this turn's deltas and then its end (an error end if the service fails it)."""
        asked = self._asked = _Asked(text, turn_id, asyncio.Queue())
        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_USER, content=text))
        if not self.send(self._ask(asked)):
            self._wait_for_service(asked)
        try:
            while True:
                event = await asked.events.get()
                yield event
                if isinstance(event, ReplyEnd):
                    if event.text:
                        self.history.append(llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=event.text))
                    return
        finally:
            if asked.give_up is not None:
                asked.give_up.cancel()
            if self._asked is asked:
                self._asked = None

    def cancel(self, turn_id: int) -> None:
        asked = self._asked
        if not self.send(llm_pb2.StreamingChatRequest(cancel=llm_pb2.Cancel(turn_id=turn_id))) and asked:
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
            user_turn=llm_pb2.UserTurn(text=asked.text, turn_id=asked.turn_id)
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
        turn_id = response.delta.turn_id if kind == "delta" else response.turn_end.turn_id
        if asked is None or turn_id != asked.turn_id:
            return  # of a turn that is over
        if asked.give_up is not None:
            asked.give_up.cancel()
        if kind == "delta":
            asked.deltas += response.delta.text
            asked.events.put_nowait(ReplyDelta(turn_id, response.delta.text))
        else:
            end = response.turn_end
            asked.events.put_nowait(ReplyEnd(turn_id, end.text, end.error.message))

    def _on_lost(self) -> None:
        asked = self._asked
        if asked is not None and asked.deltas:
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
