"""MCP servers as a source of tools, through the official ``mcp`` SDK.

The servers are named in a JSON file in the ``mcpServers`` shape other MCP clients read:

    {"mcpServers": {
        "orders": {"command": "python", "args": ["orders.py"], "env": {"ORDERS": "orders.json"}},
        "search": {"url": "https://example.org/mcp", "headers": {"Authorization": "Bearer ..."}}}}

A ``command`` is started and spoken to over its stdin and stdout; a ``url`` over streamable
HTTP. Each server's tools are listed once it is up; a server that fails to start is named with
its reason, and the others serve.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conversation.tools import DEFAULT_TIMEOUT_S, ToolCall, ToolError, ToolSpec
from foundation.errors import ConfigError

log = logging.getLogger(__name__)

# A server has this long to start and list its tools.
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ServerConfig:
    """One entry of ``mcpServers``: a ``command`` (stdio) or a ``url`` (streamable HTTP)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def read_config(path: str | Path) -> list[ServerConfig]:
    """The servers named in ``path``; a ConfigError says what is wrong with the file."""
    where = f"MCP config {path}"
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(
            f'{where}: expected {{"mcpServers": {{"name": {{"command": ...}} or {{"url": ...}}}}}}'
        )
    return [_server(where, name, entry) for name, entry in servers.items()]


def _server(where: str, name: str, entry: Any) -> ServerConfig:
    if not isinstance(entry, dict) or bool(entry.get("command")) == bool(entry.get("url")):
        raise ConfigError(f'{where}: server {name!r} needs a "command" (stdio) or a "url" (HTTP), not both')
    args, env, headers = entry.get("args", []), entry.get("env", {}), entry.get("headers", {})
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise ConfigError(f'{where}: server {name!r}: "args" must be a list of strings')
    for key, value in (("env", env), ("headers", headers)):
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise ConfigError(f'{where}: server {name!r}: "{key}" must map names to strings')
    return ServerConfig(name, entry.get("command", ""), tuple(args), env, entry.get("url", ""), headers)


class McpServer:
    """One MCP server's tools (``Tools``); ``start`` connects and lists them, ``close`` ends it.

    The SDK's session lives in a task of its own (it must be entered and left in one task);
    calls come from any task of the same loop.
    """

    fillers = True
    tool_choice = "auto"

    def __init__(self, config: ServerConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._specs: list[ToolSpec] = []
        self._client: Any = None
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Connect and list the tools; a ConfigError names the server and why it did not start."""
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            await self.close()
            raise ConfigError(
                f"MCP server {self.name!r} did not start within {timeout_s:g} s ({self._what()})"
            ) from None
        except Exception as exc:
            await self.close()
            raise ConfigError(
                f"MCP server {self.name!r} did not start ({self._what()}): {_reason(exc)}"
            ) from exc

    def _what(self) -> str:
        return self.config.url or " ".join((self.config.command, *self.config.args))

    async def _hold(self) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        ready = self._ready
        assert ready is not None
        try:
            server: Any
            if self.config.url:
                server = self._http_transport()
            else:
                server = StdioServerParameters(
                    command=self.config.command, args=list(self.config.args), env=self.config.env or None
                )
            async with Client(server) as client:
                listed = await client.list_tools()
                self._specs = [
                    ToolSpec(t.name, t.description or "", dict(t.input_schema)) for t in listed.tools
                ]
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConfigError("stopped"))
            elif not self._stop.is_set():
                log.warning("MCP server %r stopped: %s", self.name, _reason(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._client = None

    def _http_transport(self) -> Any:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=self.config.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        return _HttpTransport(streamable_http_client(self.config.url, http_client=http), http)

    def specs(self) -> list[ToolSpec]:
        return list(self._specs)

    async def call(self, call: ToolCall) -> str:
        client = self._client
        if client is None:
            raise ToolError(f"the MCP server {self.name!r} is not running")
        result = await client.call_tool(call.name, call.arguments)
        text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        if result.is_error:
            raise ToolError(text or f"{call.name} failed")
        return text

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (TimeoutError, Exception):
                self._task.cancel()


class _HttpTransport:
    """The SDK's streamable HTTP transport with its own HTTP client (for the headers), closed with it."""

    def __init__(self, transport: Any, http: Any) -> None:
        self._transport, self._http = transport, http

    async def __aenter__(self) -> Any:
        return await self._transport.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._transport.__aexit__(*exc)
        finally:
            await self._http.aclose()


def _reason(exc: BaseException) -> str:
    """The innermost cause of a failure (the SDK wraps them in exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


async def start_servers(
    configs: list[ServerConfig], timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[list[McpServer], list[str]]:
    """Start every server at once: those that serve, and why each other one did not start."""
    servers = [McpServer(config, timeout_s) for config in configs]
    outcomes = await asyncio.gather(*(server.start() for server in servers), return_exceptions=True)
    started, problems = [], []
    for server, outcome in zip(servers, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            problems.append(str(outcome))
        else:
            started.append(server)
    return started, problems
