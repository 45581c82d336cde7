"""Tool calling through the chat service: the embedded engine on Qwen2.5-Coder-1.5B (its chat
template's calls, grammar-constrained arguments), and the contract's refusals, on a real
grpc.aio server. What is checked is what the service sent on the stream."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import grpc
import jsonschema
import pytest

from services.llm.config import LlmSettings
from services.llm.engines.local import LocalEngine, embedded_model_path
from tests.llm_client import read_generation, tool_result, user
from tests.service.test_llm_local import llm_stub
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.service

Request = llm_pb2.StreamingChatRequest
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "The city's name"}},
    "required": ["city"],
}
ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}
WEATHER = llm_pb2.Tool(
    name="get_weather", description="The weather now in a city", parameters_json=json.dumps(WEATHER_SCHEMA)
)
ADD = llm_pb2.Tool(name="add", description="Add two numbers", parameters_json=json.dumps(ADD_SCHEMA))
TOOLS = llm_pb2.ToolSet(tools=[WEATHER, ADD])
WEATHER_QUESTION = "What's the weather in Paris right now?"
WEATHER_RESULT = json.dumps({"temperature_c": 17, "sky": "cloudy"})


def tool_model_path() -> str:
    """The model with tool calling the tests run: LLM_TEST_TOOL_MODEL (a GGUF file), else the
    embedded Qwen2.5-Coder-1.5B (services/llm/models.py)."""
    return os.environ.get("LLM_TEST_TOOL_MODEL") or embedded_model_path("qwen2.5-coder-1.5b")


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[llm_pb2_grpc.LlmServiceStub]:
    settings = LlmSettings(
        host="127.0.0.1", port=0, metrics_port=0, engine="local", model_path=tool_model_path()
    )
    async with llm_stub(LocalEngine(settings), settings) as stub:
        yield stub


def config(tools: llm_pb2.ToolSet | None = TOOLS, max_tokens: int = 32) -> Request:
    return Request(config=llm_pb2.ChatConfig(max_tokens=max_tokens, temperature=0.0, tools=tools))


async def test_embedded_model_calls_the_tool_then_answers_with_its_result(
    stub: llm_pb2_grpc.LlmServiceStub,
) -> None:
    call = stub.StreamingChat()
    await call.write(config())
    await call.write(user(WEATHER_QUESTION))
    asked = await read_generation(call)
    end = asked.end
    assert end.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS, end
    [made] = end.tool_calls
    assert made.name == "get_weather"
    arguments = json.loads(made.arguments_json)
    jsonschema.validate(arguments, WEATHER_SCHEMA)
    assert arguments["city"].strip().lower() == "paris"
    # Streamed: the first piece names the call, the rest are its arguments' text.
    assert asked.calls[0].id == made.id and asked.calls[0].name == "get_weather"
    assert asked.arguments() == made.arguments_json and len(asked.calls) > 2
    assert all(not piece.id and not piece.name for piece in asked.calls[1:])

    await call.write(tool_result(made.id, WEATHER_RESULT))
    answer = await read_generation(call)
    assert answer.end.finish_reason == llm_pb2.FINISH_REASON_STOP
    assert answer.end.turn_index == end.turn_index == 1
    assert "17" in answer.end.text and answer.end.text == "".join(answer.deltas)
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
