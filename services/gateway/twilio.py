"""``/v1/telephony/twilio``: a Twilio Media Streams WebSocket; each stream is one call.

Twilio sends JSON text messages: ``connected``, ``start`` (``streamSid``, ``callSid``,
``customParameters``, ``mediaFormat``), ``media`` (base64 μ-law at 8 kHz, 20 ms each),
``dtmf``, ``mark`` (a mark of ours, played) and ``stop``. We send ``media`` (the reply, μ-law,
on a 20 ms clock), ``mark`` when a reply's audio has all been sent (named ``reply-<turn>``),
and ``clear`` when the caller speaks over the reply, so that Twilio drops what it holds.

Twilio has no error message: an event we cannot take (``media`` before ``start``, bad JSON)
gets ``{"event": "error", "error": {"message": ...}}`` and is refused; the stream goes on.
With the gateway's tokens, the token comes in ``Authorization: Bearer`` or as the
``token`` custom parameter of ``<Stream>`` (Twilio sends no headers of one's choosing).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from conversation import ConversationSettings, Turn
from services.common.auth import Tokens
from services.gateway import mulaw
from services.gateway.phone import DTMF_DIGITS, LINE_FRAME_MS, LINE_RATE_HZ, PhoneCall, PhoneOptions

log = logging.getLogger("services.gateway.twilio")

PATH = "/v1/telephony/twilio"
_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": LINE_RATE_HZ, "channels": 1}


class StreamError(Exception):
    """An event refused; the message says why and what to send."""


class TwilioStream:
    """One WebSocket: Twilio's events in, the call's audio, marks and clears out."""

    def __init__(
        self, ws: WebSocket, base: ConversationSettings, tokens: Tokens, options: PhoneOptions
    ) -> None:
        self._ws = ws
        self._base = base
        self._tokens = tokens
        self._options = options
        self._authorized = not tokens.required or self._token_ok(ws.headers.get("authorization", ""))
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._call: PhoneCall | None = None
        self._stream_sid = ""

    def _token_ok(self, header: str) -> bool:
        return self._tokens.check([("authorization", header)]).client is not None

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        pacer: asyncio.Task[None] | None = None
        why = "the stream closed"
        try:
            while (message := await self._ws.receive())["type"] != "websocket.disconnect":
                try:
                    if self._handle(message.get("text")):
                        why = "Twilio stopped the stream"
                        break
                except StreamError as exc:
                    self._send(
                        {"event": "error", "streamSid": self._stream_sid, "error": {"message": str(exc)}}
                    )
                except PermissionError as exc:
                    await self._ws.close(code=1008, reason=str(exc))
                    return
                if pacer is None and self._call is not None:
                    pacer = asyncio.create_task(self._pace(self._call))
        except WebSocketDisconnect:
            pass
        finally:
            if pacer is not None:
                pacer.cancel()
            if self._call is not None:
                await self._call.close(why)
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer

    async def _write(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                await self._ws.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError):
                return

    def _send(self, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(message)

    def _handle(self, text: str | None) -> bool:
        """One event; True at ``stop``."""
        if text is None:
            raise StreamError("Twilio media stream messages are JSON text, not binary")
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StreamError(f"the message is not JSON: {exc}") from exc
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "connected":
            return False
        if kind == "start":
            self._start(event)
            return False
        if kind not in ("media", "dtmf", "mark", "stop"):
            raise StreamError(f"unknown event {kind!r}: expected connected, start, media, dtmf, mark or stop")
        if self._call is None:
            raise StreamError(f"a {kind} event before start: send start (with streamSid) first")
        if kind == "stop":
            return True
        if kind == "media":
            self._call.hear(mulaw.decode(self._payload(event)))
        elif kind == "dtmf":
            digit = str((event.get("dtmf") or {}).get("digit", ""))
            if digit not in DTMF_DIGITS:
                raise StreamError(f"dtmf.digit {digit!r} is none of {''.join(sorted(DTMF_DIGITS))}")
            self._call.pressed(digit)
        return False

    def _start(self, event: dict[str, Any]) -> None:
        if self._call is not None:
            raise StreamError("a second start: a WebSocket carries one stream")
        start = event.get("start")
        if not isinstance(start, dict) or not (sid := start.get("streamSid") or event.get("streamSid")):
            raise StreamError("start needs a start object with streamSid")
        parameters = start.get("customParameters") or {}
        if not self._authorized and not self._token_ok(f"Bearer {parameters.get('token', '')}"):
            raise PermissionError(
                'an access token is needed: Authorization: Bearer <token>, or <Parameter name="token">'
            )
        media_format = start.get("mediaFormat") or _FORMAT
        if {k: media_format.get(k) for k in _FORMAT} != _FORMAT:
            raise StreamError(f"mediaFormat {media_format} is not supported: {_FORMAT}")
        self._stream_sid = str(sid)
        call_id = str(start.get("callSid") or sid)
        self._call = call = PhoneCall(call_id, "twilio", self._base, self._options)
        call.playback.on_clear = lambda: self._send({"event": "clear", "streamSid": self._stream_sid})
        call.on_reply_done = self._reply_done
        call.start()

    @staticmethod
    def _payload(event: dict[str, Any]) -> bytes:
        payload = (event.get("media") or {}).get("payload")
        if not isinstance(payload, str):
            raise StreamError("media.payload must be base64 μ-law audio")
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise StreamError(f"media.payload is not base64: {exc}") from exc

    def _reply_done(self, turn: Turn) -> None:
        if not turn.interrupted and not turn.error:
            self._send({"event": "mark", "streamSid": self._stream_sid, "mark": {"name": f"reply-{turn.id}"}})

    async def _pace(self, call: PhoneCall) -> None:
        """20 ms of the reply every 20 ms while there is one; closes the socket when the call is over."""
        due = time.monotonic()
        while True:
            due += LINE_FRAME_MS / 1000
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() - due > 0.2:
                due = time.monotonic()
            if call.hang_up_due:
                await self._ws.close(code=1000, reason=f"no one spoke for {call.options.idle_hangup_s:g} s")
                return
            if (piece := call.playback.take()) is not None:
                payload = base64.b64encode(mulaw.encode(piece)).decode()
                self._send({"event": "media", "streamSid": self._stream_sid, "media": {"payload": payload}})


def router(base: ConversationSettings, tokens: Tokens, options: PhoneOptions) -> APIRouter:
    routes = APIRouter()

    @routes.websocket(PATH)
    async def twilio(ws: WebSocket) -> None:
        await ws.accept()
        await TwilioStream(ws, base, tokens, options).run()

    return routes
