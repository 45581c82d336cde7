"""The gateway's page in a real browser (Debian's headless Chromium) with a fake microphone fed
from real speech: it talks with the real services through ``/v1/realtime``.

What the page showed is taken from a recorder the harness puts in before the page's own script
(``harness.browser``): the events the gateway sent, the state shown, the level meter, the words."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from pydantic import SecretStr
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from foundation.audio import FRAME_MS
from harness.browser import PHONE, microphone, page, record, talk
from harness.gateway_stack import NOWHERE, Stack, gateway_settings
from harness.speech import Recording, english, wer
from services.gateway.server import running_gateway

# The page stops its speaker within this of hearing that the user speaks (a few render quanta).
STOP_S = 0.05
# ...and stays silent this long after (the next reply takes longer to come).
AFTER_CUT_S = 0.8
# The two-turn conversation's screenshot, for a person to look at (not compared with anything).
SCREENSHOT = Path(__file__).parents[2] / "bench" / "results" / "page" / "two_turns.png"
# The agent's state through one spoken turn, from listening.
TURN = ["hearing you", "thinking", "speaking", "listening"]
# The meter while speech plays: well up, and moving.
LOUD, MOVES = 0.3, 5


@dataclass(frozen=True)
class Talk:
    said: list[Recording]
    record: dict[str, Any]

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The events of ``kind`` the gateway sent the page, each with ``at``: when it arrived."""
        return [e for e in self.record["seen"]["events"] if e["type"] == kind]

    def entries(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.record["shown"]["entries"] if e["kind"] == kind]


@pytest.fixture(scope="module")
async def two_turns(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Talk]:
    """Two spoken turns, each answered in full before the next: the page's record of them."""
    said = english()[3:5]
    mic = tmp_path_factory.mktemp("page") / "microphone.wav"
    microphone(mic, [1.5, said[0], 16.0, said[1], 12.0])
    url = f"http://127.0.0.1:{stack.ports.http}/"
    SCREENSHOT.unlink(missing_ok=True)
    result = await asyncio.to_thread(talk, url, mic, 2, 150, SCREENSHOT)
    print(result["log"])
    print("screenshot:", SCREENSHOT)
    yield Talk(said, result)


def test_the_level_meter_moves_while_speech_plays_and_rests_in_silence(two_turns: Talk) -> None:
    levels = [(level["at"], level["value"]) for level in two_turns.record["seen"]["levels"]]
    started = [e["at"] for e in two_turns.events("input_audio_buffer.speech_started")]
    stopped = [e["at"] for e in two_turns.events("input_audio_buffer.speech_stopped")]
    assert len(started) == len(stopped) == 2, two_turns.record["seen"]["events"]
    for at in started:
        during = [value for t, value in levels if at <= t <= at + 1.0]
        assert max(during) >= LOUD and len({round(v, 2) for v in during}) >= MOVES, during
    # The microphone is silent for 1.5 s before the first words, and for 16 s and 12 s after them:
    # from the server's speech_stopped (some silence after the words) on for 3 s.
    opened = two_turns.events("session.created")[0]["at"]
    quiet = [value for t, value in levels if opened <= t <= opened + 0.8]
    quiet += [value for at in stopped for t, value in levels if at + 0.3 <= t <= at + 3.0]
    assert len(quiet) > 100 and max(quiet) == 0, quiet


def _changes(states: list[str]) -> list[str]:
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def test_the_state_goes_listening_hearing_thinking_speaking_listening(two_turns: Talk) -> None:
    shown = two_turns.record["seen"]["states"]
    sent = two_turns.events("voice_agent.state")
    states = _changes([s["state"] for s in shown])
    assert states[:3] == ["not connected", "connecting", "listening"], states
    # The page shows the state the gateway's conversation is in, as it arrives.
    assert states[3:] == _changes([e["state"] for e in sent]), (states, sent)
    for event in sent:
        assert [s for s in shown if s["state"] == event["state"] and 0 <= s["at"] - event["at"] <= 0.03], (
            event,
            shown,
        )
    # The core says "listening" at the end of the words while their transcript is still on its way
    # (a slow STT service): then thinking follows.
    cycle = " ".join(states[3:]).replace("hearing you listening thinking", "hearing you thinking")
    assert cycle == " ".join(TURN * 2), states


def test_the_conversation_shows_both_sides_as_it_happens(two_turns: Talk) -> None:
    kinds = [e["kind"] for e in two_turns.record["shown"]["entries"]]
    assert kinds == ["you", "ai", "you", "ai"], two_turns.record["shown"]
    # Your words as the gateway recognised them.
    heard = [
        e["transcript"] for e in two_turns.events("conversation.item.input_audio_transcription.completed")
    ]
    assert [e["text"] for e in two_turns.entries("you")] == heard
    for rec, text in zip(two_turns.said, heard, strict=True):
        assert wer(rec.text, text) <= 0.3, (rec.text, text)
    # The agent's words as the gateway sent them, shown while it speaks (before its reply is done).
    done = two_turns.events("response.done")
    said = [
        item["content"][0]["transcript"]
        for e in done
        for item in e["response"]["output"]
        if item["type"] == "message"
    ]
    assert all(said) and [e["text"] for e in two_turns.entries("ai")] == said
    replies = two_turns.record["seen"]["replies"]
    for i, (event, text) in enumerate(zip(done, said, strict=True)):
        early = [r["text"] for r in replies if r["entry"] == i and r["at"] < event["at"] and r["text"]]
        assert early and all(text.startswith(e.strip()) for e in early), (text, early)


def test_each_turn_shows_its_time_split_as_the_gateway_measured_it(two_turns: Talk) -> None:
    times = [e["times"] for e in two_turns.entries("ai")]
    turns = two_turns.events("voice_agent.turn")
    stopped = two_turns.events("input_audio_buffer.speech_stopped")
    assert len(times) == len(turns) == len(stopped) == 2, (times, turns)
    for text, turn, stop in zip(times, turns, stopped, strict=True):
        t = turn["t_ms"]
        # The split starts where the server said the speech stopped.
        assert abs(t["speech_end"] - stop["audio_end_ms"]) <= FRAME_MS, (t, stop)
        match = re.fullmatch(
            r"end of speech → words (\d+) ms → first token (\d+) ms → first audio (\d+) ms", text or ""
        )
        assert match, text
        shown = [int(ms) for ms in match.groups()]
        server = [t[k] - t["speech_end"] for k in ("transcript_final", "first_token", "first_audio")]
        assert all(abs(a - b) <= FRAME_MS for a, b in zip(shown, server, strict=True)), (shown, server)
        assert 0 < shown[0] <= shown[1] <= shown[2], shown


def test_a_screenshot_of_the_conversation_is_written(two_turns: Talk) -> None:
    png = SCREENSHOT.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width >= PHONE[0] and height > 400, (width, height)


def test_no_token_field_where_the_gateway_needs_none(two_turns: Talk) -> None:
    assert two_turns.record["shown"]["token_field"] is False
    assert two_turns.record["state"] == "listening"


async def test_a_gateway_that_needs_a_token_asks_for_it_and_never_shows_it(tmp_path: Path) -> None:
    secret = "page-test-token-4f1c"
    settings = gateway_settings(stt_address=NOWHERE, http_tokens=SecretStr(secret))
    mic = tmp_path / "microphone.wav"
    microphone(mic, [20.0])
    async with running_gateway(settings) as ports:

        def visit() -> tuple[bool, str, list[str]]:
            with page(f"http://127.0.0.1:{ports.http}/", mic) as driver:
                field, served = driver.find_element(By.ID, "token"), driver.page_source
                if not field.is_displayed():
                    return False, served, []
                field.send_keys(secret)
                driver.find_element(By.ID, "talk").click()
                states: list[str] = []
                for _ in range(50):
                    states = _changes([s["state"] for s in record(driver)["seen"]["states"]])
                    if "listening" in states:
                        break
                    time.sleep(0.1)
                return True, served + driver.current_url, states

        shown, source, states = await asyncio.to_thread(visit)
    assert shown, "no token field"
    assert secret not in source
    assert "listening" in states, states  # the token it was given let it in


async def test_the_microphone_can_be_muted_and_picked(stack: Stack, tmp_path: Path) -> None:
    said = english()[3]
    mic = tmp_path / "microphone.wav"
    microphone(mic, [1.0, said, 3.0])

    def visit() -> dict[str, Any]:
        with page(f"http://127.0.0.1:{stack.ports.http}/", mic) as driver:
            driver.find_element(By.ID, "mute").click()
            driver.find_element(By.ID, "talk").click()
            time.sleep(1.0 + len(said.pcm()) / 32_000 + 2.0)
            muted = record(driver)
            # Another microphone picked: the page asks the browser for that one.
            Select(driver.find_element(By.ID, "mic")).select_by_index(len(muted["shown"]["microphones"]) - 1)
            for _ in range(50):
                if len(record(driver)["seen"]["microphones"]) > 1:
                    break
                time.sleep(0.1)
            return {**muted, "picked": record(driver)["seen"]["microphones"]}

    result = await asyncio.to_thread(visit)
    seen = result["seen"]
    # Muted: the meter rests and the server hears nothing, while the microphone plays speech.
    assert [e for e in seen["events"] if e["type"] == "session.created"], seen["events"]
    assert not [e for e in seen["events"] if e["type"] == "input_audio_buffer.speech_started"]
    assert max(level["value"] for level in seen["levels"]) == 0
    # The browser's microphones (Chromium's fake ones) to pick from; the one picked is used.
    microphones = result["shown"]["microphones"]
    assert len(microphones) >= 2 and all(microphones), microphones
    assert result["picked"] == [microphones[0], microphones[-1]], (result["picked"], microphones)


async def _typed_turn(url: str) -> list[dict[str, Any]]:
    """The events of one typed turn on ``url``, up to its response.done and a moment after."""
    events: list[dict[str, Any]] = []
    async with websockets.connect(url) as ws:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        async with asyncio.timeout(90):
            while not events or events[-1]["type"] != "response.done":
                events.append(json.loads(await ws.recv()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while True:
                    events.append(json.loads(await ws.recv()))
    return events


async def test_the_gateways_own_events_go_only_to_a_client_that_asks(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime"
    asked = await _typed_turn(f"{url}?voice_agent_events=true")
    states = _changes([e["state"] for e in asked if e["type"] == "voice_agent.state"])
    assert states == ["thinking", "speaking", "listening"], states
    done = next(e for e in asked if e["type"] == "response.done")
    turns = [e for e in asked if e["type"] == "voice_agent.turn"]
    assert len(turns) == 1 and turns[0]["response_id"] == done["response"]["id"], turns
    assert {"transcript_final", "first_token", "first_audio"} <= set(turns[0]["t_ms"]), turns
    plain = await _typed_turn(url)
    assert not [e for e in plain if e["type"].startswith("voice_agent.")], [e["type"] for e in plain]


async def test_the_page_holds_a_conversation_and_is_interrupted(stack: Stack, tmp_path: Path) -> None:
    first, over, last = english()[:3]
    mic = tmp_path / "microphone.wav"
    # The second recording starts 3 s after the first: over the reply to it (once it sounds, which
    # takes 1.5-2.6 s here), which it interrupts.
    microphone(mic, [1.5, first, 3.0, over, 12.0, last, 10.0])
    result = await asyncio.to_thread(talk, f"http://127.0.0.1:{stack.ports.http}/", mic, 3, 150)
    print(result["log"])
    print("voice-to-voice in the page (ms):", [t["latency_ms"] for t in result["turns"]])
    you, ai = result["you"], result["ai"]
    assert len(you) == 3 and len(ai) == 3, result
    for rec, said in zip((first, over, last), you, strict=True):
        assert wer(rec.text, said) <= 0.3, (rec.text, said)
    assert [reply["status"] for reply in ai] == ["cancelled", "completed", "completed"], ai
    # The cut reply shows what was heard, then where it was cut.
    cut = next(e["text"] for e in result["shown"]["entries"] if e["kind"] == "ai")
    assert cut.startswith(ai[0]["text"]) and "✂ interrupted" in cut[len(ai[0]["text"]) :], (cut, ai[0])
    # The two replies heard in full played audio, and the page measured each one's latency.
    played = list(result["played"].values())
    assert len(played) == 3 and all(samples > 0 for samples in played), played
    assert all(samples > 24_000 * 0.5 for samples in played[1:]), played
    assert all(0 < t["latency_ms"] < 10_000 for t in result["turns"]), result["turns"]
    # What the speaker sounded: the reply was sounding when the server heard the user over it (its
    # speech_started or its pausing the reply, whichever came first), and fell silent then. The page
    # had up to the server's lead and its jitter buffer (about 0.3 s) scheduled ahead, which only
    # the page can stop.
    sounding = [(start, end if end is not None else float("inf")) for start, end in result["sounding"]]
    at = result["heard_at"][1]  # the second recording: the first was heard with nothing to stop
    cut_at = [end for start, end in sounding if start < at < end + 0.3]
    assert len(cut_at) == 1, (result["heard_at"], sounding)
    assert cut_at[0] <= at + STOP_S, (at, sounding)
    # Nor does it sound again before the reply to the interruption: not what the server sent after
    # it heard the user and before it paused the reply (it sends that again if the reply goes on).
    assert not [start for start, _ in sounding if at < start < at + AFTER_CUT_S], (at, sounding)
