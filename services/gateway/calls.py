"""A streaming call the gateway writes to while a task of its own reads the answers."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc


class WrittenCall:
    """``_call`` is the gRPC call; ``_reader`` the task reading it (both set by the subclass)."""

    _call: Any
    _reader: asyncio.Task[None]

    def cancel(self) -> None:
        self._call.cancel()
        self._reader.cancel()

    async def _safe_write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            # The call has ended; its status, with the service's message, is what the reader saw.
            await self._reader
            raise
