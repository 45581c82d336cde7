"""One turn of the agent's: what the user said, the reply, and its times. It is reported once
when it is over, and nothing of it is kept after that."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


def rounded(t_ms: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in t_ms.items()}


@dataclass
class Turn:
    user_text: str
    t_ms: dict[str, float]  # what happened when, in ms of the conversation's clock
    id: int = 0
    agent_text: str = ""  # what the model wrote
    error: str = ""  # why the reply failed, if it did
    interrupted: bool = False
    heard_text: str = ""  # set when interrupted: what was played before the cut
    withdrawn: list[dict[str, object]] = field(default_factory=list)  # held replies this one replaced
    backchannels: list[str] = field(default_factory=list)  # what the user said over it that was no turn
    judged: list[dict[str, object]] = field(default_factory=list)  # the user's pauses, as judged (bounded)
    tentative: bool = False  # the user may not be done: audio is held, not played
    retracted: bool = False  # the user went on: the turn never happened
    paused: bool = False  # sound from the user: playback stopped until it proves to be words or not
    paused_at: float = 0.0  # ms
    calls: list[dict[str, object]] = field(default_factory=list)  # tools called: name, arguments, result, ms
    refused_calls: int = 0  # calls past the bound of a turn
    calling: bool = False  # a step's calls are running
    before_calls: str = ""  # what the model wrote before its last calls
    fillers: list[str] = field(default_factory=list)  # said while a call was slow
    apology: str = ""  # said for a reply that failed before its first word
    early_flushes: int = 0  # synthesis flushed before the reply's end (words said while a call works)
    synthesized: asyncio.Event = field(default_factory=asyncio.Event)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def heard_since_calls(self) -> str:
        """What was heard of the model's words after its last calls (the text a cut replaces)."""
        return " ".join(self.heard_text.split()[len(self.before_calls.split()) :])

    @property
    def audible(self) -> bool:
        return not (self.tentative or self.paused or self.interrupted)

    def withdrawal(self) -> dict[str, object]:
        """What the report says of a held reply that was withdrawn."""
        return {
            "user_text": self.user_text,
            "agent_text": self.agent_text.strip(),
            "t_ms": rounded(self.t_ms),
        }

    def report(self) -> dict[str, object]:
        line: dict[str, object] = {
            "user_text": self.user_text,
            "agent_text": self.heard_text if self.interrupted else self.agent_text.strip(),
            "interrupted": self.interrupted,
            "t_ms": rounded(self.t_ms),
        }
        if self.error:
            line["error"] = self.error
        if self.withdrawn:
            line["withdrawn"] = self.withdrawn
        if self.backchannels:
            line["backchannels"] = self.backchannels
        if self.judged:
            line["judged"] = self.judged
        if self.calls:
            line["tools"] = self.calls
        if self.fillers:
            line["fillers"] = self.fillers
        if self.apology:
            line["apology"] = self.apology
        return line
