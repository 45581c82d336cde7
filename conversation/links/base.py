"""A long-lived stream to a service, reopened when it breaks.

A stream owns what it sends: each call gets its own outbox, created with the call
and closed with it, so nothing written for a stream that died goes out on the next
one (grpc.aio does not stop a finished call's request iterator). What must not be
lost the link keeps itself and sends again on the new stream: the STT link the
microphone audio that has no final yet (bounded), the LLM link the conversation and
the turn being asked (once), the TTS link the reply's text not yet spoken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import grpc

from foundation.channels import Security, open_channel
from foundation.health import serving, unreachable

log = logging.getLogger(__name__)

# Between attempts to reopen a stream; short, so a restarted service is found within a second.
BACKOFF_S = (0.1, 0.25, 0.5, 1.0)
# grpc's own reconnect backoff (from 1 s up to 120 s by default) would hide a service that is back.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# A stream that lived this long was healthy: the next failure starts the backoff afresh.
_HEALTHY_S = 5.0
# A turn (or a reply's speech) waits this long for its service to come back, then fails.
RESEND_WAIT_S = 30.0

Notify = Callable[[str], None]
Item = TypeVar("Item")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _Starting(Exception):
    """The service answers, but its model is not ready yet."""


class Link(Generic[Item, Req, Resp]):
    """One stream to a service, reopened with backoff when it breaks; subclasses say what it carries."""

    service = ""

    def __init__(self, address: str, security: Security, notify: Notify) -> None:
        self.address = address
        self._security = security
        self._notify = notify
        self._outbox: asyncio.Queue[Item | None] | None = None  # the live stream's, None between streams
        self._closing = False
        self._rolling = False
        self.connected = False
        self.streams = 0  # streams opened so far
        # The trace context a turn's requests carry (a W3C traceparent; "": none), by turn id
        # (0: the user's turn being heard); set by the conversation's tracing.
        self.trace_of: Callable[[int], str] = lambda turn_id: ""

    def send(self, item: Item) -> bool:
        """Queue ``item`` on the live stream; False when there is none (then it is not kept here)."""
        if self._outbox is None:
            return False
        self._outbox.put_nowait(item)
        return True

    def close(self) -> None:
        """Half-close: the service finishes what it was sent, then the stream ends for good."""
        self._closing = True
        if self._outbox is not None:
            self._outbox.put_nowait(None)

    def roll_over(self) -> None:
        """Half-close the live stream and open a new one at once (no backoff, nothing reported)."""
        if self._outbox is not None and not self._rolling:
            self._rolling = True
            self._outbox.put_nowait(None)

    async def run(self) -> None:
        attempt, told = 0, ""
        while not self._closing:
            outbox: asyncio.Queue[Item | None] = asyncio.Queue()
            opened_at = time.monotonic()
            try:
                async with open_channel(self.address, self._security, _CHANNEL_OPTIONS) as channel:
                    # No wait for a connection: a service that is down fails the health check at once.
                    if not await serving(channel):
                        raise _Starting(f"the {self.service} service at {self.address} is loading its model")
                    await self._prepare(channel)
                    call = self._call(channel, self._requests(outbox))
                    self._outbox, self.connected, self._rolling = outbox, True, False
                    self.streams += 1
                    if attempt:
                        self._notify(f"the {self.service} service is back")
                    self._on_open()
                    async for response in call:
                        self._on_response(response)
                if self._closing or self._rolling:
                    continue
                problem = f"the {self.service} service ended the stream; opening a new one"
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and self._outbox is not None:
                    continue  # the service closed a stream idle for its stream_idle_s: open a new one quietly
                problem = unreachable(self.service, self.address, err)
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    problem += "; retrying"
            except _Starting as starting:
                problem = f"{starting}; waiting"
            except Exception as exc:  # a bug here must not end the link: say so, and start again
                log.exception("%s link failed", self.service)
                problem = f"the {self.service} link failed ({exc!r}); restarting it"
            finally:
                self._outbox, self.connected = None, False
                outbox.put_nowait(None)  # the old stream's request iterator ends here, whatever grpc does
            if time.monotonic() - opened_at > _HEALTHY_S:
                attempt = 0
            kind = problem.split(" (", 1)[0]  # the details of a failed call vary; its kind does not
            if attempt == 0 or kind != told:
                self._notify(problem)  # once for each kind of trouble, not at every retry
                told = kind
            self._on_lost()
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1

    async def _requests(self, outbox: asyncio.Queue[Item | None]) -> AsyncIterator[Req]:
        yield self._first()
        while (item := await outbox.get()) is not None:
            yield self._request(item)

    async def _prepare(self, channel: grpc.aio.Channel) -> None:
        """Before a stream opens: ask the service what the stream needs to know."""

    def _first(self) -> Req:
        raise NotImplementedError

    def _request(self, item: Item) -> Req:
        return item  # type: ignore[return-value]

    def _call(self, channel: grpc.aio.Channel, requests: AsyncIterator[Req]) -> AsyncIterator[Resp]:
        raise NotImplementedError

    def _on_open(self) -> None:
        """A new stream is live: queue on it what the lost one did not finish."""

    def _on_response(self, response: Resp) -> None:
        raise NotImplementedError

    def _on_lost(self) -> None:
        """The stream broke."""
