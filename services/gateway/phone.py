"""A telephone call on the conversation core: what the phone doors (AudioSocket, Twilio media
streams) share.

A call is one conversation. The caller's 8 kHz audio is cleaned of noise (``NoiseSuppressor``,
unless turned off), resampled to the core's 16 kHz and fed to it; the reply is synthesized at
8 kHz and taken out 20 ms at a time by the door's own clock (``LinePlayback.take``). A key the
caller presses is said to the model as "[the caller pressed 3]". The call is hung up from our
side after ``idle_hangup_s`` with neither side speaking.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from conversation import Conversation, ConversationSettings, Events, Turn
from conversation.tools import Tools
from foundation.audio import FrameSplitter
from foundation.noise import NoiseSuppressor

log = logging.getLogger("services.gateway.phone")

LINE_RATE_HZ = 8000
LINE_FRAME_MS = 20
LINE_FRAME_BYTES = LINE_RATE_HZ * LINE_FRAME_MS // 1000 * 2
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True)
class PhoneOptions:
    """How calls are held: noise suppression on the caller's audio, and the silence (s) after
    which we hang up (0: only the caller hangs up)."""

    noise_suppression: bool = True
    idle_hangup_s: float = 60.0
    # The gateway's tools (GATEWAY_MCP_CONFIG, GATEWAY_TIME_ZONE) for the calls' conversations.
    tools: Tools | None = None


def dtmf_text(digit: str) -> str:
    """What the model is told of a key the caller pressed."""
    return f"[the caller pressed {digit}]"


class LinePlayback:
    """The phone line's speaker, as the conversation sees it: reply audio waits here and the
    door's 20 ms clock takes it out (``take``); ``clear`` drops what was not sent."""

    sample_rate_hz = LINE_RATE_HZ

    def __init__(self) -> None:
        self._pending = bytearray()
        self.played_samples = 0
        self.on_clear: Callable[[], None] = lambda: None

    def write(self, pcm: bytes) -> None:
        self._pending += pcm

    def flush_pending(self) -> None:
        pass

    def clear(self) -> None:
        self._pending.clear()
        self.on_clear()  # the reply was cut: a far end that holds audio of its own drops it

    @property
    def buffered_samples(self) -> int:
        return len(self._pending) // 2

    def take(self) -> bytes | None:
        """The next 20 ms of reply audio (the last piece padded with silence), or None when quiet."""
        if not self._pending:
            return None
        piece = bytes(self._pending[:LINE_FRAME_BYTES])
        del self._pending[:LINE_FRAME_BYTES]
        self.played_samples += len(piece) // 2
        return piece.ljust(LINE_FRAME_BYTES, b"\0")


class PhoneCall(Events):
    """One call's conversation: the caller's audio in (``hear``), keys (``pressed``), the reply out
    through ``playback``; ``reply_done`` and ``hang_up_due`` tell the door what to do."""

    def __init__(self, call_id: str, door: str, base: ConversationSettings, options: PhoneOptions) -> None:
        self.call_id = call_id
        self.door = door
        self.options = options
        self.playback = LinePlayback()
        self._noise = NoiseSuppressor(LINE_RATE_HZ) if options.noise_suppression else None
        self._frames = FrameSplitter(LINE_RATE_HZ)
        self._conversation = Conversation(base, self.playback, self._show, events=self, tools=options.tools)
        self.on_reply_done: Callable[[Turn], None] = lambda turn: None
        self.turns = 0
        self.digits = ""
        self._started = time.monotonic()
        self._active_at = self._started  # when either side last spoke

    def start(self) -> None:
        self._conversation.start()
        self._log("call started", noise_suppression=self.options.noise_suppression)

    def hear(self, pcm: bytes) -> None:
        """The caller's audio: LINEAR16 at 8 kHz, any length."""
        if self._noise is not None:
            pcm = self._noise.process(pcm)
        for frame in self._frames.feed(pcm):
            self._conversation.feed(frame)
        if self._conversation.busy or self.playback.buffered_samples:
            self._active_at = time.monotonic()

    def pressed(self, digit: str) -> None:
        """A key the caller pressed: the model hears of it as a turn of its own."""
        self.digits += digit
        self._log("key pressed", digit=digit)
        conversation = self._conversation
        conversation.ask(dtmf_text(digit), {"transcript_final": conversation.now_ms()})

    @property
    def hang_up_due(self) -> bool:
        idle = self.options.idle_hangup_s
        return idle > 0 and time.monotonic() - self._active_at >= idle

    async def close(self, why: str) -> None:
        await self._conversation.close()
        self._log(
            "call ended",
            why=why,
            duration_s=round(time.monotonic() - self._started, 1),
            turns=self.turns,
            digits=self.digits,
        )

    # -- the conversation's events ------------------------------------------------------------
    def speech_started(self, at_ms: float) -> None:
        self._active_at = time.monotonic()

    def reply_done(self, turn: Turn) -> None:
        self._active_at = time.monotonic()
        self.on_reply_done(turn)

    def reported(self, line: dict[str, object]) -> None:
        self.turns += 1
        self._log("turn", report=line)

    def _show(self, kind: str, text: str) -> None:
        if kind in ("you", "ai", "note"):
            self._log(kind if kind != "note" else "note", text=text)

    def _log(self, message: str, **fields: object) -> None:
        log.info(message, extra={"door": self.door, "call": self.call_id, **fields})
