"""The gateway's listeners (OpenAI HTTP, Wyoming STT, Wyoming TTS, and AudioSocket where set), started and
stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from wyoming.server import AsyncEventHandler

from conversation.tools import open_tools
from services.gateway import twilio
from services.gateway.access import check_listeners, http_tokens
from services.gateway.audiosocket import AudioSocketListener, networks
from services.gateway.channels import Backends, conversation_settings
from services.gateway.config import GatewaySettings
from services.gateway.openai_app import create_app
from services.gateway.phone import PhoneOptions
from services.gateway.wyoming_stt import SttEventHandler
from services.gateway.wyoming_tts import TtsEventHandler

log = logging.getLogger(__name__)

HandlerFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], AsyncEventHandler]


@dataclass(frozen=True)
class Ports:
    http: int
    wyoming_stt: int
    wyoming_tts: int
    audiosocket: int | None = None  # the phone door, where GATEWAY_AUDIOSOCKET_PORT is set


class _WyomingListener:
    """A TCP listener with one event handler per connection; closing it ends them all."""

    def __init__(self, factory: HandlerFactory) -> None:
        self._factory = factory
        self._handlers: set[AsyncEventHandler] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._connected, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = self._factory(reader, writer)
        self._handlers.add(handler)
        try:
            await handler.run()
        except ConnectionError:
            pass
        finally:
            self._handlers.discard(handler)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            await handler.stop()


class _HttpServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway stops on SIGTERM itself, all three listeners together.
        yield


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[Ports]:
    """All three listeners up on ``settings``' host and ports (0: a free port each).

    A setting that cannot work (an unreadable file, listeners open to other machines without
    authentication) raises ConfigError before anything listens.
    """
    tokens = http_tokens(settings)
    check_listeners(settings, tokens)
    allow = networks(settings.audiosocket_allow)
    backends = Backends.connect(settings)
    # The conversations' tools (MCP servers, the date and time), started once for every door.
    tools = open_tools(conversation_settings(settings), lambda problem: log.warning("%s", problem))
    app_tools = await tools.__aenter__()
    conversation = conversation_settings(settings)
    phone = PhoneOptions(settings.noise_suppression, settings.phone_idle_hangup_s, app_tools)
    app = create_app(backends, tokens, conversation)
    app.state.tools = app_tools  # Toolbox | None: what the doors on the core offer the model
    app.include_router(twilio.router(conversation, tokens, phone))
    http = _HttpServer(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ssl_certfile=settings.http_tls_cert or None,
            ssl_keyfile=settings.http_tls_key or None,
        )
    )
    sock = _bind(settings.host, settings.http_port)
    serving = asyncio.create_task(http.serve(sockets=[sock]))
    stt = _WyomingListener(lambda r, w: SttEventHandler(backends, settings, r, w))
    tts = _WyomingListener(lambda r, w: TtsEventHandler(backends, r, w))
    calls = AudioSocketListener(conversation, phone, allow)
    try:
        stt_port = await stt.start(settings.host, settings.wyoming_stt_port)
        tts_port = await tts.start(settings.host, settings.wyoming_tts_port)
        calls_port = None
        if settings.audiosocket_port is not None:
            calls_port = await calls.start(settings.host, settings.audiosocket_port)
        while not http.started:
            if serving.done():
                await serving
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        yield Ports(int(sock.getsockname()[1]), stt_port, tts_port, calls_port)
    finally:
        http.should_exit = True
        await calls.close()
        await stt.close()
        await tts.close()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close()
        await backends.close()
        await tools.__aexit__(None, None, None)
