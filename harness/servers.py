"""Run a service in-process on a free port, the way ``serve`` does, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc

from services.common.config import ServerSettings
from services.common.server import VoiceServer, build_server
from services.stt.config import SttSettings
from services.stt.engine import create_engine
from services.stt.servicer import SERVICE_NAME, SttServicer
from services.tts import engine as tts_engine
from services.tts.config import TtsSettings
from services.tts.servicer import SERVICE_NAME as TTS_SERVICE
from services.tts.servicer import TtsServicer
from voice.llm.v1 import llm_pb2_grpc
from voice.stt.v1 import stt_pb2_grpc
from voice.tts.v1 import tts_pb2_grpc


@asynccontextmanager
async def running_server(
    settings: ServerSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    load: Callable[[], None] | None = None,
) -> AsyncIterator[VoiceServer]:
    """A started server on 127.0.0.1 and a free port, SERVING once ``load`` has run."""
    server = await build_server(
        settings.model_copy(update={"host": "127.0.0.1", "port": 0}), register, service_names
    )
    try:
        if load is not None:
            await asyncio.to_thread(load)
        await server.set_ready()
        yield server
    finally:
        await server.stop(0)


@asynccontextmanager
async def serving(
    settings: ServerSettings,
    servicer: Any,
    add_to_server: Callable[[Any, grpc.aio.Server], None],
    stub_class: Callable[[grpc.aio.Channel], Any],
    service_name: str,
    load: Callable[[], None] | None = None,
) -> AsyncIterator[Any]:
    """``servicer`` served as ``running_server`` does; a client stub for it."""
    register = lambda server: add_to_server(servicer, server)  # noqa: E731
    async with (
        running_server(settings, register, [service_name], load) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield stub_class(channel)


@asynccontextmanager
async def stt_stub(settings: SttSettings) -> AsyncIterator[stt_pb2_grpc.SttServiceStub]:
    """The STT service with its real model, in-process; a client stub for it."""
    engine = create_engine(settings)
    servicer = SttServicer(engine, settings)
    add = stt_pb2_grpc.add_SttServiceServicer_to_server
    async with serving(
        settings, servicer, add, stt_pb2_grpc.SttServiceStub, SERVICE_NAME, servicer.load
    ) as stub:
        yield stub


@asynccontextmanager
async def stt_server() -> AsyncIterator[VoiceServer]:
    """The STT service with its real model, in-process on a free port."""
    settings = SttSettings()
    engine = create_engine(settings)
    servicer = SttServicer(engine, settings)
    register = lambda server: stt_pb2_grpc.add_SttServiceServicer_to_server(servicer, server)  # noqa: E731
    async with running_server(settings, register, [SERVICE_NAME], engine.load) as server:
        yield server


@asynccontextmanager
async def tts_server() -> AsyncIterator[VoiceServer]:
    """The TTS service with its real voice, in-process on a free port."""
    settings = TtsSettings()
    engine = tts_engine.create_engine(settings)
    servicer = TtsServicer(engine, settings)
    register = lambda server: tts_pb2_grpc.add_TtsServiceServicer_to_server(servicer, server)  # noqa: E731
    async with running_server(settings, register, [TTS_SERVICE], engine.load) as server:
        yield server


@asynccontextmanager
async def llm_server(embedded_model: str = "", threads: int = 0) -> AsyncIterator[VoiceServer]:
    """The LLM service on an embedded model (the service's default where not given), loaded before
    serving (only a loaded engine knows its chat template's tool calling), on a free port; llama.cpp
    on ``threads`` (0: one per core)."""
    # Imported here: llama.cpp is only loaded by the tests that chat.
    from services.llm.config import DEFAULT_EMBEDDED_MODEL, LlmSettings
    from services.llm.engines.local import LocalEngine
    from services.llm.servicer import SERVICE_NAME as LLM_SERVICE
    from services.llm.servicer import LlmServicer

    model = embedded_model or DEFAULT_EMBEDDED_MODEL
    settings = LlmSettings(engine="local", metrics_port=0, embedded_model=model, threads=threads)
    engine = LocalEngine(settings)
    servicer = LlmServicer(engine, settings)
    register = lambda server: llm_pb2_grpc.add_LlmServiceServicer_to_server(servicer, server)  # noqa: E731
    async with running_server(settings, register, [LLM_SERVICE], engine.load) as server:
        yield server
