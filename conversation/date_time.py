"""A built-in tool: the current date and time in a configured time zone (a voice agent is often
asked, and a model cannot know). Off unless a time zone is set (``--time-zone``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from conversation.tools import ToolCall, ToolSpec

NAME = "get_current_date_time"


class DateTimeTool:
    """``Tools`` with one tool, answered at once (no filler)."""

    fillers = False
    timeout_s = 1.0
    tool_choice = "auto"

    def __init__(self, time_zone: str, now: Callable[[ZoneInfo], datetime] = datetime.now) -> None:
        self.zone = ZoneInfo(time_zone)  # checked with the settings
        self._now = now

    def specs(self) -> list[ToolSpec]:
        return [
            ToolSpec(
                NAME,
                "The current date, day of the week and time where the user is. Use it whenever "
                "the user asks what day, date or time it is.",
                {"type": "object", "properties": {}},
            )
        ]

    async def call(self, call: ToolCall) -> str:
        now = self._now(self.zone)
        return f"{now:%A}, {now:%-d %B %Y}, {now:%H:%M} ({self.zone.key}, UTC{now:%z})"
