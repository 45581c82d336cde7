"""The stack with docker-compose.secure.yml: TLS and access tokens on every service.

The stack that ran before (plaintext) is put back afterwards, or taken down.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from edge_client.channels import Security, open_channel
from harness.edge import silence, voice_agent
from harness.speech import REPO, english
from tests.containers.conftest import WAIT_S, compose
from tests.secure import make_certs
from voice.llm.v1 import llm_pb2, llm_pb2_grpc
from voice.stt.v1 import stt_pb2, stt_pb2_grpc
from voice.tts.v1 import tts_pb2, tts_pb2_grpc

SECURE = ("-f", "docker-compose.yml", "-f", "docker-compose.secure.yml")
CERTS = REPO / "certs"


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[str]:
    make_certs(CERTS)
    was_running = bool(compose("ps", "-q").stdout.strip())
    try:
        compose(*SECURE, "up", "-d", "--wait", "--wait-timeout", str(WAIT_S))
        yield (CERTS / "token").read_text().strip()
    finally:
        if was_running:
            compose("up", "-d", "--wait", "--wait-timeout", str(WAIT_S))
        else:
            compose("down", "--timeout", "10")


async def _calls(security: Security) -> list[grpc.StatusCode]:
    codes = []
    calls: list[tuple[int, Callable[[grpc.aio.Channel], Awaitable[object]]]] = [
        (50051, lambda ch: stt_pb2_grpc.SttServiceStub(ch).GetInfo(stt_pb2.GetInfoRequest(), timeout=10)),
        (50052, lambda ch: llm_pb2_grpc.LlmServiceStub(ch).GetInfo(llm_pb2.GetInfoRequest(), timeout=10)),
        (
            50053,
            lambda ch: tts_pb2_grpc.TtsServiceStub(ch).ListVoices(tts_pb2.ListVoicesRequest(), timeout=10),
        ),
    ]
    for port, call in calls:
        async with open_channel(f"127.0.0.1:{port}", security) as channel:
            try:
                await call(channel)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as err:
                codes.append(err.code())
    return codes


async def test_calls_need_tls_and_the_token(secure_stack: str) -> None:
    ca = CERTS / "ca.crt"
    assert await _calls(Security(tls=True, ca=ca, token=secure_stack)) == [grpc.StatusCode.OK] * 3
    assert await _calls(Security(tls=True, ca=ca)) == [grpc.StatusCode.UNAUTHENTICATED] * 3
    assert await _calls(Security(tls=True, ca=ca, token="x" * 32)) == [grpc.StatusCode.UNAUTHENTICATED] * 3
    assert await _calls(Security()) == [grpc.StatusCode.UNAVAILABLE] * 3
    # The containers' healthchecks speak TLS too: compose waited for them to pass.
    health = subprocess.run(
        ["docker", "compose", *SECURE, "ps", "--format", "{{.Service}} {{.Health}}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # The gateway's health asks the services through TLS with its token.
    services = ("stt", "llm", "tts", "gateway")
    assert sorted(health.split()) == sorted([*services, *["healthy"] * len(services)])


async def test_voice_agent_talks_to_it_with_tls_and_the_token(secure_stack: str, tmp_path: Path) -> None:
    clip = english()[4]
    pcm = silence(0.5) + clip.pcm() + silence(1.0)
    args = ["--fast", "--max-tokens", "30", "--tls", "--ca", str(CERTS / "ca.crt"), "--token", secure_stack]
    session = await asyncio.to_thread(voice_agent, tmp_path, pcm, *args)
    assert len(session.turns) == 1, session.stderr
    assert str(session.turns[0]["agent_text"]).strip(), session.stderr
    assert len(session.audible()) > 10, "no reply was heard"
    assert secure_stack not in session.stderr
