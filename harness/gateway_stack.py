"""The three services with their real models in-process, and the gateway in front of them, on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from harness.servers import running_server
from harness.tap import LlmTap
from services.gateway.config import GatewaySettings
from services.gateway.server import Ports, running_gateway
from services.stt import engine as stt_engine
from services.stt.config import SttSettings
from services.stt.servicer import SERVICE_NAME as STT_SERVICE
from services.stt.servicer import SttServicer
from services.tts import engine as tts_engine
from services.tts.config import TtsSettings
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from voice.llm.v1 import llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc

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
        stt_settings = SttSettings()
        stt = stt_engine.create_engine(stt_settings)
        stt_servicer = SttServicer(stt, stt_settings)
        stt_server = await stack.enter_async_context(
            running_server(
                stt_settings,
                lambda s: stt_pb2_grpc.add_SttServiceServicer_to_server(stt_servicer, s),
                [STT_SERVICE],
                stt.load,
            )
        )
        tts_settings = TtsSettings()
        tts = tts_engine.create_engine(tts_settings)
        tts_servicer = TtsServicer(tts, tts_settings)
        tts_server = await stack.enter_async_context(
            running_server(
                tts_settings,
                lambda s: tts_pb2_grpc.add_TtsServiceServicer_to_server(tts_servicer, s),
                [TTS_SERVICE],
                tts.load,
            )
        )
        llm_address = NOWHERE
        if llm:
            # Imported here: the Wyoming tests need no chat model.
            from services.llm.config import DEFAULT_EMBEDDED_MODEL, LlmSettings
            from services.llm.engines.local import LocalEngine
            from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
            from services.llm.servicer import LlmServicer

            model = embedded_model or DEFAULT_EMBEDDED_MODEL
            llm_settings = LlmSettings(engine="local", metrics_port=0, embedded_model=model)
            chat = LocalEngine(llm_settings)
            llm_servicer = LlmServicer(chat, llm_settings)
            llm_server = await stack.enter_async_context(
                running_server(
                    llm_settings,
                    lambda s: llm_pb2_grpc.add_LlmServiceServicer_to_server(llm_servicer, s),
                    [LLM_SERVICE],
                    chat.load,
                )
            )
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
