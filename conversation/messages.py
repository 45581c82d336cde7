"""What the links hand the core: the services' messages in the core's own small types.

Times are client time: ms since the conversation's first microphone frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from conversation.tools import ToolCall


@dataclass(frozen=True)
class Final:
    """Words the STT service decoded: a final (never revised), or an interim at a pause."""

    text: str
    start_ms: float
    end_ms: float


class Judgement(Enum):
    """The end-of-turn model's word on a pause."""

    END_OF_TURN = "end_of_turn"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class SpeechEvent:
    """The STT service heard speech; ``judgement`` is set where its model judged the pause that
    began at ``at_ms``, with its ``probability`` that the turn is over."""

    at_ms: float
    judgement: Judgement | None = None
    probability: float = 0.0


@dataclass(frozen=True)
class ReplyDelta:
    turn_id: int
    text: str


@dataclass(frozen=True)
class ReplyEnd:
    """The chat model's reply is over: ``text`` is all it wrote; ``error`` says why it failed."""

    turn_id: int
    text: str
    error: str = ""


@dataclass(frozen=True)
class ToolCalls:
    """The model called tools: its turn goes on once each call has its result. ``text`` is what
    it wrote before the calls."""

    turn_id: int
    text: str
    calls: tuple[ToolCall, ...]


Reply = ReplyDelta | ToolCalls | ReplyEnd


@dataclass(frozen=True)
class AudioChunk:
    """Synthesized speech of a reply; ``text`` is set on the first chunk of each piece."""

    turn_id: int
    pcm: bytes
    text: str = ""


@dataclass(frozen=True)
class AudioDone:
    """All of the reply's text is spoken (or its synthesis was cancelled)."""

    turn_id: int
    cancelled: bool = False


Speech = AudioChunk | AudioDone
