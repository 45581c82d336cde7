"""Per-client limits (streams at once, requests a minute) and the idle-stream watch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, TypeVar

T = TypeVar("T")


class ClientLimits:
    """Counts each named client's open streams and recent requests."""

    def __init__(self, max_streams: int, max_requests_per_min: int) -> None:
        self.max_streams = max_streams
        self.max_requests_per_min = max_requests_per_min
        self._streams: dict[str, int] = defaultdict(int)
        # A token bucket per client: full at max_requests_per_min, refilled evenly over a minute.
        self._buckets: dict[str, tuple[float, float]] = {}

    def refusal(self, client: str, streaming: bool) -> tuple[str, str] | None:
        """(limit, message) when this call would break a limit, else None; counts the request."""
        if streaming and self.max_streams and self._streams[client] >= self.max_streams:
            return "client_streams", (
                f"this access token already holds {self.max_streams} streams (the service's "
                "client_max_streams limit); close one or use another token"
            )
        if self.max_requests_per_min:
            now = time.monotonic()
            rate = self.max_requests_per_min / 60.0
            level, at = self._buckets.get(client, (float(self.max_requests_per_min), now))
            level = min(float(self.max_requests_per_min), level + (now - at) * rate)
            if level < 1.0:
                self._buckets[client] = (level, now)
                return "client_requests", (
                    f"this access token made more than {self.max_requests_per_min} requests in a minute "
                    f"(the service's client_max_requests_per_min limit); retry in {(1 - level) / rate:.1f} s"
                )
            self._buckets[client] = (level - 1.0, now)
        return None

    def open(self, client: str) -> None:
        self._streams[client] += 1

    def close(self, client: str) -> None:
        self._streams[client] -= 1
        if self._streams[client] <= 0:
            del self._streams[client]


class StreamIdle(Exception):
    """No message went either way for the idle limit."""


class Activity:
    """When a stream last carried a message, either way."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()

    async def watch(self, requests: AsyncIterator[T]) -> AsyncIterator[T]:
        async for request in requests:
            self.touch()
            yield request


async def until_idle(responses: AsyncIterator[T], activity: Activity, idle_s: float) -> AsyncIterator[T]:
    """``responses``, until neither they nor the requests moved for ``idle_s``: then StreamIdle."""
    iterator = aiter(responses)
    while True:
        step: asyncio.Future[Any] = asyncio.ensure_future(anext(iterator))
        try:
            while not step.done():
                left = activity.last + idle_s - time.monotonic()
                if left <= 0:
                    raise StreamIdle
                await asyncio.wait({step}, timeout=left)
        finally:
            if not step.done():
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
        try:
            response = step.result()
        except StopAsyncIteration:
            return
        activity.touch()
        yield response
