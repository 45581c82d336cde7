"""The phone door for Asterisk: its AudioSocket protocol over TCP; each connection is one call.

A frame is a type (1 byte), a length (2 bytes, big-endian) and that many bytes: ``0x01`` the
call's UUID (16 bytes, first), ``0x10`` signed-linear 8 kHz mono audio (320 bytes = 20 ms),
``0x03`` a DTMF digit (1 ASCII byte), ``0x00`` hang up, ``0xff`` an error (Asterisk's).
The dialplan hands a call over with ``AudioSocket(${UUID},gateway:9092)``.

We send audio on our own 20 ms clock, silence when the agent is quiet (the channel form,
``Dial(AudioSocket/...)``, sends nothing until it hears from us), and a hang-up frame when
the conversation is over (no one spoke for ``idle_hangup_s``) or the call breaks the protocol:
a bad frame ends that call only, with the reason in the log. The protocol has no
authentication: a peer off loopback is served only from a network in ``allow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
import uuid
from collections import deque

import numpy as np

from conversation import ConversationSettings
from foundation.errors import ConfigError
from services.gateway.phone import DTMF_DIGITS, LINE_FRAME_BYTES, LINE_FRAME_MS, PhoneCall, PhoneOptions

log = logging.getLogger("services.gateway.audiosocket")

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
_NAMES = {HANGUP: "hangup", UUID: "uuid", DTMF: "dtmf", AUDIO: "audio", ERROR: "error"}
# A call that has not said who it is by then is hung up.
UUID_TIMEOUT_S = 5.0
# μ-law bytes read as 16-bit samples: each sample's two bytes are the codes of two neighbouring
# samples, close to each other, where a real sample's low byte is as good as random (~11 % close).
_MULAW_WINDOW_FRAMES = 25  # loud frames judged together (0.5 s)
_MULAW_CLOSE = 0.4  # the share of close byte pairs above which the audio is μ-law (speech: ~0.68)
_LOUD = 1000  # mean |sample|: quieter frames say nothing either way

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProtocolError(Exception):
    """The peer broke the protocol; the message says what it sent and what was expected."""


def networks(text: str, setting: str = "GATEWAY_AUDIOSOCKET_ALLOW") -> list[Network]:
    """Comma-separated networks (``172.16.0.0/12``, ``10.1.2.3``); ConfigError for one that is none."""
    try:
        return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"{setting}={text!r}: {exc}; give networks such as 172.16.0.0/12, comma-separated"
        ) from exc


def frame(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(3)
    kind, length = header[0], int.from_bytes(header[1:], "big")
    if kind not in _NAMES:
        known = ", ".join(f"0x{k:02x} {n}" for k, n in _NAMES.items())
        raise ProtocolError(f"unknown AudioSocket frame type 0x{kind:02x} (known: {known})")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"a {_NAMES[kind]} frame announced {length} bytes; the connection ended after {len(exc.partial)}"
        ) from exc
    expected = {UUID: 16, DTMF: 1, HANGUP: 0}.get(kind)
    if expected is not None and length != expected:
        raise ProtocolError(f"a {_NAMES[kind]} frame holds {expected} bytes, this one {length}")
    if kind == AUDIO and length % 2:
        raise ProtocolError(f"an audio frame of {length} bytes: signed-linear 16-bit audio has 2 a sample")
    return kind, payload


def _closeness(pcm: bytes) -> float | None:
    """The share of samples whose two bytes are close (as μ-law codes are), for a loud frame."""
    pairs = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 2).astype(np.int16) & 0x7F
    if not pairs.size or float(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.float64)).mean()) < _LOUD:
        return None
    return float((np.abs(pairs[:, 0] - pairs[:, 1]) <= 8).mean())


class AudioSocketListener:
    """Calls from Asterisk on a TCP port, one conversation each; closing it hangs them all up."""

    def __init__(self, base: ConversationSettings, options: PhoneOptions, allow: list[Network]) -> None:
        self._base = base
        self._options = options
        self._allow = allow
        self._server: asyncio.Server | None = None
        self._calls: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._connected, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Each call hangs up and ends as it would if the line dropped.
        for writer in list(self._calls.values()):
            with contextlib.suppress(ConnectionError):
                writer.write(frame(HANGUP))
            writer.close()
        await asyncio.gather(*self._calls, return_exceptions=True)

    def _allowed(self, host: str) -> bool:
        address = ipaddress.ip_address(host)
        return address.is_loopback or any(address in network for network in self._allow)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls[task] = writer
        try:
            await self._serve(reader, writer)
        finally:
            self._calls.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        if not self._allowed(peer):
            log.warning(
                "refused an AudioSocket connection from %s: the protocol has no authentication; allow its "
                "network with GATEWAY_AUDIOSOCKET_ALLOW (e.g. 10.0.0.0/8)",
                peer,
            )
            return
        try:
            kind, payload = await asyncio.wait_for(read_frame(reader), UUID_TIMEOUT_S)
            if kind != UUID:
                raise ProtocolError(
                    f"a call begins with its UUID (frame type 0x01), not a {_NAMES[kind]} frame"
                )
        except (ProtocolError, TimeoutError, asyncio.IncompleteReadError) as exc:
            reason = (
                str(exc) if isinstance(exc, ProtocolError) else f"no call UUID within {UUID_TIMEOUT_S:g} s"
            )
            log.error("AudioSocket call from %s refused: %s", peer, reason, extra={"peer": peer})
            with contextlib.suppress(ConnectionError):
                writer.write(frame(HANGUP))
                await writer.drain()
            return
        call = PhoneCall(str(uuid.UUID(bytes=payload)), "audiosocket", self._base, self._options)
        call.start()
        ended: list[str] = []
        pacer = asyncio.create_task(self._pace(call, writer, ended))
        why = "the caller hung up"
        try:
            why = await self._listen(call, reader) or why
        except ProtocolError as exc:
            why = str(exc)
            log.error("AudioSocket call %s ended: %s", call.call_id, exc, extra={"call": call.call_id})
        except (asyncio.IncompleteReadError, ConnectionError):
            why = ended[0] if ended else "the caller hung up"  # Asterisk closes without a frame
        finally:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
            if not ended and why != "the caller hung up":
                with contextlib.suppress(ConnectionError):
                    writer.write(frame(HANGUP))
                    await writer.drain()
            await call.close(why)

    async def _listen(self, call: PhoneCall, reader: asyncio.StreamReader) -> str | None:
        """The call's frames until it hangs up; a reason when it ends otherwise."""
        judged: deque[float] = deque(maxlen=_MULAW_WINDOW_FRAMES)
        while True:
            kind, payload = await read_frame(reader)
            if kind == HANGUP:
                return None
            if kind == ERROR:
                return f"Asterisk sent an error (code {payload.hex() or 'none'})"
            if kind == UUID:
                raise ProtocolError("a second UUID frame: a connection carries one call")
            if kind == DTMF:
                digit = payload.decode("ascii", "replace")
                if digit not in DTMF_DIGITS:
                    raise ProtocolError(f"DTMF digit {payload!r} is none of {''.join(sorted(DTMF_DIGITS))}")
                call.pressed(digit)
                continue
            if (close := _closeness(payload)) is not None:
                judged.append(close)
            if len(judged) == judged.maxlen and sum(judged) / len(judged) > _MULAW_CLOSE:
                raise ProtocolError(
                    "the audio is μ-law labelled as signed linear (AudioSocket's channel form without "
                    "a format): dial AudioSocket/host:port/${UUID}/c(slin), or use the AudioSocket() "
                    "application"
                )
            call.hear(payload)

    @staticmethod
    async def _pace(call: PhoneCall, writer: asyncio.StreamWriter, ended: list[str]) -> None:
        """20 ms of the reply (or silence) every 20 ms; hangs up when the conversation is over."""
        silence = frame(AUDIO, bytes(LINE_FRAME_BYTES))
        due = time.monotonic()
        while True:
            due += LINE_FRAME_MS / 1000
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() - due > 0.2:
                due = time.monotonic()  # the loop was held up: no burst to catch up
            if call.hang_up_due:
                ended.append(f"no one spoke for {call.options.idle_hangup_s:g} s")
                writer.write(frame(HANGUP))
                writer.close()
                return
            piece = call.playback.take()
            try:
                writer.write(frame(AUDIO, piece) if piece is not None else silence)
                await writer.drain()
            except ConnectionError:
                return
