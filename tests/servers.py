"""Run a service in-process on a free port, the way ``serve`` does, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import grpc

from services.common.config import ServerSettings
from services.common.server import VoiceServer, build_server


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
            load()
        await server.set_ready()
        yield server
    finally:
        await server.stop(0)
