"""Running the edge client on files, as a user or another program would."""

from __future__ import annotations

import asyncio
import bisect
import io
import itertools
import json
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conversation import Conversation, State
from conversation.tools import Tools
from edge_client.config import EdgeSettings
from edge_client.files import WavOutput
from foundation.audio import FRAME_BYTES, FRAME_MS, RATE_HZ, frames
from foundation.audio import silence as silence
from harness.speech import REPO


def write_wav(path: Path, pcm: bytes, rate_hz: int = RATE_HZ) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm)
    return path


@dataclass
class Session:
    turns: list[dict[str, object]]
    output: np.ndarray  # float32 mono
    output_rate_hz: int
    stderr: str
    # In process (``converse``): (time.monotonic(), the conversation's clock in ms) at each frame.
    clock: list[tuple[float, float]] = field(default_factory=list)

    @property
    def samples(self) -> np.ndarray:
        """The output as the int16 samples that were written."""
        return np.round(self.output * 32768).astype(np.int16)

    def audible(self, threshold: float = 0.02) -> np.ndarray:
        """Start times (ms) of the output's 10 ms windows louder than ``threshold`` RMS."""
        return loud_windows_ms(self.output, self.output_rate_hz, 20 * np.log10(threshold))

    def ms_at(self, monotonic_s: float) -> float:
        """The conversation's clock (ms since the first microphone sample) at ``time.monotonic()``
        ``monotonic_s``: from the last frame fed before it, plus the time since."""
        at = max(0, bisect.bisect_right([s for s, _ in self.clock], monotonic_s) - 1)
        fed_s, fed_ms = self.clock[at]
        return fed_ms + (monotonic_s - fed_s) * 1000


def loud_windows_ms(audio: np.ndarray, rate_hz: int, dbfs: float, window_ms: int = 10) -> np.ndarray:
    """Start times (ms) of the windows of float ``audio`` whose RMS level is above ``dbfs``."""
    size = rate_hz * window_ms // 1000
    frames = audio[: len(audio) // size * size].reshape(-1, size)
    level = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-12))
    return np.flatnonzero(level > dbfs) * window_ms


def command(tmp: Path, input_pcm: bytes, *args: str) -> list[str]:
    """``voice-agent --input in.wav --output out.wav --report turns.jsonl ARGS`` in ``tmp``."""
    wav_in = write_wav(tmp / "in.wav", input_pcm)
    return [sys.executable, "-m", "edge_client", "--input", str(wav_in), "--output", str(tmp / "out.wav"),
            "--report", str(tmp / "turns.jsonl"), *args]  # fmt: skip


def voice_agent(tmp: Path, input_pcm: bytes, *args: str, timeout: float = 300) -> Session:
    """Run ``command`` to its end; what it wrote."""
    done = subprocess.run(
        command(tmp, input_pcm, *args), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return read_session(tmp / "out.wav", tmp / "turns.jsonl", done.stderr)


def read_session(out: Path, report: Path | None, stderr: str = "") -> Session:
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    turns = [json.loads(line) for line in report.read_text().splitlines() if line] if report else []
    return Session(turns, audio, rate, stderr)


def frames_of(pcm: bytes) -> list[bytes]:
    """``pcm`` as 30 ms frames, the last padded with silence."""
    return frames(pcm)


async def converse(
    settings: EdgeSettings,
    tmp: Path,
    frames: Callable[[Conversation], AsyncIterator[bytes]],
    timeout_s: float = 120,
    tools: Tools | None = None,
) -> tuple[Conversation, Session]:
    """A conversation in this process, fed ``frames(conversation)`` in real time, recorded to a WAV.

    The session's turns are the conversation's report, a line each; its ``stderr`` holds what
    the conversation showed, a line each: ``kind: text``.
    """
    output = WavOutput(tmp / "out.wav", settings.output_rate_hz)
    shown: list[str] = []
    report = io.StringIO()
    conversation = Conversation(
        settings, output, lambda kind, text: shown.append(f"{kind}: {text}\n"), report=report, tools=tools
    )
    clock: list[tuple[float, float]] = []

    async def paced() -> AsyncIterator[bytes]:
        async for frame in frames(conversation):
            output.advance(FRAME_MS / 1000)
            yield frame
            clock.append((time.monotonic(), conversation.now_ms()))  # the frame is fed
            await asyncio.sleep(FRAME_MS / 1000)

    conversation.start()
    try:
        await asyncio.wait_for(conversation.listen(paced()), timeout_s)
    finally:
        await conversation.close()
        output.close()
    session = read_session(tmp / "out.wav", None, "".join(shown))
    session.turns = [json.loads(line) for line in report.getvalue().splitlines() if line]
    session.clock = clock
    return conversation, session


@dataclass(frozen=True)
class Stretch:
    """Part of a reply played without a gap: its samples ``reply[first:end]`` at ``output[at:until]``."""

    first: int
    end: int
    at: int
    until: int


def played_in_order(output: np.ndarray, reply: np.ndarray, start: int = 0) -> list[Stretch]:
    """Check that all of ``reply`` (int16) was played into ``output`` (int16) from sample ``start``
    on, once, sample for sample, in order, with only silence before and within it (a pause, or
    the speaker waiting for audio); the stretches it played in, cut where silence was added.
    """
    sounding = np.flatnonzero(reply)
    assert sounding.size, "the reply is silent"
    at = (np.flatnonzero(output[start:]) + start)[: sounding.size]
    same = min(at.size, sounding.size)
    wrong = np.flatnonzero(output[at[:same]] != reply[sounding[:same]])
    assert at.size == sounding.size and not wrong.size, (
        f"the reply ({len(reply)} samples) was not played as synthesized: it differs from its sample"
        f" {sounding[wrong[0]] if wrong.size else sounding[same] if same < sounding.size else None}"
        f" (played {same} of its {sounding.size} sounding samples)"
    )
    shift = at - sounding
    cuts = [0, *(np.flatnonzero(np.diff(shift)) + 1).tolist(), sounding.size]
    stretches = []
    for a, b in itertools.pairwise(cuts):
        first = 0 if a == 0 else int(sounding[a])
        end = len(reply) if b == sounding.size else int(sounding[b - 1]) + 1
        stretches.append(Stretch(first, end, first + int(shift[a]), end + int(shift[a])))
    return stretches


def played_up_to(output: np.ndarray, reply: np.ndarray, start: int = 0) -> list[Stretch]:
    """Check that the start of ``reply`` (int16), and nothing else, was played into ``output``
    (int16) from sample ``start`` on, as ``played_in_order`` checks all of it: the stretches it
    played in, the last one ending where the sound stopped."""
    heard = int(np.count_nonzero(output[start:]))
    sounding = np.flatnonzero(reply)
    assert heard <= sounding.size, f"{heard} samples sounded, more than the reply's {sounding.size}"
    assert heard, "nothing of the reply was played"
    return played_in_order(output, reply[: sounding[heard - 1] + 1], start)


async def while_(condition: Callable[[], bool], limit_s: float = 120) -> AsyncIterator[bytes]:
    """Silent frames while ``condition`` holds (at most ``limit_s``)."""
    for _ in range(int(limit_s * 1000 / FRAME_MS)):
        if not condition():
            return
        yield bytes(FRAME_BYTES)


def speaking_for(conversation: Conversation, ms: float) -> bool:
    """The agent has been speaking its reply for ``ms``."""
    turn = conversation.current
    start = turn.t_ms.get("first_audio") if turn is not None else None
    return conversation.state == State.SPEAKING and start is not None and conversation.now_ms() - start >= ms


Frames = Callable[[Conversation], AsyncIterator[bytes]]


def then_quiet(pcm: bytes, limit_s: float = 120) -> Frames:
    """``pcm``, then silence while the agent is busy (at most ``limit_s``)."""

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        for frame in frames_of(pcm):
            yield frame
        async for frame in while_(lambda: conversation.busy, limit_s):
            yield frame

    return frames


def over_the_reply(question: bytes, said: bytes, spoke_at: list[float], limit_s: float = 120) -> Frames:
    """``question``, then ``said`` once the reply has played for a second (its start appended to
    ``spoke_at``), then silence while the agent is busy (at most ``limit_s``)."""

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        for frame in frames_of(question + silence(1.0)):
            yield frame
        async for frame in while_(lambda: not speaking_for(conversation, 1000), 15):
            yield frame
        spoke_at.append(conversation.now_ms() + FRAME_MS)
        async for frame in then_quiet(said, limit_s)(conversation):
            yield frame

    return frames
