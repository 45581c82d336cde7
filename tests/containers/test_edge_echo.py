"""Open speakers: the edge client on files in a simulated room, against the composed services.

The room plays the recorded output back into the next input frames (``--echo-db``):
with the echo canceller the agent does not hear itself; without it, it interrupts itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jiwer

from conversation import Conversation, State
from edge_client.config import EdgeSettings
from edge_client.echo import EchoCanceller
from edge_client.files import WavOutput
from edge_client.room import Room
from foundation.audio import FRAME_MS
from harness.edge import command, read_session, silence, voice_agent
from harness.speech import REPO, Recording, english, normalize, wer
from harness.turns import word_ends_s

MAX_CLIP_WER = 0.3
FRAME_BYTES = 16000 * FRAME_MS // 1000 * 2
ECHO = ("--echo-db", "-6", "--echo-delay-ms", "80")
ECHO_DELAY_S = 0.08


def two_questions() -> bytes:
    first, second = english()[7], english()[4]
    return silence(0.5) + first.pcm() + silence(14.0) + second.pcm() + silence(1.0)


async def test_on_open_speakers_two_turns_stay_two_turns(stack: None, tmp_path: Path) -> None:
    session = await asyncio.to_thread(
        voice_agent, tmp_path, two_questions(), "--fast", "--max-tokens", "40", *ECHO
    )
    assert [t["interrupted"] for t in session.turns] == [False, False], session.stderr
    for turn, rec in zip(session.turns, (english()[7], english()[4]), strict=True):
        assert wer(rec.text, str(turn["user_text"])) <= MAX_CLIP_WER, turn
        assert str(turn["agent_text"]).strip(), turn
    assert session.audible().size > 100  # the replies did play, into the room


def test_without_the_canceller_the_agent_interrupts_itself(stack: None, tmp_path: Path) -> None:
    """The agent hears its own voice: it pauses for it, or takes it for the user's words and answers it.

    Left alone it would talk to itself for ever, so it is stopped (Ctrl+C) 10 s after the input.
    """
    pcm = two_questions()
    proc = subprocess.Popen(
        command(tmp_path, pcm, "--max-tokens", "40", "--aec", "off", *ECHO),
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(len(pcm) / 32000 + 10)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    session = read_session(tmp_path / "out.wav", tmp_path / "turns.jsonl", stderr)
    heard_itself = [t for t in session.turns if t["interrupted"] or "resumed" in t["t_ms"]]  # type: ignore[operator]
    assert heard_itself or len(session.turns) > 2, session.turns


async def test_speaking_over_the_echo_still_cuts_the_reply_short(stack: None, tmp_path: Path) -> None:
    """In the room, the user speaks once the reply has played for 2 s: it stops, as with a headset."""
    question, interruption = english()[0], english()[4]
    settings = EdgeSettings(system_prompt="Tell a long story of at least six sentences.")
    room, echo = Room(echo_db=-6.0, delay_ms=80), EchoCanceller()
    output = WavOutput(tmp_path / "out.wav", settings.output_rate_hz, taps=[room.played, echo.played])
    report = io.StringIO()
    conversation = Conversation(settings, output, lambda kind, text: None, report)
    conversation.barge_in_ms = echo.barge_in_ms
    spoke_at: list[float] = []

    async def frames() -> AsyncIterator[bytes]:
        pcm = question.pcm() + silence(1.0)
        speaking = 0
        while speaking < 2000 / FRAME_MS and conversation.now_ms() < 30_000:
            speaking = speaking + 1 if conversation.state == State.SPEAKING else 0
            frame, pcm = pcm[:FRAME_BYTES], pcm[FRAME_BYTES:]
            yield frame.ljust(FRAME_BYTES, b"\0")
        spoke_at.append(conversation.now_ms() + FRAME_MS)
        pcm = interruption.pcm() + silence(1.0)
        while pcm or conversation.busy:
            frame, pcm = pcm[:FRAME_BYTES], pcm[FRAME_BYTES:]
            yield frame.ljust(FRAME_BYTES, b"\0")

    async def in_the_room() -> AsyncIterator[bytes]:
        async for frame in frames():
            yield echo.clean(room.mic(frame))
            output.advance(FRAME_MS / 1000)
            await asyncio.sleep(FRAME_MS / 1000)

    conversation.start()
    await asyncio.wait_for(conversation.listen(in_the_room()), 120)
    await conversation.close()
    output.close()
    session = read_session(tmp_path / "out.wav", None)
    turns = [json.loads(line) for line in report.getvalue().splitlines()]

    first = turns[0]
    t = first["t_ms"]
    assert isinstance(t, dict) and spoke_at, turns
    assert echo.converged and first["interrupted"] is True and t["first_audio"] < spoke_at[0] < t["barge_in"]
    late = session.audible()
    assert late[(late > t["barge_in"] + 100) & (late < t["barge_in"] + 2000)].size == 0
    # Later than with a headset (there: barge_in_ms + 200): while the user's first syllables
    # overlap the reply, the canceller's suppressor takes them out with the echo (bench/aec).
    # Measured 0.3-1.74 s into the interruption on 2 cores (the slowest under the whole suite's
    # load). But it is a barge-in: the reply stops while the user is still speaking, before the
    # last word begins (once the echo has died away), or nothing is left to hear and the cut is
    # no barge-in.
    stop_s = (t["barge_in"] - spoke_at[0]) / 1000
    starts = word_starts_s(interruption)
    after = sum(start >= stop_s + ECHO_DELAY_S for start in starts)
    said = normalize(str(turns[1]["user_text"]))
    print(f"the reply stopped {stop_s:.2f} s into the interruption (words from {starts} s); heard {said!r}")
    assert after >= 1, (stop_s, starts, t)
    # The words begun after the stop are heard, in the next turn: none is lost, and at least half
    # come exactly. Whisper, given the sentence from its middle, may mishear the others: after
    # stops at 0.96 s and 1.74 s, "amiable" came as "Amy a bull". The words spoken over the reply
    # before the stop may be lost (see README, Echo cancellation).
    reference = normalize(interruption.text).split()
    assert len(reference) == len(starts), (reference, starts)
    heard = jiwer.process_words(" ".join(reference[-after:]), said)
    assert heard.deletions == 0 and heard.hits >= after / 2, (reference[-after:], said)


def word_starts_s(rec: Recording) -> list[float]:
    """Where each word of ``rec`` begins (s): where Whisper heard the one before it end."""
    ends = [end for _, end in word_ends_s(rec)]
    return [0.0, *(round(float(end), 2) for end in ends[:-1])]
