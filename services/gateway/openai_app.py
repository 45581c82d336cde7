"""The OpenAI-compatible HTTP app: routes, ``/v1/models``, ``/health``, bearer tokens and errors in
OpenAI's form."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException

from conversation import ConversationSettings
from foundation.health import status as health_status
from services.common.auth import Tokens
from services.gateway import openai_audio, openai_chat, realtime
from services.gateway.access import Unauthenticated, bearer
from services.gateway.channels import Backends
from services.gateway.errors import BadRequest, openai_error, openai_rpc_error
from voice.llm.v1 import llm_pb2
from voice.stt.v1 import stt_pb2
from voice.tts.v1 import tts_pb2

log = logging.getLogger(__name__)
_PAGE = Path(__file__).parent / "page" / "index.html"


def create_app(
    backends: Backends, tokens: Tokens | None = None, conversation: ConversationSettings | None = None
) -> FastAPI:
    """The app; with ``tokens``, every /v1 route needs one of them (``/health`` needs none).
    With ``conversation`` (the services' addresses), ``/v1/realtime`` holds conversations."""
    # FastAPI traces each request when tracing is on; the health checks (every 5 s) say nothing.
    telemetry = TelemetryConfig(exclude=lambda scope: scope.get("path") == "/health")
    app = FastAPI(title="voice-agent gateway", docs_url=None, redoc_url=None, telemetry=telemetry)
    tokens = tokens or Tokens([])
    authorized = [Depends(bearer(tokens))]
    if conversation is not None:
        app.include_router(realtime.router(conversation, tokens))
    app.include_router(openai_audio.router(backends), dependencies=authorized)
    app.include_router(openai_chat.router(backends), dependencies=authorized)

    @app.get("/v1/models", dependencies=authorized)
    async def models() -> JSONResponse:
        timeout = backends.info_timeout_s
        llm, stt, tts = await asyncio.gather(
            backends.llm.GetInfo(llm_pb2.GetInfoRequest(), timeout=timeout),
            backends.stt.GetInfo(stt_pb2.GetInfoRequest(), timeout=timeout),
            backends.tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=timeout),
        )
        created = int(time.time())
        owned = [(llm.model, "llm"), (stt.model, "stt"), *((v.name, "tts") for v in tts.voices)]
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": owner} for name, owner in owned
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        """The page to talk with the agent from a browser; it shows a token field where one is needed."""
        return HTMLResponse(_PAGE.read_text().replace("{{token}}", "required" if tokens.required else "none"))

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 when all three services report SERVING, else 503 with each one's state."""
        names = ("stt", "llm", "tts")
        states = await asyncio.gather(*(health_status(c, backends.info_timeout_s) for c in backends.channels))
        body = dict(zip(names, states, strict=True))
        ok = all(state == "SERVING" for state in states)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return exc.response()

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse(openai_error(str(exc), "invalid_request_error", exc.param), status_code=400)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def rpc_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        status, body = openai_rpc_error(exc)
        if status >= 500:
            log.warning("%s failed: %s %s", request.url.path, exc.code().name, exc.details())
        return JSONResponse(body, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(openai_error(str(exc.detail), kind), status_code=exc.status_code)

    return app
