"""``/v1/realtime`` in front of the real services: the official openai SDK's realtime client, and a
raw WebSocket for the event order and malformed events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import websockets
from prometheus_client import REGISTRY

from harness.edge import silence
from harness.gateway_stack import Stack
from harness.speech import at_rate, english, normalize, wer
from harness.stt_client import stream
from harness.turns import UNFINISHED_AFTER, cut, sentences, to_pcm
from services.gateway.realtime import API_RATE_HZ, LEAD_MS
from services.llm.engine import Completion, Message, OnDelta, Options
from services.llm.engines.local import LocalSession
from voice.stt.v1 import stt_pb2

CHUNK_MS = 100
STORY = "Tell me a long story about a dragon who learns to bake bread."


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{stack.ports.http}/v1",
        websocket_base_url=f"ws://127.0.0.1:{stack.ports.http}/v1",
        api_key="unused",
    ) as client:
        yield client


class Heard:
    """Every server event, by type, as it comes; waits for the next one of a type."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._new.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def next(self, kind: str, after: int, timeout_s: float = 90) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [e for e in self.events[after:] if e["type"] == kind]
                if found:
                    return found[0]
                self._new.clear()
                await self._new.wait()

    def audio_s(self, response_id: str) -> float:
        deltas = [e for e in self.of("response.output_audio.delta") if e["response_id"] == response_id]
        return sum(len(base64.b64decode(e["delta"])) for e in deltas) / 2 / API_RATE_HZ


async def _speak(conn: Any, pcm: bytes, silence_ms: int = 0) -> None:
    """``pcm`` (24 kHz), then silence, in real time as a microphone would."""
    chunk = API_RATE_HZ * CHUNK_MS // 1000 * 2
    pcm += bytes(API_RATE_HZ * silence_ms // 1000 * 2)
    for at in range(0, len(pcm), chunk):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[at : at + chunk]).decode())
        await asyncio.sleep(CHUNK_MS / 1000)


@pytest.fixture
async def talk(client: openai.AsyncOpenAI) -> AsyncIterator[tuple[Any, Heard]]:
    async with client.realtime.connect(model="voice-agent") as conn:
        heard = Heard()

        async def listen() -> None:
            async for event in conn:
                heard.add(event.to_dict())

        listening = asyncio.create_task(listen())
        yield conn, heard
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await listening


async def test_two_spoken_turns_and_a_typed_one_through_the_openai_sdk(talk: tuple[Any, Heard]) -> None:
    conn, heard = talk
    await conn.session.update(
        session={
            "type": "realtime",
            "instructions": "You are a helpful voice assistant. Answer in one short sentence.",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 600}}},
        }
    )
    updated = await heard.next("session.updated", 0)
    assert updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 600

    clips = english()[:2]
    for rec in clips:
        mark = len(heard.events)
        speaking = asyncio.create_task(_speak(conn, at_rate(rec.pcm(), API_RATE_HZ), 1500))
        done = await heard.next("response.done", mark)
        speaking.cancel()
        assert done["response"]["status"] == "completed", done
        said = await heard.next("conversation.item.input_audio_transcription.completed", mark)
        assert wer(rec.text, said["transcript"]) <= 0.3, (rec.text, said["transcript"])
        order = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "response.output_audio.delta",
            "response.output_audio.done",
            "response.done",
        ]
        kinds = [e["type"] for e in heard.events[mark:]]
        assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order), kinds
        _assert_spoken(heard, done)

    mark = len(heard.events)
    await conn.conversation.item.create(
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What is two plus two?"}],
        }
    )
    await conn.response.create()
    done = await heard.next("response.done", mark)
    assert done["response"]["status"] == "completed", done
    assert not [e for e in heard.events[mark:] if e["type"].startswith("input_audio_buffer")]
    _assert_spoken(heard, done)


def _assert_spoken(heard: Heard, done: dict[str, Any]) -> None:
    """The reply's audio is as long as speech of its transcript would be."""
    response = done["response"]
    transcript = response["output"][0]["content"][0]["transcript"]
    deltas = "".join(
        e["delta"]
        for e in heard.of("response.output_audio_transcript.delta")
        if e["response_id"] == response["id"]
    )
    assert deltas.strip() == transcript and transcript, (deltas, transcript)
    words = len(transcript.split())
    assert 0.12 * words <= heard.audio_s(response["id"]) <= 1.0 * words + 1.0, (
        transcript,
        heard.audio_s(response["id"]),
    )


async def test_a_response_is_cancelled_mid_stream_and_the_session_goes_on(talk: tuple[Any, Heard]) -> None:
    conn, heard = talk
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": STORY}]}
    )
    await conn.response.create()
    first = await heard.next("response.output_audio.delta", 0)
    await conn.response.cancel()
    done = await heard.next("response.done", 0)
    response = done["response"]
    assert response["id"] == first["response_id"]
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "client_cancelled"
    # Cut within the first second of audio: what is kept is what was heard, a few words at most.
    assert len(response["output"][0]["content"][0]["transcript"].split()) <= 6, response
    assert heard.audio_s(response["id"]) <= 3.0

    await conn.response.cancel()
    error = await heard.next("error", 0)
    assert error["error"]["code"] == "response_cancel_not_active"

    mark = len(heard.events)
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
    )
    await conn.response.create()
    assert (await heard.next("response.done", mark))["response"]["status"] == "completed"


@dataclass(frozen=True)
class Chat:
    asked: list[Message]  # the prompt: the system's, the conversation's memory, the user's turn
    wrote: str  # the reply as generated (up to a cancel)


@pytest.fixture
def chats(monkeypatch: pytest.MonkeyPatch) -> list[Chat]:
    """What the LLM service's model was asked and wrote, turn by turn: its own record."""
    made: list[Chat] = []
    generate = LocalSession.generate

    def recorded(
        session: LocalSession,
        messages: Sequence[Message],
        options: Options,
        on_delta: OnDelta,
        cancel: threading.Event,
    ) -> Completion:
        completion = generate(session, messages, options, on_delta, cancel)
        made.append(Chat(list(messages), completion.text))
        return completion

    monkeypatch.setattr(LocalSession, "generate", recorded)
    return made


async def test_speech_over_a_reply_cancels_it_at_what_was_played(
    talk: tuple[Any, Heard], stack: Stack, chats: list[Chat]
) -> None:
    conn, heard = talk
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": STORY}]}
    )
    await conn.response.create()
    first = await heard.next("response.output_audio.delta", 0)
    # The user speaks once the reply has played for 2 s (the client is sent LEAD_MS ahead of that).
    while heard.audio_s(first["response_id"]) < 2.0 + LEAD_MS / 1000:
        await heard.next("response.output_audio.delta", len(heard.events))
    rec = english()[0]
    speaking = asyncio.create_task(_speak(conn, at_rate(rec.pcm(), API_RATE_HZ), 2000))
    done = await heard.next("response.done", 0)
    assert done["response"]["status"] == "cancelled", done
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    started = await heard.next("input_audio_buffer.speech_started", 0)
    assert heard.events.index(started) < heard.events.index(done)
    # The speech over it is the next turn, answered in full.
    said = await heard.next("conversation.item.input_audio_transcription.completed", 0)
    assert wer(rec.text, said["transcript"]) <= 0.3, said
    after = heard.events.index(done)
    assert (await heard.next("response.done", after + 1))["response"]["status"] == "completed"
    speaking.cancel()

    # What is kept of the cut reply is what was played: the first words of what the model wrote,
    # the words of the audio the client was sent (less, at most, the lead it had not played yet).
    kept = done["response"]["output"][0]["content"][0]["transcript"]
    wrote = next(c.wrote for c in chats if c.asked[-1] == Message("user", STORY))
    words, whole = normalize(kept).split(), normalize(wrote).split()
    assert 0 < len(words) < len(whole) and whole[: len(words)] == words, (kept, wrote)
    sent = b"".join(
        base64.b64decode(e["delta"])
        for e in heard.of("response.output_audio.delta")
        if e["response_id"] == done["response"]["id"]
    )
    played = await stream(stack.stt, stt_pb2.RecognitionConfig(sample_rate_hz=API_RATE_HZ), [sent])
    assert wer(played.text, kept) <= 0.35, (played.text, kept)
    # The model's memory of it, when it answers the speech over it, is the same.
    memory = next(c.asked[-2] for c in chats if Message("user", STORY) in c.asked[:-1])
    assert memory == Message("assistant", kept), (memory, kept)


@pytest.mark.parametrize(("detection", "turns"), [("semantic_vad", 1), ("server_vad", 2)])
async def test_semantic_vad_is_the_bounded_detector(
    talk: tuple[Any, Heard], detection: str, turns: int
) -> None:
    """A second's pause where the sentence plainly goes on ("... rather selfish is | to be
    ill-disposed") waits for the rest with semantic_vad, as the bounded detector does (up to 1600
    ms); with server_vad it ends the turn (after 600 ms)."""
    conn, heard = talk
    session = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": detection}}}}
    await conn.session.update(session=session)
    updated = await heard.next("session.updated", 0)
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == detection
    rec = next(r for r in sentences() if UNFINISHED_AFTER[r.id] == "is")
    head = cut(rec)
    paused = silence(0.5) + to_pcm(head) + silence(1.0) + rec.pcm()[len(head) * 2 :]
    await _speak(conn, at_rate(paused, API_RATE_HZ), 1500)
    await _answered(heard)
    said = [e["transcript"] for e in heard.of("conversation.item.input_audio_transcription.completed")]
    assert len(said) == turns, said
    if turns == 1:  # the whole sentence, decoded once
        assert wer(rec.text, said[0]) <= 0.3, said


async def test_without_turn_detection_a_turn_ends_only_at_commit(talk: tuple[Any, Heard]) -> None:
    conn, heard = talk
    await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert (await heard.next("session.updated", 0))["session"]["audio"]["input"]["turn_detection"] is None
    rec = english()[1]
    # Two seconds of silence after the words: server_vad would have ended the turn long since.
    await _speak(conn, at_rate(rec.pcm(), API_RATE_HZ), 2000)
    kinds = {e["type"] for e in heard.events}
    assert not kinds & {"input_audio_buffer.committed", "response.created"}, kinds
    mark = len(heard.events)
    await conn.input_audio_buffer.commit()
    said = await heard.next("conversation.item.input_audio_transcription.completed", mark)
    assert wer(rec.text, said["transcript"]) <= 0.3, said
    assert (await heard.next("response.done", mark))["response"]["status"] == "completed"
    assert len(heard.of("input_audio_buffer.committed")) == 1


async def test_audio_cleared_from_the_buffer_is_never_transcribed(talk: tuple[Any, Heard]) -> None:
    conn, heard = talk
    await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    await heard.next("session.updated", 0)
    cleared, kept = english()[4], english()[1]
    await _speak(conn, at_rate(cleared.pcm(), API_RATE_HZ), 500)
    await conn.input_audio_buffer.clear()
    await heard.next("input_audio_buffer.cleared", 0)
    await _speak(conn, at_rate(kept.pcm(), API_RATE_HZ), 500)
    mark = len(heard.events)
    await conn.input_audio_buffer.commit()
    said = await heard.next("conversation.item.input_audio_transcription.completed", mark)
    assert wer(kept.text, said["transcript"]) <= 0.3, (kept.text, said["transcript"])
    assert len(heard.of("conversation.item.input_audio_transcription.completed")) == 1, heard.events


async def _answered(heard: Heard) -> None:
    """Wait until the last turn committed has been answered."""
    last = max(i for i, e in enumerate(heard.events) if e["type"] == "input_audio_buffer.committed")
    response = (await heard.next("response.created", last))["response"]["id"]
    while not [e for e in heard.of("response.done") if e["response"]["id"] == response]:
        await heard.next("response.done", len(heard.events))


async def test_malformed_and_unsupported_events_get_errors_in_the_apis_shape(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime?model=voice-agent"
    async with websockets.connect(url) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created"
        assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        cases: list[tuple[str | bytes, str]] = [
            ("{not json", "invalid_json"),
            (json.dumps({"type": "response.frobnicate"}), "unsupported_event"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}), "invalid_value"),
            (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
            (json.dumps({"type": "response.create"}), "response_create_empty"),
            (b"\x00\x01", "invalid_event"),
            (json.dumps({"type": "session.update", "session": {"audio": "loud"}}), "invalid_event"),
            (
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}},
                    }
                ),
                "unsupported_audio_format",
            ),
        ]
        for message, code in cases:
            await ws.send(message)
            event = json.loads(await ws.recv())
            assert event["type"] == "error", event
            assert event["error"]["code"] == code and event["error"]["message"], event
        # Turn detection is fixed once the conversation has begun (the commit began it), and the
        # session still works; the instructions may change at any time.
        detection = {"type": "semantic_vad"}
        session = {"instructions": "Be brief.", "audio": {"input": {"turn_detection": detection}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        event = json.loads(await ws.recv())
        message = event["error"]["message"]
        assert event["error"]["code"] == "session_fixed", event
        assert "turn_detection" in message and "instructions" not in message, message
        await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "Be brief."}}))
        assert json.loads(await ws.recv())["session"]["instructions"] == "Be brief."
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        assert json.loads(await ws.recv())["type"] == "conversation.item.added"


async def test_a_refused_setting_is_named_as_the_client_sent_it(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime?model=voice-agent"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        # Longer than the silence that ends a plainly unfinished turn.
        detection = {"type": "semantic_vad", "silence_duration_ms": 5000}
        session = {"audio": {"input": {"turn_detection": detection}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        error = json.loads(await ws.recv())["error"]
    field = "session.audio.input.turn_detection.silence_duration_ms"
    assert error["code"] == "invalid_value" and error["param"] == field, error
    assert f"must be at least {field} (5000)" in error["message"] and "--" not in error["message"], error


async def test_beta_clients_get_the_beta_event_names(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime?model=voice-agent"
    async with websockets.connect(url, additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        kinds: list[str] = []
        async with asyncio.timeout(90):
            while not kinds or kinds[-1] != "response.done":
                kinds.append(json.loads(await ws.recv())["type"])
    assert kinds[0] == "conversation.item.created"
    assert "response.audio.delta" in kinds and "response.audio_transcript.done" in kinds
    assert not [k for k in kinds if "output_audio" in k]
    assert (
        kinds.index("response.created")
        < kinds.index("response.audio.delta")
        < kinds.index("response.audio.done")
    )


def _streams() -> dict[str, float]:
    """The services' streaming calls in progress (all three run in this process)."""
    counts = dict.fromkeys(("StreamingRecognize", "StreamingChat", "StreamingSynthesize"), 0.0)
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "voice_active_rpcs":
                method = str(sample.labels["method"]).rsplit("/", 1)[-1]
                if method in counts:
                    counts[method] += sample.value
    return counts


async def _settled() -> dict[str, float]:
    """The streams once the earlier tests' conversations have closed theirs (no change for 1 s)."""
    counts, since = _streams(), time.monotonic()
    async with asyncio.timeout(20):
        while time.monotonic() - since < 1.0:
            await asyncio.sleep(0.05)
            if (now := _streams()) != counts:
                counts, since = now, time.monotonic()
    return counts


async def test_closing_the_socket_ends_its_conversation_and_frees_its_streams(stack: Stack) -> None:
    before = await _settled()
    url = f"ws://127.0.0.1:{stack.ports.http}/v1/realtime"
    async with websockets.connect(url) as ws:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        async with asyncio.timeout(10):
            while any(_streams()[m] <= before[m] for m in before):
                await asyncio.sleep(0.05)
    async with asyncio.timeout(10):
        while _streams() != before:
            await asyncio.sleep(0.05)
