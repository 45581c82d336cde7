"""The Realtime session's function tools, run by its client: the conversation's ``Tools``.

A call the model makes goes to the client as a ``function_call`` item of the response in
progress, and that response is done; the client runs the function, adds a
``function_call_output`` item and asks for a response, and the turn goes on with the output
in a new response. The API has no filler for a client's functions, and no time limit: a call
waits for its output for ``CALL_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from conversation.tools import ToolCall, ToolSpec
from services.gateway.functions import Function

# How long a call waits for the client's output before the model is told it failed.
CALL_TIMEOUT_S = 600.0


@dataclass
class _Waiting:
    call: ToolCall
    answered: asyncio.Future[str]
    output: str | None = None  # given by the client, not yet asked for a response
    item_id: str = ""


@dataclass
class ClientFunctions:
    """The functions the session declares (``session.tools``) and the calls awaiting their output.

    ``on_call`` tells the client of a call (its events); ``on_answered`` is told when the client
    asks for a response with every waiting call answered, before the calls return.
    """

    on_call: Callable[[ToolCall], Awaitable[str]]  # tells the client; returns the call's item id
    on_answered: Callable[[], None]
    fillers: bool = False
    timeout_s: float = CALL_TIMEOUT_S
    tool_choice: str = "auto"
    functions: list[Function] = field(default_factory=list)
    _waiting: dict[str, _Waiting] = field(default_factory=dict)

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec(f.name, f.description, f.parameters or _NO_ARGUMENTS) for f in self.functions]

    async def call(self, call: ToolCall) -> str:
        waiting = self._waiting[call.id] = _Waiting(call, asyncio.get_running_loop().create_future())
        try:
            waiting.item_id = await self.on_call(call)
            return await waiting.answered
        finally:
            self._waiting.pop(call.id, None)

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def item_of(self, call_id: str) -> str:
        """The item id of the waiting call ``call_id``; KeyError if none waits under it."""
        return self._waiting[call_id].item_id

    def output(self, call_id: str, output: str) -> None:
        """The client's output for the waiting call ``call_id``; KeyError if none waits under it."""
        self._waiting[call_id].output = output

    def unanswered(self) -> list[str]:
        """The call ids still without an output."""
        return [call_id for call_id, w in self._waiting.items() if w.output is None]

    def answer(self) -> None:
        """The client asks for a response: every waiting call returns its output."""
        self.on_answered()
        for waiting in self._waiting.values():
            if waiting.output is not None and not waiting.answered.done():
                waiting.answered.set_result(waiting.output)


_NO_ARGUMENTS: dict[str, object] = {"type": "object", "properties": {}}


def call_item(item_id: str, call: ToolCall, status: str) -> dict[str, object]:
    """A ``function_call`` item, as the API shows it."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "name": call.name,
        "call_id": call.id,
        "arguments": json.dumps(call.arguments) if status == "completed" else "",
    }
