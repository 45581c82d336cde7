"""An MCP server for the tests, on the ``mcp`` SDK over stdio (or streamable HTTP with ``--http PORT``).

Tools: ``add(a, b)``, ``order_status(order_id)`` over a small JSON file (``ORDERS_FILE``, default
``tests/data/tools/orders.json``), ``slow_status`` (the same after ``SLOW_S`` seconds, 1.5 by
default) and ``broken_lookup`` (always raises). The environment shapes it for a test:
``TOOLS=add,order_status`` offers only those, ``DELAY_S`` makes every call wait that long first,
``BROKEN=1`` makes ``order_status`` raise. With ``--name X`` the server calls itself X.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

ORDERS = Path(__file__).parent / "data" / "tools" / "orders.json"


def build(name: str) -> MCPServer:
    server = MCPServer(name, log_level="CRITICAL")  # a tool that raises is expected here
    orders = json.loads(Path(os.environ.get("ORDERS_FILE", ORDERS)).read_text())
    slow_s = float(os.environ.get("SLOW_S", "1.5"))
    delay_s = float(os.environ.get("DELAY_S", "0"))
    broken = os.environ.get("BROKEN") == "1"
    offered = os.environ.get("TOOLS", "add,order_status,slow_status,broken_lookup").split(",")

    def add(a: float, b: float) -> str:
        """Add two numbers."""
        time.sleep(delay_s)
        total = a + b
        return str(int(total) if total == int(total) else total)

    def order_status(order_id: str) -> str:
        """The delivery status of a customer's order, by its order number."""
        time.sleep(delay_s)
        if broken:
            raise RuntimeError("the order database is down")
        order = orders.get("".join(c for c in str(order_id) if c.isdigit()))  # "#4,217" too
        if order is None:
            raise ToolError(f"there is no order {order_id}")
        return json.dumps(order)

    def slow_status(order_id: str) -> str:
        """The delivery status of an order, from the slow warehouse system."""
        time.sleep(slow_s)
        return order_status(order_id)

    def broken_lookup(order_id: str) -> str:
        """Look up an order in the old system."""
        raise RuntimeError("the order database is down")

    for tool in (add, order_status, slow_status, broken_lookup):
        if tool.__name__ in offered:
            server.tool()(tool)
    return server


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="orders")
    parser.add_argument("--http", type=int, default=0, help="serve streamable HTTP on this port")
    args = parser.parse_args()
    if args.http:
        build(args.name).run("streamable-http", port=args.http)
    else:
        build(args.name).run()
