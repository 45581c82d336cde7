"""The reply player: writes a reply's audio to the speaker as it comes, pauses, resumes from the
sample it stopped at, stops, and says how much of the reply's text was heard.

It keeps the audio of the reply in progress only (a paused reply resumes from it), and lets go
of it when the reply is over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from conversation.messages import AudioChunk


class Output(Protocol):
    """Where the reply's audio goes: a front end's speaker, or a WAV recording."""

    sample_rate_hz: int

    def write(self, pcm: bytes) -> None: ...
    def flush_pending(self) -> None: ...
    def clear(self) -> None: ...
    @property
    def played_samples(self) -> int: ...
    @property
    def buffered_samples(self) -> int: ...


@dataclass
class _Piece:
    text: str
    start: int  # sample of the reply's audio where it begins
    samples: int = 0


@dataclass
class Reply:
    """The audio of one reply, as synthesized so far, and how much of it was played."""

    turn_id: int
    audio: bytearray = field(default_factory=bytearray)
    pieces: list[_Piece] = field(default_factory=list)
    played: int = 0  # samples played, as of the last stop (pause, barge-in)
    offset: int = 0  # the speaker sample where the reply's sample 0 is (or would have been)
    started: bool = False  # some of it was written to the speaker

    @property
    def samples(self) -> int:
        return len(self.audio) // 2

    def keep(self, chunk: AudioChunk) -> None:
        if chunk.text or not self.pieces:
            self.pieces.append(_Piece(chunk.text, self.samples))
        self.pieces[-1].samples += len(chunk.pcm) // 2
        self.audio += chunk.pcm

    def heard(self) -> str:
        """The reply's text up to the sample played; a piece cut midway, in proportion."""
        words: list[str] = []
        for piece in self.pieces:
            if self.played >= piece.start + piece.samples:
                words += piece.text.split()
            elif self.played > piece.start and piece.samples:
                cut = piece.text.split()
                words += cut[: round(len(cut) * (self.played - piece.start) / piece.samples)]
                break
            else:
                break
        return " ".join(words)


class ReplyPlayer:
    """Plays one reply at a time on ``speaker``; the times it returns are ms of audio queued ahead."""

    def __init__(self, speaker: Output) -> None:
        self.speaker = speaker
        self.reply: Reply | None = None
        self._written = 0  # speaker samples written (in the speaker's played coordinates)

    def start(self, turn_id: int) -> None:
        """A new reply: the last one's audio is let go."""
        self.reply = Reply(turn_id)

    def end(self, turn_id: int) -> None:
        if self.reply is not None and self.reply.turn_id == turn_id:
            self.reply = None

    def add(self, chunk: AudioChunk, audible: bool) -> float | None:
        """Keep ``chunk`` of the reply, and play it if ``audible``; when it is the first of the
        reply to play, the ms of audio still queued ahead of it."""
        assert self.reply is not None and self.reply.turn_id == chunk.turn_id
        self.reply.keep(chunk)
        return self._write(chunk.pcm) if audible else None

    def stop(self, audible: bool) -> None:
        """Silence the speaker now; an ``audible`` reply remembers how much of it was played."""
        self.speaker.clear()
        played = self.speaker.played_samples
        if audible and self.reply is not None:
            self.reply.played = max(0, min(self.reply.samples, played - self.reply.offset))
        self._written = played

    def play_rest(self) -> float | None:
        """Play the reply from where it stopped (or from its start): as ``add``."""
        reply = self.reply
        assert reply is not None
        reply.offset = self._written - reply.played
        rest = bytes(reply.audio[reply.played * 2 :])
        return self._write(rest) if rest else None

    @property
    def has_rest(self) -> bool:
        """Some of the reply's audio is not played yet."""
        return self.reply is not None and self.reply.samples > self.reply.played

    @property
    def drained(self) -> bool:
        """All that was written has been played."""
        return self.speaker.played_samples >= self._written

    def heard(self) -> str:
        return self.reply.heard() if self.reply is not None else ""

    def _write(self, pcm: bytes) -> float | None:
        reply = self.reply
        assert reply is not None
        ahead_ms = None
        if not reply.started:
            reply.started = True
            reply.offset = self._written - reply.played  # where the reply's sample 0 is on the speaker
            ahead_ms = self.speaker.buffered_samples * 1000 / self.speaker.sample_rate_hz
        self.speaker.write(pcm)
        self._written += len(pcm) // 2
        return ahead_ms
