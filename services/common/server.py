"""``build_server``: the one way every service starts, reports health and stops."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from foundation.errors import ConfigError
from services.common.auth import Tokens, Verdict
from services.common.config import ServerSettings
from services.common.errors import drain
from services.common.limits import Activity, ClientLimits, StreamIdle, until_idle
from services.common.logs import redact
from services.common.metrics import ACTIVE_STREAMS, REFUSED, REJECTED, RPCS, serve_metrics
from services.common.tls import server_credentials

log = logging.getLogger(__name__)

_ALWAYS_ALLOWED = ("/grpc.health.", "/grpc.reflection.")
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Gate(grpc.aio.ServerInterceptor):
    """Checks access tokens; refuses calls before the model is ready; limits streams, in all
    and per client; closes idle streams; counts RPCs."""

    def __init__(self, settings: ServerSettings, tokens: Tokens) -> None:
        self.ready = False
        self.draining = False
        self.max_streams = settings.max_streams
        self.active_streams = 0
        self.tokens = tokens
        self.clients = ClientLimits(settings.client_max_streams, settings.client_max_requests_per_min)
        self.idle_s = settings.stream_idle_s

    def refusal(self, method: str, streaming: bool, verdict: Verdict) -> tuple[grpc.StatusCode, str] | None:
        if self.draining:
            return grpc.StatusCode.UNAVAILABLE, "the service is shutting down; reconnect in a moment"
        if verdict.refusal:
            _refused(method, "unauthenticated")
            return grpc.StatusCode.UNAUTHENTICATED, verdict.refusal
        if not self.ready:
            return grpc.StatusCode.UNAVAILABLE, "the model is still loading; retry in a few seconds"
        if streaming and self.active_streams >= self.max_streams:
            REJECTED.labels(method).inc()
            return (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server already runs {self.max_streams} streams (its max_streams setting); "
                "retry later or raise the limit",
            )
        if verdict.client is not None and (hit := self.clients.refusal(verdict.client, streaming)):
            _refused(method, hit[0], verdict.client)
            return grpc.StatusCode.RESOURCE_EXHAUSTED, hit[1]
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(_ALWAYS_ALLOWED):
            return handler
        streaming = handler.request_streaming or handler.response_streaming
        verdict = self.tokens.check(details.invocation_metadata or ())
        client = verdict.client
        gate = self

        def finish(context: grpc.aio.ServicerContext) -> None:
            code = context.code() if hasattr(context, "code") else None
            RPCS.labels(method, getattr(code, "name", "OK") if code is not None else "OK").inc()

        if streaming:
            inner = handler.stream_stream or handler.unary_stream or handler.stream_unary

            async def run_streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if (reason := gate.refusal(method, True, verdict)) is not None:
                    await drain(request)
                    await context.abort(*reason)
                gate.active_streams += 1
                ACTIVE_STREAMS.labels(method).inc()
                if client is not None:
                    gate.clients.open(client)
                activity = Activity()
                try:
                    if handler.request_streaming and gate.idle_s:
                        request = activity.watch(request)
                    result = inner(request, context)
                    if hasattr(result, "__aiter__"):
                        responses = until_idle(result, activity, gate.idle_s) if gate.idle_s else result
                        async for response in responses:
                            yield response
                    else:
                        yield await result
                except StreamIdle:
                    _refused(method, "idle", client)
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the stream carried no message for {gate.idle_s:g} s (the service's stream_idle_s "
                        "setting) and was closed; open a new one",
                    )
                finally:
                    gate.active_streams -= 1
                    ACTIVE_STREAMS.labels(method).dec()
                    if client is not None:
                        gate.clients.close(client)
                    finish(context)

            if handler.stream_stream:
                return grpc.stream_stream_rpc_method_handler(
                    run_streaming, handler.request_deserializer, handler.response_serializer
                )
            if handler.unary_stream:
                return grpc.unary_stream_rpc_method_handler(
                    run_streaming, handler.request_deserializer, handler.response_serializer
                )
            return handler  # stream-unary: no such RPC in this project

        async def run_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if (reason := gate.refusal(method, False, verdict)) is not None:
                await context.abort(*reason)
            try:
                return await handler.unary_unary(request, context)
            finally:
                finish(context)

        return grpc.unary_unary_rpc_method_handler(
            run_unary, handler.request_deserializer, handler.response_serializer
        )


def _refused(method: str, reason: str, client: str | None = None) -> None:
    REFUSED.labels(method, reason).inc()
    # The client's name from the token file, never the token.
    log.info("refused", extra={"method": method, "reason": reason, "client": client})


class VoiceServer:
    """A started gRPC server with health, reflection, limits and metrics."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health: HealthServicer,
        gate: _Gate,
        names: Sequence[str],
        health_server: grpc.aio.Server | None = None,
    ):
        self.server = server
        self.health = health
        self._gate = gate
        self._names = list(names)
        self._health_server = health_server
        self.port = 0
        self.health_port = 0

    @property
    def active_streams(self) -> int:
        return self._gate.active_streams

    @property
    def requires_token(self) -> bool:
        return self._gate.tokens.required

    async def set_ready(self) -> None:
        """Serve the service's RPCs and report SERVING (call once the model is warm)."""
        self._gate.ready = True
        for name in ["", *self._names]:
            await self.health.set(name, _SERVING)

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, refuse new calls, give in-flight ones ``grace_s`` to finish."""
        self._gate.draining = True
        for name in ["", *self._names]:
            await self.health.set(name, _NOT_SERVING)
        await self.server.stop(grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)


async def build_server(
    settings: ServerSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
) -> VoiceServer:
    """Build and start a server on ``settings.host:port``; it answers health at once
    (NOT_SERVING) and the service's RPCs only after ``set_ready``.

    TLS, access tokens, per-client limits and the plaintext health port come from ``settings``;
    a setting that cannot work raises ConfigError before anything listens.
    """
    credentials = server_credentials(settings)
    tokens = Tokens.from_settings(settings)
    redact([*settings.secrets(), *tokens.values()])
    gate = _Gate(settings, tokens)
    server = grpc.aio.server(
        interceptors=[gate],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            [*service_names, reflection.SERVICE_NAME, "grpc.health.v1.Health"], server
        )
    health_server = None
    if settings.health_port:
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
    voice_server = VoiceServer(server, health, gate, service_names, health_server)
    address = f"{settings.host}:{settings.port}"
    if credentials is None:
        voice_server.port = server.add_insecure_port(address)
    else:
        voice_server.port = server.add_secure_port(address, credentials)
    for name in ["", *service_names]:
        await health.set(name, _NOT_SERVING)
    await server.start()
    if health_server is not None:
        voice_server.health_port = health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
        await health_server.start()
    return voice_server


async def serve(
    settings: ServerSettings,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    load: Callable[[], None],
) -> None:
    """Run a service until SIGTERM/SIGINT: start, load and warm the model, serve, drain."""
    try:
        server = await build_server(settings, register, service_names)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(f"{settings.env_name('')[:-1].lower() or 'server'}: {exc}") from exc
    serve_metrics(settings.metrics_port)
    # What the service runs with, secrets masked: a setting that did not arrive shows here.
    log.info("settings", extra={"settings": settings.model_dump(mode="json")})
    log.info(
        "listening",
        extra={
            "port": server.port,
            "services": list(service_names),
            "tls": bool(settings.tls_cert),
            "mutual_tls": bool(settings.tls_client_ca),
            "tokens": server.requires_token,
        },
    )
    started = time.monotonic()
    await asyncio.to_thread(load)
    await server.set_ready()
    log.info("ready", extra={"load_s": round(time.monotonic() - started, 2)})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.grace_s})
    await server.stop(settings.grace_s)
