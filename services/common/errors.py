"""The project's errors, and the one place they become gRPC status codes.

Engines and sessions raise these; servicers never call ``context.abort`` with
ad-hoc codes. Each message should tell a person what to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from foundation import errors

log = logging.getLogger(__name__)


class VoiceError(Exception):
    """Base of every error a service reports to its callers."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    retryable: bool = False


class InvalidArgument(VoiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(VoiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(VoiceError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhausted(VoiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True


class Unavailable(VoiceError):
    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class DeadlineExceeded(VoiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retryable = True


class ConfigError(VoiceError, errors.ConfigError):
    """A setting is missing or wrong; raised at start, before serving."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller sees for ``exc``."""
    if isinstance(exc, VoiceError):
        return exc.code, str(exc)
    if isinstance(exc, errors.ConfigError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the service log"


async def drain(requests: Any, limit_s: float = 1.0) -> None:
    """Read a failing stream's requests for a moment before ending it.

    grpc.aio clients report INTERNAL ("Failed execute_batch") instead of the
    server's status when a write of theirs fails because the call just ended;
    a client that is done writing by then sees the real status. A reader that
    is still busy with ``requests`` (RuntimeError) is left alone.
    """

    async def read_all() -> None:
        async for _ in requests:
            pass

    if not hasattr(requests, "__aiter__"):
        return  # a server-streaming call: the client sent its one request
    with contextlib.suppress(asyncio.TimeoutError, RuntimeError):
        await asyncio.wait_for(read_all(), limit_s)


T = TypeVar("T")
R = TypeVar("R")


def unary_errors(
    method: Callable[[Any, T, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[Any, T, grpc.aio.ServicerContext], Awaitable[R]]:
    """Turn exceptions raised by a unary servicer method into gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: T, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except VoiceError as exc:
            await context.abort(*status_of(exc))
        except Exception as exc:
            log.exception("unexpected error in %s", method.__name__)
            await context.abort(*status_of(exc))
        raise AssertionError("unreachable")

    return wrapper


def stream_errors(
    method: Callable[[Any, T, grpc.aio.ServicerContext], AsyncIterator[R]],
) -> Callable[[Any, T, grpc.aio.ServicerContext], AsyncIterator[R]]:
    """Turn exceptions raised by a streaming servicer method into gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: T, context: grpc.aio.ServicerContext) -> AsyncIterator[R]:
        try:
            async for response in method(self, request, context):
                yield response
        except VoiceError as exc:
            await drain(request)
            await context.abort(*status_of(exc))
        except Exception as exc:
            log.exception("unexpected error in %s", method.__name__)
            await drain(request)
            await context.abort(*status_of(exc))

    return wrapper
