"""Long-lived streams to the three services, each reopened when it breaks; the only part of the
core that speaks protobuf. Each link turns its service's messages into the core's own types
(``conversation.messages``) and reports a local failure as those types too."""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from conversation.links.base import Link, Notify
from conversation.links.llm import LlmLink
from conversation.links.stt import SttLink
from conversation.links.tts import TtsLink

__all__ = ["Links", "LlmLink", "SttLink", "TtsLink"]

log = logging.getLogger(__name__)


class Links:
    """A conversation's links, run as tasks: one that stops is reported; closing half-closes each
    and waits (a while) for it to finish what it was sent."""

    def __init__(self, notify: Notify, *links: Link[Any, Any, Any]) -> None:
        self._notify = notify
        self._links = links
        self._tasks: list[asyncio.Task[None]] = []

    def trace(self, trace_of: Callable[[int], str]) -> None:
        """Each link's requests of a turn carry the trace context ``trace_of`` gives it."""
        for link in self._links:
            link.trace_of = trace_of

    def start(self) -> None:
        self._tasks = [asyncio.create_task(link.run()) for link in self._links]
        for task in self._tasks:
            task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a link stopped", exc_info=exc)
            self._notify(f"a link to the services stopped ({exc!r}); restart voice-agent")

    async def close(self, timeout_s: float = 5.0) -> None:
        for link in self._links:
            link.close()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
