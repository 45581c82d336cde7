"""The phone doors in front of the real services: AudioSocket calls (a client written here from
the protocol) and Twilio media streams (a client written from Twilio's documented messages).

What is checked is the services' account, through taps: the chat service received the caller's
words and keys, speech synthesis made the reply that came down the line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import websockets

from harness.gateway_stack import Stack, gateway_settings
from harness.speech import at_rate, english, wer
from harness.tap import Taps, tapped
from services.gateway import mulaw, twilio
from services.gateway.audiosocket import AUDIO, DTMF, HANGUP, UUID, AudioSocketListener, frame, networks
from services.gateway.channels import conversation_settings
from services.gateway.phone import LINE_FRAME_BYTES, LINE_RATE_HZ, PhoneOptions, dtmf_text
from services.gateway.server import running_gateway
from tests.service.test_gateway_realtime import _settled, _streams

FRAME_S = 0.02
QUIET = bytes(LINE_FRAME_BYTES)


@dataclass
class Phone:
    port: int
    taps: Taps


@pytest.fixture(scope="module")
async def phone(stack: Stack) -> AsyncIterator[Phone]:
    """An AudioSocket door on a free port, its conversations reaching the services through taps."""
    async with tapped(conversation_settings(stack.settings)) as (settings, taps):
        listener = AudioSocketListener(settings, PhoneOptions(idle_hangup_s=0), [])
        port = await listener.start("127.0.0.1", 0)
        yield Phone(port, taps)
        await listener.close()


class Call:
    """An AudioSocket peer as Asterisk is one: sends 20 ms frames in real time, keeps what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.heard = bytearray()
        self.frames: list[tuple[float, int]] = []  # (arrival, type)
        self.hung_up = asyncio.Event()
        self._reading = asyncio.create_task(self._read())

    @classmethod
    async def dial(cls, port: int, call_id: bytes | None = None) -> Call:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        call = cls(reader, writer)
        if call_id is not None:
            await call.send(UUID, call_id)
        return call

    async def send(self, kind: int, payload: bytes = b"") -> None:
        self.writer.write(frame(kind, payload))
        await self.writer.drain()

    async def say(self, pcm: bytes, pace_s: float = FRAME_S) -> None:
        """8 kHz audio, 20 ms a frame, in real time."""
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), LINE_FRAME_BYTES)):
            await self.send(AUDIO, pcm[at : at + LINE_FRAME_BYTES].ljust(LINE_FRAME_BYTES, b"\0"))
            await asyncio.sleep(max(0.0, start + (i + 1) * pace_s - time.monotonic()))

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await self.reader.readexactly(3)
                payload = await self.reader.readexactly(int.from_bytes(header[1:], "big"))
                self.frames.append((time.monotonic(), header[0]))
                if header[0] == HANGUP:
                    self.hung_up.set()
                elif header[0] == AUDIO:
                    self.heard += payload
        self.hung_up.set()

    def voiced_s(self) -> float:
        samples = np.frombuffer(bytes(self.heard), dtype="<i2")
        return float(np.count_nonzero(np.abs(samples) > 300)) / LINE_RATE_HZ

    async def hang_up(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.send(HANGUP)
        self.writer.close()
        self._reading.cancel()


def _line(pcm16k: bytes) -> bytes:
    return at_rate(pcm16k, LINE_RATE_HZ)


async def _user_turns(taps: Taps, count: int, timeout_s: float = 60) -> list[str]:
    async with asyncio.timeout(timeout_s):
        while len(turns := [t.text for t in taps.llm.user_turns()]) < count:
            await asyncio.sleep(0.1)
    return turns


async def test_a_call_is_a_conversation_paced_on_20_ms(phone: Phone) -> None:
    clip = english()[0]
    before = len(phone.taps.llm.user_turns())
    call = await Call.dial(phone.port, uuid.uuid4().bytes)
    await call.say(_line(clip.pcm()) + bytes(LINE_RATE_HZ * 2))  # and 1 s of silence
    turns = await _user_turns(phone.taps, before + 1)
    assert wer(clip.text, turns[before]) <= 0.3, turns[before]
    async with asyncio.timeout(60):
        while call.voiced_s() < 0.5:
            await call.say(QUIET * 10)
    await call.say(QUIET * 100)  # 2 s more: the frames keep their 20 ms pace
    audio = [t for t, kind in call.frames if kind == AUDIO]
    span = audio[-1] - audio[0]
    assert len(audio) == pytest.approx(span / FRAME_S, rel=0.1)
    await call.hang_up()


async def test_a_key_pressed_reaches_the_model(phone: Phone) -> None:
    before = len(phone.taps.llm.user_turns())
    call = await Call.dial(phone.port, uuid.uuid4().bytes)
    await call.say(QUIET * 5)
    await call.send(DTMF, b"3")
    await call.say(QUIET * 5)
    turns = await _user_turns(phone.taps, before + 1)
    assert dtmf_text("3") in turns[before:]
    await call.hang_up()


async def test_a_hang_up_closes_the_call_s_streams(phone: Phone) -> None:
    idle = await _settled()
    call = await Call.dial(phone.port, uuid.uuid4().bytes)
    await call.say(QUIET * 25)
    async with asyncio.timeout(10):
        while _streams() == idle:
            await asyncio.sleep(0.05)
    await call.hang_up()
    async with asyncio.timeout(10):
        while _streams() != idle:
            await asyncio.sleep(0.05)


def _mulaw_as_slin(pcm8k: bytes) -> bytes:
    """μ-law bytes sent as if they were signed linear (the channel form without c(slin))."""
    encoded = mulaw.encode(pcm8k)
    return encoded + encoded[: len(encoded) % 2]


BAD_CALLS = {
    "unknown frame type": ([(0x42, b"\x00\x01")], "unknown AudioSocket frame type 0x42"),
    "uuid of the wrong length": ([(UUID, b"short")], "a uuid frame holds 16 bytes, this one 5"),
    "no uuid": ([(AUDIO, QUIET)], "a call begins with its UUID"),
    "odd audio": ([(UUID, uuid.uuid4().bytes), (AUDIO, b"\x00" * 321)], "audio frame of 321 bytes"),
    "bad digit": ([(UUID, uuid.uuid4().bytes), (DTMF, b"x")], "DTMF digit"),
}


@pytest.mark.parametrize("name", BAD_CALLS)
async def test_a_bad_frame_ends_that_call_only(
    phone: Phone, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    frames, message = BAD_CALLS[name]
    good = await Call.dial(phone.port, uuid.uuid4().bytes)
    speaking = asyncio.create_task(good.say(QUIET * 100))
    bad = await Call.dial(phone.port)
    with caplog.at_level(logging.ERROR, "services.gateway.audiosocket"):
        for kind, payload in frames:
            await bad.send(kind, payload)
        async with asyncio.timeout(5):
            await bad.hung_up.wait()
    assert any(message in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert [kind for _, kind in bad.frames][-1:] == [HANGUP]
    await speaking
    assert not good.hung_up.is_set()
    assert sum(kind == AUDIO for _, kind in good.frames) >= 80  # its 20 ms clock ran on
    await good.hang_up()


async def test_mulaw_labelled_slin_is_named_in_the_log(
    phone: Phone, caplog: pytest.LogCaptureFixture
) -> None:
    call = await Call.dial(phone.port, uuid.uuid4().bytes)
    with caplog.at_level(logging.ERROR, "services.gateway.audiosocket"):
        with contextlib.suppress(ConnectionError):  # hung up while it still sends
            await call.say(_mulaw_as_slin(_line(english()[1].pcm()))[: LINE_FRAME_BYTES * 75], pace_s=0.005)
        async with asyncio.timeout(5):
            await call.hung_up.wait()
    assert any("μ-law labelled as signed linear" in r.getMessage() for r in caplog.records)


async def test_a_call_without_uuid_is_hung_up_after_the_wait(
    phone: Phone, caplog: pytest.LogCaptureFixture
) -> None:
    call = await Call.dial(phone.port)
    with caplog.at_level(logging.ERROR, "services.gateway.audiosocket"):
        async with asyncio.timeout(8):
            await call.hung_up.wait()
    assert any("no call UUID within" in r.getMessage() for r in caplog.records)


def _own_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: it picks the outgoing interface
        return str(probe.getsockname()[0])


async def test_a_peer_off_loopback_needs_an_allow(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    address = _own_address()
    for allow, served in (("", False), (f"{address}/32", True)):
        listener = AudioSocketListener(conversation_settings(stack.settings), PhoneOptions(), networks(allow))
        port = await listener.start("0.0.0.0", 0)
        reader, writer = await asyncio.open_connection(address, port)
        writer.write(frame(UUID, uuid.uuid4().bytes))
        got = b""
        with contextlib.suppress(ConnectionResetError):  # refused with the UUID unread
            got = await asyncio.wait_for(reader.read(3), 5)
        assert (got[:1] == bytes([AUDIO])) == served, (allow, got)
        writer.close()
        await listener.close()


async def test_the_call_is_hung_up_after_the_idle_time(stack: Stack) -> None:
    listener = AudioSocketListener(conversation_settings(stack.settings), PhoneOptions(idle_hangup_s=1.0), [])
    port = await listener.start("127.0.0.1", 0)
    call = await Call.dial(port, uuid.uuid4().bytes)
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(call.say(QUIET * 200), 6)
    assert call.hung_up.is_set()
    assert 0.9 <= next(t for t, kind in call.frames if kind == HANGUP) - started <= 2.0
    await listener.close()


async def test_the_gateway_opens_the_door_where_its_port_is_set(stack: Stack) -> None:
    s = stack.settings
    settings = gateway_settings(s.stt_address, s.llm_address, s.tts_address, audiosocket_port=0)
    async with running_gateway(settings) as ports:
        assert ports.audiosocket
        call = await Call.dial(ports.audiosocket, uuid.uuid4().bytes)
        await call.say(QUIET * 10)
        assert sum(kind == AUDIO for _, kind in call.frames) >= 5
        await call.hang_up()
    async with running_gateway(settings.model_copy(update={"audiosocket_port": None})) as ports:
        assert ports.audiosocket is None


# -- Twilio media streams ---------------------------------------------------------------------
class TwilioPeer:
    """Twilio's side of a media stream: 20 ms of μ-law a message, marks echoed once played."""

    def __init__(self, ws: websockets.ClientConnection, stream_sid: str) -> None:
        self.ws, self.sid = ws, stream_sid
        self.events: list[dict[str, Any]] = []
        self.media = bytearray()
        self._seq = 0
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self.ws:
                event = json.loads(text)
                self.events.append(event)
                if event["event"] == "media":
                    self.media += mulaw.decode(base64.b64decode(event["media"]["payload"]))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    async def send(self, event: dict[str, object]) -> None:
        self._seq += 1
        await self.ws.send(json.dumps({"sequenceNumber": str(self._seq), "streamSid": self.sid, **event}))

    async def start(self, **parameters: str) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "accountSid": "AC0",
            "streamSid": self.sid,
            "callSid": "CA" + uuid.uuid4().hex,
            "tracks": ["inbound"],
            "customParameters": parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await self.send({"event": "start", "start": start})

    async def say(self, pcm8k: bytes) -> None:
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm8k), LINE_FRAME_BYTES)):
            payload = base64.b64encode(mulaw.encode(pcm8k[at : at + LINE_FRAME_BYTES])).decode()
            media = {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": payload}
            await self.send({"event": "media", "media": media})
            await asyncio.sleep(max(0.0, start + (i + 1) * FRAME_S - time.monotonic()))

    async def wait(self, kind: str, count: int, timeout_s: float = 90) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.of(kind)) < count:
                await self.say(QUIET * 5)


async def test_twilio_two_turns_with_marks_and_a_clear_on_barge_in(stack: Stack) -> None:
    clips = english()
    url = f"ws://127.0.0.1:{stack.ports.http}{twilio.PATH}"
    async with websockets.connect(url) as ws:
        peer = TwilioPeer(ws, "MZ" + uuid.uuid4().hex)
        await peer.start()
        await peer.say(_line(clips[0].pcm()) + bytes(LINE_RATE_HZ * 2))
        await peer.wait("mark", 1)
        first_reply = len(peer.media)
        assert first_reply > LINE_RATE_HZ  # over half a second of reply
        await peer.say(_line(clips[1].pcm()) + bytes(LINE_RATE_HZ * 2))
        await peer.wait("mark", 2)
        # The third reply: spoken over once it plays.
        sent = len(peer.of("media"))
        await peer.say(_line(clips[2].pcm()) + bytes(LINE_RATE_HZ))
        async with asyncio.timeout(90):
            while len(peer.of("media")) < sent + 10:
                await peer.say(QUIET * 5)
        assert not peer.of("clear")
        await peer.say(_line(clips[3].pcm()))
        await peer.wait("clear", 1, timeout_s=10)
        assert [e["mark"]["name"] for e in peer.of("mark")][:2] == ["reply-1", "reply-2"]
        await peer.send({"event": "stop", "stop": {"accountSid": "AC0", "callSid": "CA0"}})


async def test_twilio_media_before_start_is_refused(stack: Stack) -> None:
    url = f"ws://127.0.0.1:{stack.ports.http}{twilio.PATH}"
    async with websockets.connect(url) as ws:
        peer = TwilioPeer(ws, "MZ" + uuid.uuid4().hex)
        await peer.say(QUIET)
        await peer.wait("error", 1, timeout_s=5)
        assert "before start" in str(peer.of("error")[0]["error"])
        refused = len(peer.of("error"))
        await peer.start()
        await peer.say(QUIET * 25)
        assert len(peer.of("error")) == refused  # the stream goes on
