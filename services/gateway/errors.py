"""gRPC statuses from the services, as each protocol reports errors."""

from __future__ import annotations

import grpc
from wyoming.error import Error

# OpenAI's error "type" and the HTTP status for each gRPC code; anything else is a 500.
_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
}


class BadRequest(Exception):
    """The client's request is wrong before any service is asked; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def rpc_message(error: grpc.aio.AioRpcError) -> str:
    details = error.details() or ""
    return details or error.code().name.lower().replace("_", " ")


def openai_error(
    message: str, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_status_error(code: grpc.StatusCode, message: str) -> tuple[int, dict[str, object]]:
    """The HTTP status and OpenAI error body for a gRPC status."""
    status, kind = _HTTP.get(code, (500, "api_error"))
    return status, openai_error(message, kind, code=code.name.lower())


def openai_rpc_error(error: grpc.aio.AioRpcError) -> tuple[int, dict[str, object]]:
    return openai_status_error(error.code(), rpc_message(error))


def status_code(number: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a numeric code, as a TurnError carries it."""
    return next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)


def wyoming_error(error: BaseException) -> Error:
    """A Wyoming ``error`` event: the gRPC status's message and its code name."""
    if isinstance(error, grpc.aio.AioRpcError):
        return Error(text=rpc_message(error), code=error.code().name)
    if isinstance(error, BadRequest):
        return Error(text=str(error), code="INVALID_ARGUMENT")
    return Error(text=f"internal error ({type(error).__name__}); see the gateway log", code="INTERNAL")
