"""The three services with their real models in-process, and the gateway in front of them, on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from harness import servers
from harness.tap import LlmTap
from services.gateway.config import GatewaySettings
from services.gateway.server import Ports, running_gateway
from voice.stt.v1 import stt_pb2_grpc

# Nothing listens here: the gateway's calls to it fail with UNAVAILABLE.
NOWHERE = "127.0.0.1:9"


@dataclass(frozen=True)
class Stack:
    ports: Ports
    # The STT service directly, to compare the gateway with the gRPC path.
    stt: stt_pb2_grpc.SttServiceStub
    # The gateway's settings (the services' addresses among them).
    settings: GatewaySettings
    # What the chat service received and delivered, with ``tap_llm``.
    llm_tap: LlmTap | None = None


@asynccontextmanager
async def gateway_stack(
    *, llm: bool, embedded_model: str = "", tap_llm: bool = False
) -> AsyncIterator[Stack]:
    """STT and TTS (and the LLM when ``llm``, on ``embedded_model`` where given, behind a tap with
    ``tap_llm``) served in-process, the gateway on 127.0.0.1."""
    async with AsyncExitStack() as stack:
        stt_server = await stack.enter_async_context(servers.stt_server())
        tts_server = await stack.enter_async_context(servers.tts_server())
        llm_address = NOWHERE
        if llm:
            llm_server = await stack.enter_async_context(servers.llm_server(embedded_model))
            llm_address = f"127.0.0.1:{llm_server.port}"
        llm_tap = await stack.enter_async_context(LlmTap(llm_address)) if tap_llm else None
        if llm_tap is not None:
            llm_address = llm_tap.address
        settings = gateway_settings(
            stt_address=f"127.0.0.1:{stt_server.port}",
            llm_address=llm_address,
            tts_address=f"127.0.0.1:{tts_server.port}",
        )
        ports = await stack.enter_async_context(running_gateway(settings))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{stt_server.port}"))
        yield Stack(ports, stt_pb2_grpc.SttServiceStub(channel), settings, llm_tap)


def gateway_settings(
    stt_address: str, llm_address: str = NOWHERE, tts_address: str = NOWHERE, **more: Any
) -> GatewaySettings:
    """Settings for a gateway on 127.0.0.1 and free ports (and ``more``), whatever the environment says."""
    return GatewaySettings(
        **{
            "host": "127.0.0.1",
            "http_port": 0,
            "wyoming_stt_port": 0,
            "wyoming_tts_port": 0,
            "stt_address": stt_address,
            "llm_address": llm_address,
            "tts_address": tts_address,
            **more,
        }
    )
