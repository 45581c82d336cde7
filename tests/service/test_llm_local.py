"""The chat service end to end on the embedded model: a real grpc.aio server, real llama.cpp."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.servers import serving
from harness.speech import REPO
from services.llm.config import EMBEDDED_MODEL_NOTICE, LlmSettings
from services.llm.engine import Completion, Engine, Message, OnDelta, Options, Session
from services.llm.engines.local import LocalEngine, embedded_model_path
from services.llm.servicer import SERVICE_NAME, LlmServicer
from tests.llm_client import read_turn, turn, user
from tests.service.test_edge_links import free_port
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.service

LONG_STORY = "Write a long story about a dragon who learns to fly."
Request = llm_pb2.StreamingChatRequest


class RecordingEngine:
    """A real engine that also keeps the messages each turn was generated from."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.context_tokens = inner.context_tokens
        self.prompts: list[list[Message]] = []

    def load(self) -> None:
        self.inner.load()

    def open_session(self) -> Session:
        return RecordingSession(self.inner.open_session(), self.prompts)


class RecordingSession:
    def __init__(self, inner: Session, prompts: list[list[Message]]) -> None:
        self.inner = inner
        self.prompts = prompts

    def generate(
        self, messages: Sequence[Message], options: Options, on_delta: OnDelta, cancel: threading.Event
    ) -> Completion:
        self.prompts.append(list(messages))
        return self.inner.generate(messages, options, on_delta, cancel)

    def close(self) -> None:
        self.inner.close()


@contextlib.asynccontextmanager
async def llm_stub(engine: Engine, settings: LlmSettings) -> AsyncIterator[llm_pb2_grpc.LlmServiceStub]:
    servicer = LlmServicer(engine, settings)
    add = llm_pb2_grpc.add_LlmServiceServicer_to_server
    async with serving(
        settings, servicer, add, llm_pb2_grpc.LlmServiceStub, SERVICE_NAME, engine.load
    ) as stub:
        yield stub


@pytest.fixture(scope="module")
def engine() -> RecordingEngine:
    settings = LlmSettings(host="127.0.0.1", port=0, metrics_port=0, engine="local")
    return RecordingEngine(LocalEngine(settings))


@pytest.fixture(scope="module")
async def stub(engine: RecordingEngine) -> AsyncIterator[llm_pb2_grpc.LlmServiceStub]:
    settings = LlmSettings(host="127.0.0.1", port=0, metrics_port=0, engine="local", max_turn_chars=500)
    async with llm_stub(engine, settings) as stub:
        yield stub


def config(max_tokens: int = 24, temperature: float = 0.0) -> Request:
    return Request(config=llm_pb2.ChatConfig(max_tokens=max_tokens, temperature=temperature))


async def test_turn_streams_deltas_then_turn_end(stub: llm_pb2_grpc.LlmServiceStub) -> None:
    call = stub.StreamingChat()
    await call.write(config())
    deltas, end = await turn(call, "Hi! What is the capital of France?")
    assert len(deltas) > 1
    assert end.text == "".join(deltas) and end.text.strip()
    assert end.finish_reason in (llm_pb2.FINISH_REASON_STOP, llm_pb2.FINISH_REASON_LENGTH)
    assert end.engine == "local" and end.turn_index == 1
    assert end.usage.completion_tokens == len(deltas) and end.usage.prompt_tokens > 10
    assert 0 < end.timings.time_to_first_token_ms <= end.timings.total_ms
    assert end.timings.tokens_per_second > 0
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_second_turn_sees_the_first(stub: llm_pb2_grpc.LlmServiceStub, engine: RecordingEngine) -> None:
    call = stub.StreamingChat()
    await call.write(config())
    _, first = await turn(call, "My name is Alice.")
    _, second = await turn(call, "What is my name?")
    assert second.turn_index == 2
    prompt = engine.prompts[-1]
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1].content == "My name is Alice." and prompt[2].content == first.text
    # llama.cpp reused the first turn's KV cache: turn 2 evaluated only the new messages.
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    await call.done_writing()


async def test_cancel_stops_generation_mid_reply(
    stub: llm_pb2_grpc.LlmServiceStub, engine: RecordingEngine
) -> None:
    call = stub.StreamingChat()
    await call.write(config(max_tokens=200))
    await call.write(user(LONG_STORY))
    first = await call.read()
    assert first.HasField("delta")
    cancelled_at = time.monotonic()
    await call.write(Request(cancel=llm_pb2.Cancel()))
    deltas, end = await read_turn(call)
    assert time.monotonic() - cancelled_at < 2.0
    assert end.finish_reason == llm_pb2.FINISH_REASON_CANCELLED
    # The engine stopped producing tokens: it reports exactly what it streamed, far short of 200.
    assert end.usage.completion_tokens == len(deltas) + 1 < 100
    # The conversation goes on, with the partial reply in its history (and is cut short again).
    await call.write(user("Thanks."))
    assert (await call.read()).HasField("delta")
    await call.write(Request(cancel=llm_pb2.Cancel()))
    _, after = await read_turn(call)
    assert after.finish_reason == llm_pb2.FINISH_REASON_CANCELLED and after.turn_index == 2
    assert engine.prompts[-1][-2] == Message("assistant", end.text)
    await call.done_writing()


async def test_truncate_replaces_the_reply_with_what_was_heard(
    stub: llm_pb2_grpc.LlmServiceStub, engine: RecordingEngine
) -> None:
    call = stub.StreamingChat()
    await call.write(config(max_tokens=40))
    _, end = await turn(call, "Tell me about the moon.")
    heard = end.text.split()[0]
    assert heard != end.text
    await call.write(Request(truncate=llm_pb2.Truncate(heard_text=heard)))
    await turn(call, "Go on.")
    assert engine.prompts[-1][-2] == Message("assistant", heard)
    await call.done_writing()


async def test_retract_withdraws_the_turn_and_its_running_reply(
    stub: llm_pb2_grpc.LlmServiceStub, engine: RecordingEngine
) -> None:
    call = stub.StreamingChat()
    await call.write(config(max_tokens=200))
    _, kept = await turn(call, "My name is Alice.")
    await call.write(user("And I live in"))
    assert (await call.read()).HasField("delta")
    await call.write(Request(retract=llm_pb2.Retract()))
    _, withdrawn = await read_turn(call)
    assert withdrawn.finish_reason == llm_pb2.FINISH_REASON_CANCELLED
    await turn(call, "And I live in Paris.")
    prompt = engine.prompts[-1]
    assert [m.content for m in prompt[1:]] == ["My name is Alice.", kept.text, "And I live in Paris."]
    await call.done_writing()


async def test_bad_turns_end_in_error_and_the_stream_goes_on(stub: llm_pb2_grpc.LlmServiceStub) -> None:
    call = stub.StreamingChat()
    await call.write(config())
    for text in ("  ", "word " * 200):
        deltas, end = await turn(call, text)
        assert not deltas
        assert end.finish_reason == llm_pb2.FINISH_REASON_ERROR
        assert end.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert end.error.message and not end.error.retryable
    deltas, end = await turn(call, "Hello there!")
    assert deltas and end.finish_reason != llm_pb2.FINISH_REASON_ERROR and end.turn_index == 3
    await call.done_writing()


async def test_concurrent_conversations_keep_their_own_history(
    stub: llm_pb2_grpc.LlmServiceStub, engine: RecordingEngine
) -> None:
    async def converse(name: str) -> None:
        call = stub.StreamingChat()
        await call.write(config(max_tokens=12))
        for text in (f"My name is {name}.", "What is my name?"):
            deltas, end = await turn(call, text)
            assert deltas and end.finish_reason != llm_pb2.FINISH_REASON_ERROR
        await call.done_writing()

    await asyncio.gather(converse("Alice"), converse("Bob"))
    second_turns = [p for p in engine.prompts[-4:] if len(p) == 4]
    assert sorted(p[1].content for p in second_turns) == ["My name is Alice.", "My name is Bob."]


@pytest.mark.parametrize("requests", [[user("Hi")], [config(), config()]], ids=["turn-first", "two-configs"])
async def test_config_must_come_first_and_once(
    stub: llm_pb2_grpc.LlmServiceStub, requests: list[Request]
) -> None:
    call = stub.StreamingChat()
    for request in requests:
        await call.write(request)
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in call:
            pass
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config" in (error.value.details() or "")


async def test_unary_chat_and_info(stub: llm_pb2_grpc.LlmServiceStub) -> None:
    reply = await stub.Chat(
        llm_pb2.ChatRequest(
            config=llm_pb2.ChatConfig(max_tokens=16, temperature=0),
            messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, content="Say hello.")],
        )
    )
    assert reply.text.strip() and reply.engine == "local"
    assert reply.finish_reason in (llm_pb2.FINISH_REASON_STOP, llm_pb2.FINISH_REASON_LENGTH)
    assert reply.usage.completion_tokens > 0
    info = await stub.GetInfo(llm_pb2.GetInfoRequest())
    assert (info.engine, info.context_size, info.fallback_engine) == ("local", 2048, "")
    assert "SmolLM2" in info.model
    assert info.notice == EMBEDDED_MODEL_NOTICE
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Chat(llm_pb2.ChatRequest(messages=[]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_embedded_model_is_called_test_grade_once_in_the_log_and_in_its_info() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'protos'}", "LLM_ENGINE": "local",
           "LLM_PORT": str(port), "LLM_METRICS_PORT": str(free_port()), "LLM_MODEL_PATH": ""}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "services.llm"], cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(300):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                await asyncio.sleep(0.2)
            info = await llm_pb2_grpc.LlmServiceStub(channel).GetInfo(llm_pb2.GetInfoRequest(), timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        logs = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.kill()
    assert info.notice == EMBEDDED_MODEL_NOTICE
    assert "CEREBRAS_API_KEY" in info.notice
    assert logs.count(EMBEDDED_MODEL_NOTICE) == 1, logs


def test_a_model_of_ones_own_or_a_cloud_engine_comes_with_no_notice() -> None:
    assert LlmSettings(engine="local").notice == EMBEDDED_MODEL_NOTICE
    assert LlmSettings(engine="local", model_path=embedded_model_path()).notice == ""
    assert LlmSettings(engine="cerebras").notice == ""
    assert LlmSettings(engine="openai", fallback="local").notice == ""
