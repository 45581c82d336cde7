"""MCP servers as a tool source, through the ``mcp`` SDK: the test server (tests/mcp_orders.py)
over stdio and over streamable HTTP, started from an ``mcpServers`` file; names that clash are
namespaced; a server that fails to start is named and the others serve."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from conversation.settings import ConversationSettings
from conversation.tools import ToolCall, ToolError, open_tools
from harness.speech import REPO

SERVER = str(REPO / "tests" / "mcp_orders.py")


def config(tmp: Path, servers: Mapping[str, object]) -> str:
    path = tmp / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    """The test server on streamable HTTP; its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, SERVER, "--name", "warehouse", "--http", str(port)])
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=0.2)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the MCP server stopped"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


async def test_stdio_and_http_servers_serve_their_tools_namespaced_on_clashes(
    tmp_path: Path, http_server: str
) -> None:
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps({"77": {"status": "lost at sea"}}))
    servers = {
        "shop": {"command": sys.executable, "args": [SERVER], "env": {"ORDERS_FILE": str(orders)}},
        "warehouse": {"url": http_server, "headers": {"X-Caller": "voice-agent"}},
    }
    told: list[str] = []
    settings = ConversationSettings(mcp_config=config(tmp_path, servers), time_zone="Europe/Paris")
    async with open_tools(settings, told.append) as tools:
        assert tools is not None and not told
        names = [spec.name for spec in tools.specs()]
        each = ["add", "order_status", "slow_status", "broken_lookup"]
        assert names == [f"shop__{n}" for n in each] + [f"warehouse__{n}" for n in each] + [
            "get_current_date_time"
        ]
        assert (
            await tools.call(ToolCall("1", "shop__order_status", {"order_id": "77"}))
            == '{"status": "lost at sea"}'
        )
        assert await tools.call(ToolCall("2", "warehouse__add", {"a": 2, "b": 3})) == "5"
        assert (
            json.loads(await tools.call(ToolCall("3", "warehouse__order_status", {"order_id": "4217"})))[
                "status"
            ]
            == "shipped"
        )
        with pytest.raises(ToolError, match="there is no order 5"):
            await tools.call(ToolCall("4", "shop__order_status", {"order_id": "5"}))
        with pytest.raises(ToolError, match="Error executing tool broken_lookup"):
            await tools.call(ToolCall("5", "shop__broken_lookup", {"order_id": "5"}))
        assert "Europe/Paris" in await tools.call(ToolCall("6", "get_current_date_time", {}))


async def test_a_server_that_fails_to_start_is_named_and_the_others_serve(tmp_path: Path) -> None:
    servers = {
        "shop": {"command": sys.executable, "args": [SERVER]},
        "missing": {"command": str(tmp_path / "no-such-server")},
        "crashing": {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]},
        "unreachable": {"url": f"http://127.0.0.1:{free_port()}/mcp"},
    }
    told: list[str] = []
    settings = ConversationSettings(mcp_config=config(tmp_path, servers))
    async with open_tools(settings, told.append) as tools:
        assert tools is not None
        assert [spec.name for spec in tools.specs()] == [
            "add",
            "order_status",
            "slow_status",
            "broken_lookup",
        ]
        assert await tools.call(ToolCall("1", "add", {"a": 1, "b": 1})) == "2"
    assert len(told) == 3, told
    said = {name: [t for t in told if t.startswith(f"MCP server {name!r} did not start")] for name in servers}
    assert [len(said[name]) for name in servers] == [0, 1, 1, 1], told
    assert "No such file or directory" in said["missing"][0]


async def test_a_call_cut_by_its_timeout_leaves_the_server_serving(tmp_path: Path) -> None:
    servers = {"shop": {"command": sys.executable, "args": [SERVER], "env": {"SLOW_S": "3"}}}
    settings = ConversationSettings(mcp_config=config(tmp_path, servers))
    async with open_tools(settings, lambda _: None) as tools:
        assert tools is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tools.call(ToolCall("1", "slow_status", {"order_id": "4217"})), 0.5)
        assert await tools.call(ToolCall("2", "add", {"a": 20, "b": 22})) == "42"
