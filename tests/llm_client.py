"""Turns on a StreamingChat call, the way a client program takes them."""

from __future__ import annotations

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
