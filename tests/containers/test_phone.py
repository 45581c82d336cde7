"""Phone calls to the composed stack: Asterisk (the phone profile) answers a real SIP call from
pjsua2 and hands it to the gateway's AudioSocket door.

The caller plays real speech and records what it hears. What is checked: the recording, as the
STT service transcribes it (through the gateway's OpenAI-compatible HTTP API); the far end's
level as the caller heard it; the services' stream gauges (their Prometheus metrics); and the
gateway's log of each call (its UUID, the turns' report lines).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from harness.sip_caller import TICK_S, Heard, Script, SipPhone
from harness.speech import REPO, at_rate, english, normalize, wer
from services.gateway.phone import LINE_RATE_HZ, dtmf_text
from tests.containers.conftest import compose

METRICS = {"stt": 9101, "llm": 9102, "tts": 9103}
STREAMS = ("StreamingRecognize", "StreamingChat", "StreamingSynthesize")


@pytest.fixture(scope="module")
def phone(stack: None) -> Iterator[SipPhone]:
    """The phone profile's Asterisk up beside the stack (taken down again if started here), and a
    softphone that calls it with the password of ``make certs``."""
    subprocess.run(["bash", "deploy/certs.sh", "certs"], cwd=REPO, check=True, capture_output=True)
    was_running = bool(compose("--profile", "phone", "ps", "-q", "asterisk").stdout.strip())
    compose("--profile", "phone", "up", "-d", "--wait", "asterisk")
    caller = SipPhone("caller", (REPO / "certs" / "sip-password").read_text().strip())
    yield caller
    caller.close()
    if not was_running:
        compose("--profile", "phone", "rm", "--stop", "--force", "asterisk")


def _wav(folder: Path, name: str, pcm16k: bytes) -> Path:
    path = folder / f"{name}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(LINE_RATE_HZ)
        w.writeframes(at_rate(pcm16k, LINE_RATE_HZ))
    return path


def _streams() -> dict[str, float]:
    counts = dict.fromkeys(STREAMS, 0.0)
    for port in METRICS.values():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("voice_active_rpcs{"):
                method = line.split('method="', 1)[1].split('"', 1)[0].rsplit("/", 1)[-1]
                if method in counts:
                    counts[method] += float(line.rsplit(" ", 1)[1])
    return counts


def _settled(timeout_s: float = 30) -> dict[str, float]:
    """The gauges once they have not changed for 1 s."""
    counts, since, end = _streams(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() - since < 1 and time.monotonic() < end:
        time.sleep(0.2)
        if (now := _streams()) != counts:
            counts, since = now, time.monotonic()
    return counts


def _calls(since: str) -> dict[str, list[dict[str, object]]]:
    """The gateway's log lines of each phone call since ``since`` (RFC 3339), by call UUID."""
    logs = compose("logs", "--no-log-prefix", "--since", since, "gateway").stdout
    calls: dict[str, list[dict[str, object]]] = {}
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("door") == "audiosocket":
            calls.setdefault(str(entry["call"]), []).append(entry)
    return calls


def _transcribe(path: Path, start_s: float, end_s: float) -> str:
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        w.setpos(int(start_s * rate))
        pcm = w.readframes(int((end_s - start_s) * rate))
    piece = path.with_suffix(".piece.wav")
    with wave.open(str(piece), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    with piece.open("rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio).text


def _stopped_at(heard: Heard, after: float) -> float:
    """When the far end fell quiet (300 ms with no voice) after ``after``."""
    quiet = 0
    for t, level in heard.levels:
        if t < after:
            continue
        quiet = 0 if level >= 8 else quiet + 1
        if quiet * TICK_S >= 0.3:
            return t - 0.3
    return heard.levels[-1][0]


def _since() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))


def test_two_calls_talk_are_interrupted_and_hang_up(phone: SipPhone, tmp_path: Path) -> None:
    clips = english()
    idle = _settled()
    since = _since()
    scripts = [
        Script(
            first=_wav(tmp_path, f"first-{i}", clips[i].pcm()),
            second=_wav(tmp_path, f"second-{i}", clips[i + 2].pcm()),
        )
        for i in (0, 1)
    ]
    heards = phone.place(scripts, tmp_path)
    report: dict[str, object] = {}
    for i, heard in enumerate(heards):
        assert heard.second_at > 0, f"call {i}: the caller never heard a reply to speak over"
        # The reply is speech: Whisper hears words in it.
        reply = _transcribe(heard.recording, heard.first_end, heard.second_at)
        assert len(normalize(reply).split()) >= 1, reply
        # Speaking over it stopped it, well before the interruption was over.
        stopped = _stopped_at(heard, heard.second_at)
        assert stopped - heard.second_at < 1.5, (heard.second_at, stopped)
        assert heard.last_status == 200
        report[f"call {i}"] = {"reply heard": reply, "stopped after s": round(stopped - heard.second_at, 2)}
    # Each call was a conversation of its own: its turns are its own words.
    calls = _calls(since)
    assert len(calls) == 2, list(calls)
    for entries in calls.values():
        turns: list[dict[str, object]] = [e["report"] for e in entries if e["msg"] == "turn"]  # type: ignore[misc]
        said = " ".join(str(t["user_text"]) for t in turns)
        errors = [wer(f"{clips[i].text} {clips[i + 2].text}", said) for i in (0, 1)]
        assert min(errors) <= 0.3 < max(errors), said  # its own two utterances, not the other call's
        assert any(t["interrupted"] for t in turns), turns  # the second stopped the first reply
        ended = [e for e in entries if e["msg"] == "call ended"]
        assert ended and ended[0]["why"] == "the caller hung up", ended
        report[str(entries[0]["call"])] = {"user words": said, "wer": round(min(errors), 3)}
    print(json.dumps(report, indent=1))
    # Hung up: the services' streams are where they were.
    assert _settled() == idle


def test_a_key_pressed_reaches_the_conversation(phone: SipPhone, tmp_path: Path) -> None:
    since = _since()
    [heard] = phone.place([Script(digit="3", max_s=30)], tmp_path)
    assert heard.last_status == 200
    # The earlier test's calls may still log their ends after ``since``: this call is the one with a key.
    calls = _calls(since)
    pressed = [entries for entries in calls.values() if any(e["msg"] == "key pressed" for e in entries)]
    assert len(pressed) == 1, calls
    [entries] = pressed
    assert [e["digit"] for e in entries if e["msg"] == "key pressed"] == ["3"]
    turns = [e["report"] for e in entries if e["msg"] == "turn"]
    assert dtmf_text("3") in [t["user_text"] for t in turns]  # type: ignore[index]
