"""What one clip and one row of the end-to-end benchmark came to."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    clip: str
    reference: str = ""  # what the user said
    heard: str = ""  # what the agent transcribed of it, all turns joined
    latency_ms: float | None = None  # None: no reply after the end of speech (a failure)
    stages_ms: dict[str, float] = field(default_factory=dict)
    turns: int = 0
    cut_off: bool = False
    error: str = ""


@dataclass
class Run:
    row: str
    set: str
    outcomes: list[Outcome] = field(default_factory=list)
