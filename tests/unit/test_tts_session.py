"""The synthesis stream's plumbing, on an engine whose pieces the test holds back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from services.tts.engine import Samples, VoiceInfo, VoiceRequest
from services.tts.session import Audio, Cancel, Command, Done, Flush, SynthesisSession, Text, resolve_options


class HeldEngine:
    """100 ms of sound per piece; a piece that says "Slow" waits until the test releases it."""

    def __init__(self) -> None:
        self.slow_started = threading.Event()
        self.release = threading.Event()

    def load(self) -> None:
        pass

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("held", "piper", ("en",), 16000)]

    def synthesize(self, text: str, request: VoiceRequest) -> Samples:
        if "Slow" in text:
            self.slow_started.set()
            self.release.wait(10)
        return np.full(1600, 3000, dtype=np.int16)


async def test_a_cancelled_piece_does_not_hold_up_the_next_turn() -> None:
    engine = HeldEngine()
    options = resolve_options(engine.voices(), "", 16000, 0.0, "")
    commands: asyncio.Queue[Command | None] = asyncio.Queue()

    async def feed() -> AsyncIterator[Command]:
        while (command := await commands.get()) is not None:
            yield command

    async def until_turn_2_is_done(events: AsyncIterator[object]) -> list[object]:
        got = []
        async for event in events:
            got.append(event)
            if isinstance(event, Done) and event.turn_id == 2:
                return got
        raise AssertionError("the stream ended first")

    with ThreadPoolExecutor(2) as executor:
        events = SynthesisSession(engine, options, executor).run(feed())
        reading = asyncio.create_task(until_turn_2_is_done(events))
        try:
            commands.put_nowait(Text("Slow. ", 1))
            commands.put_nowait(Flush(1))
            assert await asyncio.to_thread(engine.slow_started.wait, 5)
            # The user went on: turn 1 is withdrawn while its piece is being synthesized.
            for command in (Cancel(1), Text("The answer.", 2), Flush(2)):
                commands.put_nowait(command)
            got = await asyncio.wait_for(reading, 5)
            # Turn 2 was spoken while turn 1's piece was still being synthesized.
            assert not engine.release.is_set()
        finally:
            engine.release.set()
            commands.put_nowait(None)
    assert [(type(e).__name__, getattr(e, "turn_id", None)) for e in got] == [
        ("Done", 1),
        ("Audio", 2),
        ("Done", 2),
    ]
    assert isinstance(got[0], Done) and got[0].cancelled
    assert isinstance(got[1], Audio) and got[1].text == "The answer."
