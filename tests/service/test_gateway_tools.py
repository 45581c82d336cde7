"""The gateway's tools as its process starts them: GATEWAY_MCP_CONFIG's servers start with it (one
that fails is named in the log and the gateway serves), and a config that cannot work stops it
before it listens, saying what is wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.speech import REPO


def gateway(**env: str) -> subprocess.Popen[str]:
    ports = {f"GATEWAY_{p}_PORT": "0" for p in ("HTTP", "WYOMING_STT", "WYOMING_TTS")}
    return subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=REPO,
        env={**os.environ, **ports, "GATEWAY_HOST": "127.0.0.1", **env},
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_mcp_servers_start_with_the_gateway_and_one_that_fails_is_named(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    servers = {
        "orders": {"command": sys.executable, "args": [str(REPO / "tests" / "mcp_orders.py")]},
        "gone": {"command": str(tmp_path / "no-such-server")},
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    process = gateway(GATEWAY_MCP_CONFIG=str(config), GATEWAY_TIME_ZONE="Europe/Berlin")
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(json.loads(line))
            if lines[-1]["msg"] == "ready":
                break
        told = [line["msg"] for line in lines if line.get("level") in ("WARNING", "warning")]
        assert len(told) == 1 and told[0].startswith("MCP server 'gone' did not start"), lines
        assert lines[-1]["msg"] == "ready", lines
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()


def test_a_bad_tools_setting_stops_the_gateway_saying_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_text('{"mcpServers": {"x": {}}}')
    for env, said in (
        ({"GATEWAY_MCP_CONFIG": str(tmp_path / "mcp.json")}, "server 'x' needs a \"command\""),
        ({"GATEWAY_TIME_ZONE": "Mars/Olympus"}, "GATEWAY_TIME_ZONE 'Mars/Olympus' is no time zone"),
    ):
        process = gateway(**env)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode != 0 and said in stderr, stderr
        assert '"ready"' not in stderr
