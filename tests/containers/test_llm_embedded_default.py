"""The LLM image's capable embedded model: the joined Qwen2.5-Coder-1.5B, checked, with its
licence, is what `make run` (docker-compose.yml with nothing set) answers with, and it
answers an everyday question with the fact. The other container tests run SmolLM2."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.speech import REPO
from services.llm.models import QWEN_15B
from tests.containers.conftest import compose
from tests.service.test_edge_links import free_port
from voice.llm.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.containers

NAME = "voice-agent-llm-capable-test"


def test_compose_runs_the_capable_model_unless_told_otherwise() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LLM_EMBEDDED_MODEL"}
    done = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=REPO, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert json.loads(done.stdout)["services"]["llm"]["environment"]["LLM_EMBEDDED_MODEL"] == QWEN_15B.name


def test_the_image_holds_the_checked_model_and_its_licence() -> None:
    script = (
        "from pathlib import Path; from services.llm.models import locate; "
        f"print(locate({QWEN_15B.name!r}).stat().st_size); "
        "print(Path('/app/licences/Qwen2.5-Coder-LICENSE').read_text()[:200])"
    )
    out = compose("run", "--rm", "--no-deps", "-T", "llm", "python", "-c", script).stdout
    assert out.splitlines()[0] == str(QWEN_15B.size_bytes)
    assert "Apache License" in out and "Version 2.0" in out


@pytest.fixture
def capable_llm() -> Iterator[str]:
    """The image's llm service on the capable model, beside the test stack's own."""
    port = free_port()
    # One thread: on a busy machine llama.cpp's two threads wait on each other (a reply took
    # over 2 minutes with two, 22 s with one, at a load of 20 on 2 cores).
    env = {**os.environ, "LLM_EMBEDDED_MODEL": QWEN_15B.name, "CEREBRAS_API_KEY": "", "LLM_ENGINE": "",
           "LLM_THREADS": "1"}  # fmt: skip
    subprocess.run(
        ["docker", "compose", "run", "-d", "--rm", "--no-deps", "--name", NAME,
         "-p", f"127.0.0.1:{port}:50052", "llm"],
        cwd=REPO, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, timeout=60)


async def test_the_capable_model_answers_an_everyday_question(capable_llm: str) -> None:
    async with grpc.aio.insecure_channel(capable_llm) as channel:
        for _ in range(300):
            with contextlib.suppress(grpc.aio.AioRpcError):
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                if health.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            await asyncio.sleep(0.5)
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        info = await stub.GetInfo(llm_pb2.GetInfoRequest(), timeout=10)
        reply = await stub.Chat(
            llm_pb2.ChatRequest(
                config=llm_pb2.ChatConfig(max_tokens=40, temperature=0),
                messages=[
                    llm_pb2.Message(role=llm_pb2.ROLE_USER, content="What's the capital of Australia?")
                ],
            ),
            timeout=300,
        )
    assert info.model == QWEN_15B.file_name.removesuffix(".gguf") and info.notice == ""
    assert "canberra" in reply.text.lower(), reply.text
