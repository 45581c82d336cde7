"""The llm service of the compose stack, as a client reaches it on 127.0.0.1:50052."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.containers.conftest import STACK_ENV
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.containers

REPO = Path(__file__).resolve().parents[2]
TARGET = "127.0.0.1:50052"
Request = llm_pb2.StreamingChatRequest


@pytest.fixture(scope="module")
def llm_up() -> None:
    """Start (or keep) the compose service with no API key, so the embedded model answers;
    a missing docker fails the test, it does not skip it."""
    env = {**STACK_ENV, **os.environ, "CEREBRAS_API_KEY": "", "LLM_ENGINE": "", "LLM_FALLBACK": ""}
    subprocess.run(
        ["docker", "compose", "up", "-d", "--wait", "llm"], cwd=REPO, env=env, check=True, timeout=900
    )


@pytest.fixture
async def stub(llm_up: None) -> AsyncIterator[llm_pb2_grpc.LlmServiceStub]:
    async with grpc.aio.insecure_channel(TARGET) as channel:
        yield llm_pb2_grpc.LlmServiceStub(channel)


async def test_streams_a_conversation_from_the_embedded_model(stub: llm_pb2_grpc.LlmServiceStub) -> None:
    info = await stub.GetInfo(llm_pb2.GetInfoRequest(), timeout=10)
    assert info.engine == "local" and "SmolLM2" in info.model

    call = stub.StreamingChat(timeout=60)
    await call.write(Request(config=llm_pb2.ChatConfig(max_tokens=32)))
    for number, text in enumerate(["Hi! What is the capital of France?", "And of Italy?"], start=1):
        await call.write(Request(user_turn=llm_pb2.UserTurn(text=text)))
        deltas: list[str] = []
        while (response := await call.read()).HasField("delta"):
            deltas.append(response.delta.text)
        end = response.turn_end
        assert len(deltas) > 1 and end.text == "".join(deltas)
        assert end.turn_index == number and end.engine == "local"
        assert end.finish_reason in (llm_pb2.FINISH_REASON_STOP, llm_pb2.FINISH_REASON_LENGTH)
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
