"""Who may use the gateway: bearer tokens on the HTTP API, and listeners without authentication
kept on loopback unless a setting says a trusted network guards them."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from foundation.channels import is_loopback
from services.common.auth import Tokens
from services.common.errors import ConfigError
from services.gateway.config import GatewaySettings
from services.gateway.errors import openai_error

_SCHEME = "bearer "


class Unauthenticated(Exception):
    """An HTTP call without an accepted token; the app answers 401 with this message."""

    def response(self) -> JSONResponse:
        body = openai_error(str(self), "authentication_error", code="invalid_api_key")
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def http_tokens(settings: GatewaySettings) -> Tokens:
    return Tokens.load(
        settings.http_tokens.get_secret_value(),
        settings.http_tokens_file,
        "GATEWAY_HTTP_TOKENS",
        "GATEWAY_HTTP_TOKENS_FILE",
    )


def check_listeners(settings: GatewaySettings, tokens: Tokens) -> None:
    """ConfigError, saying what to set, where a listener would serve other machines unauthenticated."""
    where = settings.published_host or settings.host
    if is_loopback(where):
        return
    setting = "GATEWAY_PUBLISHED_HOST" if settings.published_host else "GATEWAY_HOST"
    if not tokens.required and not settings.http_allow_open:
        raise ConfigError(
            f"refusing to serve the HTTP API without access tokens on {where} ({setting}): set "
            "GATEWAY_HTTP_TOKENS_FILE (or GATEWAY_HTTP_TOKENS), or GATEWAY_HTTP_ALLOW_OPEN=true "
            "where only a trusted network or an authenticating proxy reaches the port"
        )
    if not settings.wyoming_allow_open:
        raise ConfigError(
            f"refusing to serve Wyoming on {where} ({setting}): the protocol has no authentication, so "
            "anyone who reaches the port could use the services; listen on 127.0.0.1, or set "
            "GATEWAY_WYOMING_ALLOW_OPEN=true where only a trusted network reaches the ports"
        )


def refusal(tokens: Tokens, header: str | None) -> str:
    """Why a call with this ``Authorization`` header is refused; empty when it may go on."""
    if not tokens.required:
        return ""
    if header is None:
        return (
            "this API needs an access token: send the header `Authorization: Bearer <token>` "
            "(the api_key of an OpenAI client; from a browser, /v1/realtime takes the subprotocol "
            "`openai-insecure-api-key.<token>`)"
        )
    if not header.lower().startswith(_SCHEME):
        return "the Authorization header must read `Bearer <token>`"
    if tokens.check([("authorization", header)]).client is None:
        return f"the access token was not accepted; check it against the gateway's {tokens.source}"
    return ""


def bearer(tokens: Tokens) -> Callable[[Request], None]:
    """A FastAPI dependency that lets a call through with ``Authorization: Bearer`` and an accepted token."""

    def check(request: Request) -> None:
        if reason := refusal(tokens, request.headers.get("authorization")):
            raise Unauthenticated(reason)

    return check
