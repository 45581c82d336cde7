"""Tool calling through the chat service on a real grpc.aio server: the embedded engine on
Qwen2.5-Coder-1.5B (its chat template's calls, grammar-constrained arguments), the openai and
cerebras engines against llama_cpp.server on the same model, unary Chat, and the contract's
refusals. What is checked is what the service sent on the stream."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc
import jsonschema
import pytest

from services.llm.config import LlmSettings
from services.llm.engine import Completion, Engine, Finish, Message, OnDelta, Options, Session, Tool
from services.llm.engines.local import LocalEngine, embedded_model_path
from tests.llm_client import read_generation, read_refusal, tool_result, turn, user
from tests.service.test_llm_cloud import llm_stub as cloud_stub
from tests.service.test_llm_cloud import running_model_server, settings_for
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


async def test_unary_chat_returns_the_call_then_the_answer(stub: llm_pb2_grpc.LlmServiceStub) -> None:
    chat_config = llm_pb2.ChatConfig(max_tokens=32, temperature=0.0, tools=TOOLS)
    asked = llm_pb2.Message(role=llm_pb2.ROLE_USER, content=WEATHER_QUESTION)
    called = await stub.Chat(llm_pb2.ChatRequest(config=chat_config, messages=[asked]))
    assert called.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS
    [made] = called.tool_calls
    assert made.name == "get_weather" and json.loads(made.arguments_json)["city"].lower() == "paris"

    history = [
        asked,
        llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, content=called.text, tool_calls=[made]),
        llm_pb2.Message(role=llm_pb2.ROLE_TOOL, content=WEATHER_RESULT, tool_call_id=made.id),
    ]
    answered = await stub.Chat(llm_pb2.ChatRequest(config=chat_config, messages=history))
    assert answered.finish_reason == llm_pb2.FINISH_REASON_STOP and "17" in answered.text


async def test_after_its_results_the_embedded_model_answers_in_words(
    stub: llm_pb2_grpc.LlmServiceStub,
) -> None:
    """Asked for JSON, Qwen2.5-Coder at temperature 0 opens its answer to a result with the
    call again as JSON; the service reads a reply that opens so as a call (the model writes
    some calls that way), so the reply after results must open in words: the answer, not a
    second call of the same tool."""
    prompt = "You are an API. Use the tools. Reply with the JSON the tool returned, nothing else."
    chat_config = llm_pb2.ChatConfig(max_tokens=32, temperature=0.0, tools=TOOLS, system_prompt=prompt)
    made = llm_pb2.ToolCall(id="call_1", name="get_weather", arguments_json='{"city": "Paris"}')
    history = [
        llm_pb2.Message(role=llm_pb2.ROLE_USER, content=WEATHER_QUESTION),
        llm_pb2.Message(role=llm_pb2.ROLE_ASSISTANT, tool_calls=[made]),
        llm_pb2.Message(role=llm_pb2.ROLE_TOOL, content=WEATHER_RESULT, tool_call_id=made.id),
    ]
    answered = await stub.Chat(llm_pb2.ChatRequest(config=chat_config, messages=history))
    assert answered.finish_reason != llm_pb2.FINISH_REASON_TOOL_CALLS and not answered.tool_calls, answered
    assert answered.text.strip() and answered.text.lstrip()[:1] not in ("{", "<", "`"), answered.text


def test_an_engine_that_was_never_loaded_calls_tools_too() -> None:
    """The template's tool calling comes with the first context, not only with ``load``: a
    program that opens a session on its own engine gets calls as the service does."""
    settings = LlmSettings(engine="local", model_path=tool_model_path())
    engine = LocalEngine(settings)
    session = engine.open_session()
    try:
        tool = Tool(WEATHER.name, WEATHER.description, WEATHER_SCHEMA)
        options = Options("", 0.0, 32, (tool,))
        asked = [Message("user", WEATHER_QUESTION)]
        completion = session.generate(asked, options, lambda _: None, threading.Event())
    finally:
        session.close()
    assert completion.finish is Finish.TOOL_CALLS, completion
    [made] = completion.tool_calls
    assert made.name == "get_weather" and json.loads(made.arguments)["city"].strip().lower() == "paris"


async def test_a_string_argument_that_runs_on_is_closed_and_the_call_made(
    stub: llm_pb2_grpc.LlmServiceStub,
) -> None:
    """Heard as "as order 3,550, arrived yet.", Qwen2.5-Coder at temperature 0 writes the order
    number as "3550" and zeros without end; the call is still made, its string closed at the
    bound, so the tool can say what is wrong and the agent answers (else: a failed turn, silence)."""
    order = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
    tool = llm_pb2.Tool(
        name="order_status",
        description="The delivery status of a customer's order, by its order number.",
        parameters_json=json.dumps(order),
    )
    prompt = "You are the voice assistant of a shop. Use the tools for order statuses."
    chat_config = llm_pb2.ChatConfig(
        max_tokens=32, temperature=0.0, tools=llm_pb2.ToolSet(tools=[tool]), system_prompt=prompt
    )
    asked = llm_pb2.Message(role=llm_pb2.ROLE_USER, content="as order 3,550, arrived yet.")
    called = await stub.Chat(llm_pb2.ChatRequest(config=chat_config, messages=[asked]))
    assert called.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS, called
    [made] = called.tool_calls
    jsonschema.validate(json.loads(made.arguments_json), order)
    assert made.name == "order_status" and json.loads(made.arguments_json)["order_id"].startswith("3"), made


class OptionsRecorder:
    """A real engine that also keeps the options each generation was asked with."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.context_tokens = inner.context_tokens
        self.options: list[Options] = []

    def load(self) -> None:
        self.inner.load()

    def open_session(self) -> Session:
        session = self.inner.open_session()
        options = self.options

        class Recording:
            def generate(
                self, messages: Sequence[Message], given: Options, on_delta: OnDelta, cancel: threading.Event
            ) -> Completion:
                options.append(given)
                return session.generate(messages, given, on_delta, cancel)

            def close(self) -> None:
                session.close()

        return Recording()


async def test_refused_requests_leave_the_stream_and_the_tools_as_they_were() -> None:
    """Each refusal is a RequestError naming the problem; the conversation goes on (on the
    small embedded model: what is checked is the service, not the model's calls)."""
    settings = LlmSettings(host="127.0.0.1", port=0, metrics_port=0, engine="local")
    engine = OptionsRecorder(LocalEngine(settings))
    bad_schema = llm_pb2.Tool(
        name="broken", parameters_json='{"type": "object", "properties": {"q": {"type": 5}}}'
    )
    async with llm_stub(engine, settings) as stub:
        call = stub.StreamingChat()
        await call.write(config(llm_pb2.ToolSet(tools=[WEATHER, bad_schema]), max_tokens=8))
        refused = await read_refusal(call)
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "tool 'broken'" in refused.message and "properties/q" in refused.message

        await call.write(Request(update=llm_pb2.ConfigUpdate(tools=TOOLS)))
        await call.write(Request(update=llm_pb2.ConfigUpdate(tools=llm_pb2.ToolSet(tools=[bad_schema]))))
        assert "tool 'broken'" in (await read_refusal(call)).message
        await call.write(
            Request(update=llm_pb2.ConfigUpdate(tools=llm_pb2.ToolSet(tools=[ADD], tool_choice="mul")))
        )
        assert "tool_choice 'mul'" in (await read_refusal(call)).message
        await call.write(tool_result("call_unknown", "42"))
        refused = await read_refusal(call)
        assert "no tool call 'call_unknown' awaits a result" in refused.message

        deltas, end = await turn(call, "Hello!")
        assert end.finish_reason in (llm_pb2.FINISH_REASON_STOP, llm_pb2.FINISH_REASON_LENGTH)
        assert end.text == "".join(deltas) and end.text
        # The tools of the last accepted update, untouched by the refused ones.
        assert [t.name for t in engine.options[-1].tools] == ["get_weather", "add"]
        assert engine.options[-1].tool_choice == "auto"
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF


@pytest.fixture(scope="module")
def tool_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``llama_cpp.server`` on the model with tool calling, with its own chat template."""
    log_path = tmp_path_factory.mktemp("llama-tool-server") / "server.log"
    with running_model_server(tool_model_path(), log_path) as url:
        yield url


@pytest.mark.parametrize("engine", ["openai", "cerebras"])
async def test_chat_api_engine_streams_the_call_then_answers_with_its_result(
    tool_model_server: str, engine: str
) -> None:
    """Through the SDK over real HTTP. llama_cpp.server streams a call only for a named
    tool_choice (with "auto" it writes the call as words), so the turn names the tool; the
    service asks its continuation with "auto"."""
    settings = settings_for(engine, tool_model_server, request_timeout_s=120.0, deadline_s=300.0)
    async with cloud_stub(settings) as stub:
        call = stub.StreamingChat()
        await call.write(config(llm_pb2.ToolSet(tools=[WEATHER, ADD], tool_choice="get_weather")))
        await call.write(user(WEATHER_QUESTION))
        asked = await read_generation(call)
        assert asked.end.finish_reason == llm_pb2.FINISH_REASON_TOOL_CALLS, asked.end
        assert asked.end.engine == engine
        [made] = asked.end.tool_calls
        assert made.name == "get_weather" and made.id.startswith("call_")
        arguments = json.loads(made.arguments_json)
        jsonschema.validate(arguments, WEATHER_SCHEMA)
        assert arguments["city"].strip().lower() == "paris"
        assert asked.calls[0].id == made.id and asked.calls[0].name == "get_weather"
        assert asked.arguments() == made.arguments_json and len(asked.calls) > 2

        await call.write(tool_result(made.id, WEATHER_RESULT))
        answer = await read_generation(call)
        assert answer.end.finish_reason == llm_pb2.FINISH_REASON_STOP, answer.end
        assert "17" in answer.end.text and answer.end.text == "".join(answer.deltas)
        await call.done_writing()


async def test_a_call_whose_arguments_fail_the_schema_ends_the_turn_with_an_error(
    tool_model_server: str,
) -> None:
    """The server's grammar leaves ``minimum`` out, so its call breaks the schema: the turn ends
    with a TurnError saying so, and the conversation goes on."""
    at_least = {"type": "integer", "minimum": 100}
    schema = {"type": "object", "properties": {"a": at_least, "b": at_least}, "required": ["a", "b"]}
    add = llm_pb2.Tool(name="add", description="Add two numbers", parameters_json=json.dumps(schema))
    settings = settings_for("openai", tool_model_server, request_timeout_s=120.0, deadline_s=300.0)
    async with cloud_stub(settings) as stub:
        call = stub.StreamingChat()
        await call.write(config(llm_pb2.ToolSet(tools=[add], tool_choice="add"), max_tokens=16))
        await call.write(user("What is 2 plus 3?"))
        failed = (await read_generation(call)).end
        assert failed.finish_reason == llm_pb2.FINISH_REASON_ERROR, failed
        assert failed.error.code == grpc.StatusCode.INTERNAL.value[0]
        assert "do not fit its schema" in failed.error.message and "100" in failed.error.message

        await call.write(Request(update=llm_pb2.ConfigUpdate(tools=llm_pb2.ToolSet())))
        deltas, end = await turn(call, "Say hello.")
        assert end.finish_reason in (llm_pb2.FINISH_REASON_STOP, llm_pb2.FINISH_REASON_LENGTH)
        assert end.text and end.text == "".join(deltas)
        await call.done_writing()
