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
from voice.stt.v1 import stt_pb2_grpc


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
