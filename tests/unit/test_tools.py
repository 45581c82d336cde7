"""Tools' plain logic: several sources as one (names namespaced on clashes), fillers never the
same twice in a row and kept out of what the model is told was heard, the MCP config file's
checks, the built-in date and time."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conversation.date_time import DateTimeTool
from conversation.fillers import PHRASES, Fillers, without
from conversation.mcp_servers import ServerConfig, read_config
from conversation.settings import ConversationSettings, SettingError
from conversation.tools import Toolbox, ToolCall, ToolError, ToolSpec
from foundation.errors import ConfigError


class Named:
    """A source whose tools answer with the source's name and the tool's."""

    fillers, timeout_s, tool_choice = True, 1.0, "auto"

    def __init__(self, source: str, *tools: str) -> None:
        self.source, self.tools = source, tools

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec(name, f"{name} of {self.source}") for name in self.tools]

    async def call(self, call: ToolCall) -> str:
        return f"{self.source}:{call.name}:{json.dumps(call.arguments)}"


async def test_a_toolbox_namespaces_only_the_names_that_clash() -> None:
    box = Toolbox({"shop": Named("shop", "order_status", "search"), "web": Named("web", "search")})
    assert [s.name for s in box.specs()] == ["order_status", "shop__search", "web__search"]
    assert await box.call(ToolCall("1", "web__search", {"q": "x"})) == 'web:search:{"q": "x"}'
    assert await box.call(ToolCall("2", "order_status", {})) == "shop:order_status:{}"
    with pytest.raises(ToolError, match="no tool named 'search'"):
        await box.call(ToolCall("3", "search", {}))


class Slow(Named):
    fillers, timeout_s = False, 0.1

    async def call(self, call: ToolCall) -> str:
        await asyncio.sleep(1)
        return "late"


async def test_a_toolbox_runs_each_call_within_its_own_sources_timeout_and_filler_rule() -> None:
    box = Toolbox({"shop": Named("shop", "order_status"), "clock": Slow("clock", "now")})
    assert box.timeout_s == 1.0 and box.fillers
    assert box.fillers_for("order_status") and not box.fillers_for("now")
    with pytest.raises(ToolError, match=r"now did not answer within 0\.1 s"):
        await box.call(ToolCall("1", "now", {}))


def test_fillers_are_never_the_same_twice_in_a_row() -> None:
    fillers = Fillers(seed=1)
    said = [fillers.next() for _ in range(200)]
    assert all(a != b for a, b in itertools.pairwise(said))
    assert set(said) == set(PHRASES)
    fillers.said("One moment!")  # the model's own words count too
    assert fillers.next() != "One moment."


def test_what_was_heard_leaves_out_the_fillers() -> None:
    assert without("Let me check. Order 4217 has shipped.", ["Let me check."]) == "Order 4217 has shipped."
    assert without("Sure. Bear with me", ["Bear with me a moment."]) == "Sure."  # cut midway
    assert without("Let me check the order. Let me check.", ["Let me check."]) == "Let me check the order."
    assert without("Order 4217 has shipped.", []) == "Order 4217 has shipped."


def write(tmp: Path, data: object) -> Path:
    path = tmp / "mcp.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_the_mcp_config_file_in_the_shape_other_clients_read(tmp_path: Path) -> None:
    config = {
        "mcpServers": {
            "orders": {"command": "python", "args": ["orders.py"], "env": {"ORDERS": "o.json"}},
            "search": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer t"}},
        }
    }
    assert read_config(write(tmp_path, config)) == [
        ServerConfig("orders", "python", ("orders.py",), {"ORDERS": "o.json"}),
        ServerConfig("search", url="http://127.0.0.1:9/mcp", headers={"Authorization": "Bearer t"}),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not JSON"),
        ({"servers": {}}, 'expected {"mcpServers"'),
        ({"mcpServers": {"x": {}}}, "server 'x' needs a \"command\""),
        ({"mcpServers": {"x": {"command": "a", "url": "b"}}}, "server 'x' needs a \"command\""),
        ({"mcpServers": {"x": {"command": "a", "args": "b"}}}, '"args" must be a list of strings'),
        ({"mcpServers": {"x": {"url": "a", "headers": {"h": 1}}}}, '"headers" must map names to strings'),
    ],
)
def test_a_bad_mcp_config_says_what_is_wrong(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"MCP config .*mcp\.json: ") as raised:
        read_config(path)
    assert message in str(raised.value)


def test_a_missing_mcp_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.json: cannot be read"):
        read_config(tmp_path / "nothing.json")


async def test_the_date_and_time_in_the_configured_zone() -> None:
    utc = datetime(2026, 12, 7, 23, 30, tzinfo=ZoneInfo("UTC"))
    tool = DateTimeTool("Asia/Tokyo", lambda zone: utc.astimezone(zone))
    [spec] = tool.specs()
    said = await tool.call(ToolCall("1", spec.name, {}))
    assert said == "Tuesday, 8 December 2026, 08:30 (Asia/Tokyo, UTC+0900)"


def test_the_date_and_time_tool_is_off_unless_a_real_zone_is_given() -> None:
    assert ConversationSettings().time_zone == ""
    with pytest.raises(SettingError, match="--time-zone 'Mars/Olympus' is no time zone"):
        ConversationSettings(time_zone="Mars/Olympus")
