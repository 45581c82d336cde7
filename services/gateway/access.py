"""Who may use the gateway: bearer tokens on the HTTP API, and listeners without authentication
kept on loopback unless a setting says a trusted network guards them."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from foundation.channels import is_loopback
from services.common.auth import Tokens
from services.common.errors import ConfigError
from services.gateway.config import GatewaySettings

_SCHEME = "bearer "


class Unauthenticated(Exception):
    """An HTTP call without an accepted token; the app answers 401 with this message."""


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


def bearer(tokens: Tokens) -> Callable[[Request], None]:
    """A FastAPI dependency that lets a call through with ``Authorization: Bearer`` and an accepted token."""

    def check(request: Request) -> None:
        if not tokens.required:
            return
        header = request.headers.get("authorization")
        if header is None:
            raise Unauthenticated(
                "this API needs an access token: send the header `Authorization: Bearer <token>` "
                "(the api_key of an OpenAI client)"
            )
        if not header.lower().startswith(_SCHEME):
            raise Unauthenticated("the Authorization header must read `Bearer <token>`")
        if tokens.check([("authorization", header)]).client is None:
            raise Unauthenticated(
                f"the access token was not accepted; check it against the gateway's {tokens.source}"
            )

    return check
