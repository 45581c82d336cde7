"""Each service restarted at the worst moments of a spoken conversation: nothing lost, nothing said twice.

Nine cases: STT, LLM and TTS each killed and started again while the user is
silent, while the user speaks, and while the agent is replying. The conversation
runs in this process on real speech in real time, so each fault is set off by
what it observes: the middle of the user's words, the chat model's first word
(the chat service killed mid-generation), the reply's first audio playing (speech
synthesis killed with the reply's text still coming), half a second of playback
(the speech service killed while the agent speaks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conversation import Conversation, State
from edge_client.config import EdgeSettings
from harness.edge import converse, frames_of, played_in_order, silence, speaking_for, while_
from harness.speech import english, normalize, wer
from harness.tap import tapped
from tests.containers.conftest import compose

MAX_CLIP_WER = 0.3
LEAD_S = 2.0  # silence before the first utterance
# Past a restart, a turn waits at most this much longer (the brief's bound: restart time + 3 s).
SLACK_S = 3.0
# A reply long enough to be still generated and synthesized when a kill set off by its start lands.
PROMPT = "Tell a long story of at least six sentences."
MAX_TOKENS = {"replying": 120}

CASES = [
    (service, moment) for service in ("stt", "llm", "tts") for moment in ("silent", "speaking", "replying")
]


def _replying(service: str) -> Callable[[Conversation], bool]:
    """When the agent is in the middle of its reply, as this service sees it."""

    def now(conversation: Conversation) -> bool:
        turn = conversation.current
        if turn is None:
            return False
        if service == "llm":
            return "first_token" in turn.t_ms
        if service == "tts":
            return conversation.state == State.SPEAKING
        return speaking_for(conversation, 500)

    return now


@dataclass
class Fault:
    restart_s: float = 0.0
    killed_at_ms: float = 0.0
    killed_at_s: float = 0.0  # time.monotonic()
    # Where the user's speech began, of the agent's turn in progress when the kill landed.
    replying_to_ms: float | None = None
    state: State = State.LISTENING


async def _restart(service: str, conversation: Conversation, fault: Fault) -> None:
    started = time.monotonic()
    await asyncio.to_thread(compose, "kill", service)
    fault.killed_at_ms, fault.killed_at_s = conversation.now_ms(), time.monotonic()
    turn = conversation.current
    fault.replying_to_ms = None if turn is None else turn.t_ms.get("speech_start")
    fault.state = conversation.state
    await asyncio.to_thread(compose, "up", "-d", "--wait", service)
    fault.restart_s = time.monotonic() - started


@pytest.mark.parametrize(("service", "moment"), CASES)
async def test_a_restart_loses_nothing_and_repeats_nothing(
    stack: None, tmp_path: Path, service: str, moment: str
) -> None:
    first, second = english()[1], english()[4]
    settings = EdgeSettings(system_prompt=PROMPT, max_tokens=MAX_TOKENS.get(moment, 40))
    fault = Fault()
    tasks: list[asyncio.Task[None]] = []
    speaking_at_ms = (LEAD_S + first.duration_s / 2) * 1000
    due: Callable[[Conversation], bool] = {
        "silent": lambda c: c.now_ms() >= 500,
        "speaking": lambda c: c.now_ms() >= speaking_at_ms,
        "replying": _replying(service),
    }[moment]

    async def frames(conversation: Conversation) -> AsyncIterator[bytes]:
        def fault_due() -> None:
            if not tasks and due(conversation):
                tasks.append(asyncio.create_task(_restart(service, conversation, fault)))

        for frame in frames_of(silence(LEAD_S) + first.pcm() + silence(1.0)):
            fault_due()
            yield frame
        async for frame in while_(lambda: conversation.busy or not tasks, 90):
            fault_due()
            yield frame
        for frame in frames_of(second.pcm() + silence(1.0)):
            yield frame
        async for frame in while_(lambda: conversation.busy or not tasks[0].done(), 120):
            yield frame

    async with tapped(settings) as (settings, taps):
        _, session = await converse(settings, tmp_path, frames, timeout_s=300)
    assert tasks and tasks[0].done(), "the fault never came"
    tasks[0].result()
    shown = session.stderr
    # Each reported turn's id, as the chat service was asked it.
    ids = [taps.llm.turn_id(str(turn["user_text"])) for turn in session.turns]

    # The kill landed where it was meant to.
    if moment == "replying":
        t0 = session.turns[0]["t_ms"] if session.turns else {}
        assert isinstance(t0, dict) and fault.replying_to_ms == t0.get("speech_start"), (fault, shown)
        if service == "tts":
            synthesized_at = taps.tts.synthesized_at(ids[0])
            assert synthesized_at is None or synthesized_at > fault.killed_at_s, (
                "the reply was all synthesized before the kill landed"
            )
        if service == "stt":
            assert fault.state == State.SPEAKING, fault
    else:
        assert fault.replying_to_ms is None, fault
        words_ms = (LEAD_S + first.duration_s) * 1000
        assert (fault.killed_at_ms < LEAD_S * 1000) == (moment == "silent") and fault.killed_at_ms < words_ms

    # Every utterance has exactly one reply, in order, and the client said what happened.
    assert len(session.turns) == 2, shown
    assert shown.count("ai: ") == 2, shown
    assert f"the {service} service" in shown, shown
    for turn, rec in zip(session.turns, (first, second), strict=True):
        assert wer(rec.text, str(turn["user_text"])) <= MAX_CLIP_WER, turn
        t = turn["t_ms"]
        assert isinstance(t, dict) and not turn["interrupted"], turn
        assert str(turn["agent_text"]).strip() and "first_audio" in t, turn
        if (service, moment) != ("llm", "replying") or turn is session.turns[1]:
            assert "error" not in turn, turn
            assert t["first_audio"] - t["speech_end"] <= (fault.restart_s + SLACK_S) * 1000, (turn, fault)
    if (service, moment) == ("llm", "replying"):
        # Killed mid-generation: the reply ends with its first words, marked, and is not asked again.
        assert "chat service" in str(session.turns[0].get("error", "")), session.turns[0]
        assert "[the chat service failed" in shown, shown

    # Each reply was played once, sample for sample as the speech service delivered it, over
    # every stream; and each piece of its text was synthesized once, in order: no sentence is
    # heard twice (the pieces' words are the reply's words, once each).
    at = 0
    for turn, turn_id in zip(session.turns, ids, strict=True):
        pieces = taps.tts.pieces(turn_id)
        spoken = " ".join(piece.text for piece in pieces)
        assert normalize(spoken).split() == normalize(str(turn["agent_text"])).split(), (
            [piece.text for piece in pieces],
            turn["agent_text"],
        )
        at = played_in_order(session.samples, taps.tts.audio(turn_id), start=at)[-1].until
    assert not session.samples[at:].any(), "something played after the last reply"
