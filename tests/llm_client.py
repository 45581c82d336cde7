"""Turns on a StreamingChat call, the way a client program takes them."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from voice.llm.v1 import llm_pb2

Request = llm_pb2.StreamingChatRequest


def user(text: str) -> Request:
    return Request(user_turn=llm_pb2.UserTurn(text=text))


async def read_turn(call: grpc.aio.StreamStreamCall) -> tuple[list[str], llm_pb2.TurnEnd]:
    """The deltas of the turn under way, and its end."""
    deltas: list[str] = []
    while True:
        response = await call.read()
        assert response is not grpc.aio.EOF, "the stream ended before the turn did"
        if response.HasField("delta"):
            deltas.append(response.delta.text)
        else:
            return deltas, response.turn_end


async def turn(call: grpc.aio.StreamStreamCall, text: str) -> tuple[list[str], llm_pb2.TurnEnd]:
    await call.write(user(text))
    return await read_turn(call)


@dataclass
class ToolTurn:
    """What a generation sent: text deltas, tool call pieces, and its end."""

    deltas: list[str] = field(default_factory=list)
    calls: list[llm_pb2.ToolCallDelta] = field(default_factory=list)
    end: llm_pb2.TurnEnd = field(default_factory=llm_pb2.TurnEnd)

    def arguments(self, index: int = 0) -> str:
        """Call ``index``'s arguments as streamed."""
        return "".join(piece.arguments_delta for piece in self.calls if piece.index == index)


async def read_generation(call: grpc.aio.StreamStreamCall) -> ToolTurn:
    """The deltas and tool call pieces up to the next TurnEnd (a RequestError fails)."""
    got = ToolTurn()
    while True:
        response = await call.read()
        assert response is not grpc.aio.EOF, "the stream ended before the turn did"
        kind = response.WhichOneof("response")
        assert kind != "error", f"request refused: {response.error.message}"
        if kind == "delta":
            got.deltas.append(response.delta.text)
        elif kind == "tool_call":
            got.calls.append(response.tool_call)
        else:
            got.end = response.turn_end
            return got


async def read_refusal(call: grpc.aio.StreamStreamCall) -> llm_pb2.RequestError:
    response = await call.read()
    assert response is not grpc.aio.EOF, "the stream ended instead of refusing the request"
    assert response.HasField("error"), f"expected a RequestError, got {response}"
    error: llm_pb2.RequestError = response.error
    return error


def tool_result(call_id: str, output: str, is_error: bool = False) -> Request:
    return Request(tool_result=llm_pb2.ToolResult(call_id=call_id, output=output, is_error=is_error))
