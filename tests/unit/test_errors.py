"""Errors map to gRPC status codes in one place."""

from __future__ import annotations

import grpc

from services.common.errors import InvalidArgument, OutOfRange, Unavailable, status_of


def test_project_errors_keep_their_code_and_message() -> None:
    assert status_of(InvalidArgument("use 8000 to 48000")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "use 8000 to 48000",
    )
    assert status_of(OutOfRange("too long"))[0] == grpc.StatusCode.OUT_OF_RANGE
    assert Unavailable.retryable and not InvalidArgument.retryable


def test_unexpected_errors_are_internal_without_leaking_details() -> None:
    code, message = status_of(KeyError("secret"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in message and "KeyError" in message
