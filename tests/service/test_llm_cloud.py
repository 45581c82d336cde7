"""The cerebras and openai engines through their real SDKs, over real HTTP, against a real
OpenAI-compatible server (``llama_cpp.server`` on the embedded model), behind a real HTTP
proxy that fails, rate-limits or stalls the first requests: retries, deadline, fallback."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from harness.servers import serving
from services.llm.config import LlmSettings
from services.llm.engine import create_engine
from services.llm.engines.local import embedded_model_path
from services.llm.servicer import SERVICE_NAME, LlmServicer
from tests.llm_client import turn
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
LONG_STORY = "Write a long story about a dragon who learns to fly."
Request = llm_pb2.StreamingChatRequest
# llama_cpp.server, with weights in plain CPU buffers as the local engine loads them.
SERVER_LAUNCH = (
    "import runpy\n"
    "from services.llm.engines.local import without_extra_buffers\n"
    "with without_extra_buffers():\n"
    "    runpy.run_module('llama_cpp.server', run_name='__main__')\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_model_server(model_path: str, log_path: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` on ``model_path`` on a free port; yields its base URL (without /v1)."""
    port = free_port()
    command = [sys.executable, "-c", SERVER_LAUNCH, "--model", model_path]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    command += ["--n_threads", str(os.cpu_count() or 1)]
    # A cloud serves requests independently; by default this server ends a stream early
    # whenever another request arrives (a retry after a timeout, say).
    command += ["--interrupt_requests", "false"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'protos'}"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({process.returncode}): {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=1):
                    pass
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        # The first generation pages the weights in: keep it out of the timed tests.
        warm_up = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}).encode()
        post = urllib.request.Request(
            f"{url}/v1/chat/completions", warm_up, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(post, timeout=120):
            pass
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with running_model_server(embedded_model_path(), log_path) as url:
        yield url


class FlakyProxy:
    """An HTTP proxy that answers the next requests with an error status or a stall,
    then forwards, streaming the upstream response through as it arrives."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.requests = 0
        self._faults: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, count: int, status: int = 0, stall_s: float = 0.0) -> None:
        """The next ``count`` requests get HTTP ``status``, or no answer for ``stall_s``."""
        with self._lock:
            self._faults = [(status, stall_s)] * count

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def _next_fault(self) -> tuple[int, float]:
        with self._lock:
            self.requests += 1
            return self._faults.pop(0) if self._faults else (0, 0.0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, stall_s = proxy._next_fault()
                if stall_s:
                    proxy._released.wait(stall_s)
                    self.close_connection = True
                    return
                if status:
                    error = json.dumps({"error": {"message": f"injected {status}", "type": "test"}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    upstream.request("POST", self.path, body, {"Content-Type": "application/json"})
                    response = upstream.getresponse()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                            self.send_header(name, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while chunk := response.read1(65536):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (OSError, http.client.HTTPException):
                    pass  # the client hung up (cancel): closing upstream stops the generation
                finally:
                    upstream.close()
                    self.close_connection = True

        return Handler


@pytest.fixture
def proxy(model_server: str) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(model_server)
    yield flaky
    flaky.close()


def settings_for(engine: str, url: str, **overrides: Any) -> LlmSettings:
    """Settings for ``engine`` talking to ``url`` (the base URL without /v1)."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "engine": engine,
        "request_timeout_s": 3.0,
        "deadline_s": 10.0,
        "retries": 2,
        "backoff_s": 0.05,
    }
    if engine == "cerebras":
        values |= {"CEREBRAS_API_KEY": "test-key", "CEREBRAS_BASE_URL": url}
    else:
        values |= {"api_key": "test-key", "base_url": f"{url}/v1", "model": "smollm2"}
    return LlmSettings(**(values | overrides))


@contextlib.asynccontextmanager
async def llm_stub(settings: LlmSettings) -> AsyncIterator[llm_pb2_grpc.LlmServiceStub]:
    engine = create_engine(settings)
    servicer = LlmServicer(engine, settings)
    add = llm_pb2_grpc.add_LlmServiceServicer_to_server
    stub_class = llm_pb2_grpc.LlmServiceStub
    async with serving(settings, servicer, add, stub_class, SERVICE_NAME, engine.load) as stub:
        yield stub


async def open_chat(stub: llm_pb2_grpc.LlmServiceStub, max_tokens: int = 16) -> grpc.aio.StreamStreamCall:
    call = stub.StreamingChat()
    await call.write(Request(config=llm_pb2.ChatConfig(max_tokens=max_tokens, temperature=0)))
    return call


ENGINES = ["cerebras", "openai"]


@pytest.mark.parametrize("engine", ENGINES)
async def test_streams_a_conversation(model_server: str, engine: str) -> None:
    async with llm_stub(settings_for(engine, model_server)) as stub:
        call = await open_chat(stub, max_tokens=8)
        deltas, end = await turn(call, LONG_STORY)
        assert len(deltas) > 1 and end.text == "".join(deltas)
        assert end.engine == engine and end.turn_index == 1
        assert end.finish_reason == llm_pb2.FINISH_REASON_LENGTH
        assert end.usage.completion_tokens == len(deltas) <= 8
        assert end.timings.time_to_first_token_ms > 0
        _, second = await turn(call, "And of Spain?")
        assert second.finish_reason != llm_pb2.FINISH_REASON_ERROR and second.turn_index == 2
        await call.done_writing()
        info = await stub.GetInfo(llm_pb2.GetInfoRequest())
        assert info.engine == engine and info.model and info.context_size > 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("failures", "status", "stall_s"),
    [(2, 503, 0.0), (2, 429, 0.0), (1, 0, 30.0)],
    ids=["503", "429", "stall"],
)
async def test_retries_within_the_deadline(
    model_server: str, proxy: FlakyProxy, engine: str, failures: int, status: int, stall_s: float
) -> None:
    proxy.fail(failures, status, stall_s)
    async with llm_stub(settings_for(engine, proxy.url)) as stub:
        call = await open_chat(stub)
        deltas, end = await turn(call, "Hello!")
        assert deltas and end.finish_reason != llm_pb2.FINISH_REASON_ERROR and end.engine == engine
        assert proxy.requests == failures + 1
        await call.done_writing()


@pytest.mark.parametrize("engine", ENGINES)
async def test_unavailable_after_retries_and_the_stream_goes_on(
    model_server: str, proxy: FlakyProxy, engine: str
) -> None:
    proxy.fail(3, 500)
    async with llm_stub(settings_for(engine, proxy.url)) as stub:
        call = await open_chat(stub)
        deltas, end = await turn(call, "Hello!")
        assert not deltas and end.finish_reason == llm_pb2.FINISH_REASON_ERROR
        assert end.error.code == grpc.StatusCode.UNAVAILABLE.value[0] and end.error.retryable
        assert f"{engine} is unavailable: 3 attempts" in end.error.message and "HTTP 500" in end.error.message
        assert proxy.requests == 3
        deltas, end = await turn(call, "Hello again!")
        assert deltas and end.finish_reason != llm_pb2.FINISH_REASON_ERROR
        await call.done_writing()


async def test_a_stalled_cloud_fails_by_the_deadline(model_server: str, proxy: FlakyProxy) -> None:
    proxy.fail(10, stall_s=30.0)
    settings = settings_for("cerebras", proxy.url, request_timeout_s=1.0, deadline_s=2.5, retries=5)
    async with llm_stub(settings) as stub:
        call = await open_chat(stub)
        started = time.monotonic()
        _, end = await turn(call, "Hello!")
        assert 2.0 < time.monotonic() - started < 4.0
        assert end.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert "deadline 2.5s" in end.error.message
        await call.done_writing()


@pytest.mark.parametrize("engine", ENGINES)
async def test_falls_back_to_the_local_model(model_server: str, proxy: FlakyProxy, engine: str) -> None:
    proxy.fail(100, 503)
    async with llm_stub(settings_for(engine, proxy.url, fallback="local")) as stub:
        info = await stub.GetInfo(llm_pb2.GetInfoRequest())
        assert (info.engine, info.fallback_engine) == (engine, "local")
        call = await open_chat(stub)
        deltas, end = await turn(call, "Hello!")
        assert deltas and end.finish_reason != llm_pb2.FINISH_REASON_ERROR
        assert end.engine == "local"
        proxy.fail(0)
        _, end = await turn(call, "How are you?")
        assert end.engine == engine
        await call.done_writing()


@pytest.mark.parametrize("engine", ENGINES)
async def test_cancel_closes_the_http_stream(model_server: str, proxy: FlakyProxy, engine: str) -> None:
    async with llm_stub(settings_for(engine, proxy.url)) as stub:
        call = await open_chat(stub, max_tokens=200)
        await call.write(Request(user_turn=llm_pb2.UserTurn(text=LONG_STORY)))
        first = await call.read()
        assert first.HasField("delta")
        await call.write(Request(cancel=llm_pb2.Cancel()))
        count = 1
        while (response := await call.read()).HasField("delta"):
            count += 1
        end = response.turn_end
        assert end.finish_reason == llm_pb2.FINISH_REASON_CANCELLED
        assert end.usage.completion_tokens == count < 100
        await call.done_writing()


def test_cerebras_without_a_key_fails_at_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CEREBRAS_API_KEY"}
    env |= {"LLM_ENGINE": "cerebras", "PYTHONPATH": f"{ROOT}:{ROOT / 'protos'}", "LLM_METRICS_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "services.llm"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "set CEREBRAS_API_KEY" in done.stderr
