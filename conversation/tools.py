"""Tools the chat model may call during a turn: what a tool and a call are, and where a
conversation's tools come from and are run (``Tools``: MCP servers, the built-in clock, a
Realtime client). Several sources serve as one through ``Toolbox``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from conversation.settings import ConversationSettings

# How long a call may take before its result is an error for the model.
DEFAULT_TIMEOUT_S = 10.0
# Calls one turn may make; the model is told of any beyond, as an error result.
MAX_CALLS_PER_TURN = 4


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is the JSON Schema of its arguments (an object)."""

    name: str
    description: str
    parameters: dict[str, object] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: ``id`` is the chat service's name for it, which its result answers."""

    id: str
    name: str
    arguments: dict[str, object]


class Tools(Protocol):
    """Where a conversation's tools come from and are run."""

    @property
    def fillers(self) -> bool:
        """Whether the agent speaks a filler ("one moment") while a call is slow."""
        ...

    @property
    def timeout_s(self) -> float:
        """How long a call may take; then the model is told it failed."""
        ...

    @property
    def tool_choice(self) -> str:
        """ "auto": the model decides; "none": no calls; "required": at least one; or a tool's name."""
        ...

    def specs(self) -> list[ToolSpec]: ...

    async def call(self, call: ToolCall) -> str:
        """The call's output (text or JSON text); an exception becomes an error result the model sees."""
        ...


class ToolError(Exception):
    """A tool's call failed; the message is what the model is told."""


class Toolbox:
    """Several sources as one set of tools, by source name; where two sources name a tool alike,
    each is called ``<source>__<tool>``. Each call runs within its own source's timeout, and a
    filler is said only for a source that wants them."""

    def __init__(self, sources: dict[str, Tools], tool_choice: str = "auto") -> None:
        self.tool_choice = tool_choice
        self._sources = sources
        self._by_name: dict[str, tuple[Tools, str]] = {}
        self._specs: list[ToolSpec] = []
        self.refresh()

    @property
    def fillers(self) -> bool:
        return any(source.fillers for source in self._sources.values())

    @property
    def timeout_s(self) -> float:
        return max((source.timeout_s for source in self._sources.values()), default=DEFAULT_TIMEOUT_S)

    def refresh(self) -> None:
        """Take the sources' tools again (a source's list changed)."""
        listed = [(source, name, spec) for name, source in self._sources.items() for spec in source.specs()]
        counts = Counter(spec.name for _, _, spec in listed)
        self._by_name, self._specs = {}, []
        for source, source_name, spec in listed:
            name = spec.name if counts[spec.name] == 1 else f"{source_name}__{spec.name}"
            self._by_name[name] = (source, spec.name)
            self._specs.append(ToolSpec(name, spec.description, spec.parameters))

    def specs(self) -> list[ToolSpec]:
        return list(self._specs)

    def fillers_for(self, name: str) -> bool:
        """Whether a slow call of the tool ``name`` gets a filler."""
        return name in self._by_name and self._by_name[name][0].fillers

    async def call(self, call: ToolCall) -> str:
        if call.name not in self._by_name:
            raise ToolError(f"there is no tool named {call.name!r}")
        source, name = self._by_name[call.name]
        try:
            return await asyncio.wait_for(
                source.call(ToolCall(call.id, name, call.arguments)), source.timeout_s
            )
        except TimeoutError:
            raise ToolError(f"{call.name} did not answer within {source.timeout_s:g} s") from None


def fillers_for(tools: Tools, name: str) -> bool:
    """Whether a slow call of ``name`` gets a filler."""
    return tools.fillers_for(name) if isinstance(tools, Toolbox) else tools.fillers


@asynccontextmanager
async def open_tools(
    settings: ConversationSettings, notify: Callable[[str], None]
) -> AsyncIterator[Toolbox | None]:
    """The tools ``settings`` give (the MCP servers of ``mcp_config``, the built-in date and time
    with ``time_zone``), started, and closed after; None where they give none. A server that does
    not start is told to ``notify`` and the others serve; a config file that cannot work raises
    ConfigError."""
    from conversation.date_time import DateTimeTool
    from conversation.mcp_servers import McpServer, read_config, start_servers

    sources: dict[str, Tools] = {}
    servers: list[McpServer] = []
    if settings.mcp_config:
        servers, problems = await start_servers(read_config(settings.mcp_config))
        for problem in problems:
            notify(problem)
        sources.update((server.name, server) for server in servers)
    if settings.time_zone:
        sources["builtin"] = DateTimeTool(settings.time_zone)
    try:
        yield Toolbox(sources) if sources else None
    finally:
        for server in servers:
            await server.close()
