"""The gateway's page in a real browser (Debian's headless Chromium) with a fake microphone fed
from real speech: it talks with the real services through ``/v1/realtime``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.browser import microphone, talk
from harness.gateway_stack import Stack
from harness.speech import english, wer

# The page stops its speaker within this of hearing that the user speaks (a few render quanta).
STOP_S = 0.05


async def test_the_page_holds_a_conversation_and_is_interrupted(stack: Stack, tmp_path: Path) -> None:
    first, over, last = english()[:3]
    mic = tmp_path / "microphone.wav"
    # The second recording starts 1.3 s after the first: over the reply to it, which it interrupts.
    microphone(mic, [1.5, first, 1.3, over, 12.0, last, 10.0])
    record = await asyncio.to_thread(talk, f"http://127.0.0.1:{stack.ports.http}/", mic, 3, 150)
    print(record["log"])
    print("voice-to-voice in the page (ms):", [t["latency_ms"] for t in record["turns"]])
    you, ai = record["you"], record["ai"]
    assert len(you) == 3 and len(ai) == 3, record
    for rec, said in zip((first, over, last), you, strict=True):
        assert wer(rec.text, said) <= 0.3, (rec.text, said)
    assert [reply["status"] for reply in ai] == ["cancelled", "completed", "completed"], ai
    # The two replies heard in full played audio, and the page measured each one's latency.
    played = list(record["played"].values())
    assert len(played) == 3 and all(samples > 0 for samples in played), played
    assert all(samples > 24_000 * 0.5 for samples in played[1:]), played
    assert all(0 < t["latency_ms"] < 10_000 for t in record["turns"]), record["turns"]
    # What the speaker sounded: the reply was sounding when the server heard the user start over
    # it, and fell silent then. The page had up to the server's lead and its jitter buffer (about
    # 0.3 s) scheduled ahead, which only the page can stop. (What the server sends after that,
    # before its barge-in pauses the reply, plays in turn: the server does not know yet.)
    sounding = [(start, end if end is not None else float("inf")) for start, end in record["sounding"]]
    cut = [(at, end) for at in record["heard_at"] for start, end in sounding if start < at < end + 0.3]
    assert len(cut) == 1, (record["heard_at"], sounding)
    at, end = cut[0]
    assert end <= at + STOP_S, (at, sounding)
