"""``/v1/realtime``: OpenAI's Realtime API over a WebSocket; each connection is one conversation.

The conversation is the edge client's own core (``conversation``): the same endpointing, held
replies, barge-in and resume, and links to the three services. This module only translates
the API's events to it and back, and moves the audio: PCM16 mono at 24 kHz both ways.

Supported client events: ``session.update`` (``instructions``, ``tools`` and ``tool_choice`` at
any time, from the next response on; the voice, ``turn_detection``: ``server_vad`` with
``silence_duration_ms``, ``semantic_vad`` -> the bounded turn detector, or null with
``input_audio_buffer.commit``), ``input_audio_buffer.append/commit/clear``,
``conversation.item.create`` (a user message of ``input_text``, or a ``function_call_output``),
``response.create`` and ``response.cancel``. The client's functions are the conversation's tools
(``realtime_functions``), beside the gateway's own. Everything else gets an ``error`` event;
fields not named here are ignored.
Event names are the API's current ones (``response.output_audio.delta``); a client that sends
``OpenAI-Beta: realtime=v1`` gets the beta names (``response.audio.delta``).

A client that connects with ``?voice_agent_events=true`` (the page at ``/`` does) also gets two
events of this gateway's own: ``voice_agent.state`` (``state``: the agent's, as the edge client
shows it: listening, hearing you, thinking, speaking) and, after each ``response.done``,
``voice_agent.turn`` (``response_id``, and ``t_ms``: the turn's times in ms of the conversation's
clock, as in the edge client's report: ``speech_end``, ``transcript_final``, ``first_token``,
``first_audio``...). Other clients never see them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from conversation import Conversation, ConversationSettings, Events, Turn
from conversation.settings import SETTINGS, SettingError
from conversation.tools import Toolbox, ToolCall, ToolError, Tools
from conversation.turn import rounded
from foundation.audio import FRAME_BYTES, FRAME_MS, FrameSplitter
from services.common.auth import Tokens
from services.gateway.access import Unauthenticated, refusal
from services.gateway.functions import Function, FunctionError, functions, tool_choice
from services.gateway.realtime_functions import ClientFunctions, call_item

log = logging.getLogger(__name__)

API_RATE_HZ = 24_000
# Reply audio goes to the client this far ahead of where it is playing: its jitter buffer,
# and all it can play of a reply that is cut before it hears the cut.
LEAD_MS = 240
# With no audio from the client for this long, the conversation's clock runs on silence
# (a typed turn, a client that stops sending after a commit).
_IDLE_CLOCK_MS = 300
# Turn detection off: the turn ends only at input_audio_buffer.commit.
_MANUAL_SILENCE_MS = 24 * 3600 * 1000
_BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}


class RealtimeError(Exception):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


class ClientPlayback:
    """The client's speaker, as the conversation sees it: reply audio is sent ``LEAD_MS`` ahead
    of a playhead that moves with the conversation's clock; ``clear`` drops what was not sent."""

    sample_rate_hz = API_RATE_HZ

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._pending = bytearray()
        self._ahead = 0  # samples sent and not yet played
        self.played_samples = 0

    def write(self, pcm: bytes) -> None:
        self._pending += pcm
        self._top_up()

    def flush_pending(self) -> None:
        pass

    def clear(self) -> None:
        self._pending.clear()
        self._ahead = 0  # the client stops at speech_started, or the cancel

    @property
    def buffered_samples(self) -> int:
        return len(self._pending) // 2 + self._ahead

    def advance(self, ms: int) -> None:
        played = min(self._ahead, self.sample_rate_hz * ms // 1000)
        self._ahead -= played
        self.played_samples += played
        self._top_up()

    def _top_up(self) -> None:
        take = min(len(self._pending) // 2, self.sample_rate_hz * LEAD_MS // 1000 - self._ahead)
        if take > 0:
            self._send(bytes(self._pending[: take * 2]))
            del self._pending[: take * 2]
            self._ahead += take


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclasses.dataclass
class _Response:
    """One response of a turn: a turn that calls the client's functions has one before each call
    (done with the call) and one after."""

    turn: Turn
    id: str = dataclasses.field(default_factory=lambda: _new_id("resp"))
    item_id: str = dataclasses.field(default_factory=lambda: _new_id("item"))  # its message's
    cancelled: bool = False  # by response.cancel
    text: str = ""  # the message's text
    earlier: str = ""  # what the turn's responses before this one wrote
    output: list[dict[str, object]] = dataclasses.field(default_factory=list)  # items done
    message_at: int | None = None  # the message item's output index, once it is added
    finishing: asyncio.Handle | None = None  # done with the calls made
    done: bool = False


class RealtimeSession(Events):
    """One WebSocket: the API's events in, the conversation's out."""

    door = "realtime"

    def __init__(
        self,
        ws: WebSocket,
        base: ConversationSettings,
        beta: bool,
        extras: bool = False,
        served: Tools | None = None,
    ) -> None:
        self._ws = ws
        self._beta = beta
        self._extras = extras  # the gateway's own events too
        self._settings = base
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._event_ids = itertools.count(1)
        self._conversation: Conversation | None = None
        self._playback = ClientPlayback(self._audio_out)
        self._frames = FrameSplitter(API_RATE_HZ)
        self._fed_at = time.monotonic()
        self._user_item = ""  # the audio item being spoken or last committed
        self._last_item = ""
        self._typed: list[str] = []  # user text items not yet answered
        self._typed_turn = False  # the turn being asked was typed, not spoken
        self._responses: dict[int, _Response] = {}  # by turn id, until done
        self._response: _Response | None = None  # the latest: where reply audio goes
        # The client's functions, and the gateway's own tools (``served``) beside them.
        self._functions = ClientFunctions(self._function_call, self._answered)
        self._toolbox = Toolbox({"gateway": served, "client": self._functions}) if served else None
        self._calling: Turn | None = None  # the turn whose calls the client was last sent

    # -- the socket --------------------------------------------------------------------------
    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        clock: asyncio.Task[None] | None = None
        self._emit("session.created", session=self._session())
        try:
            while (message := await self._ws.receive())["type"] != "websocket.disconnect":
                try:
                    self._handle(message.get("text"))
                except RealtimeError as exc:
                    self._error(str(exc), exc.code, exc.param)
                except Exception as exc:  # a shape no check foresaw: this event fails, the session goes on
                    log.exception("realtime event failed")
                    self._error(f"the event could not be handled: {exc!r}", "invalid_event")
                if clock is None and self._conversation is not None:
                    clock = asyncio.create_task(self._clock())
        except WebSocketDisconnect:
            pass
        finally:
            if clock is not None:
                clock.cancel()
            if self._conversation is not None:
                await self._conversation.close()
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self._ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError):
                return

    def _emit(self, kind: str, **fields: Any) -> None:
        if self._beta:
            kind = _BETA_NAMES.get(kind, kind)
        event = {"type": kind, "event_id": f"event_{next(self._event_ids)}", **fields}
        self._outbox.put_nowait(json.dumps(event))

    def _error(self, message: str, code: str, param: str | None = None, event_id: str | None = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        self._emit("error", error={**error, "event_id": event_id})

    async def _clock(self) -> None:
        """Silence in real time while the client sends no audio, so that turns still end."""
        while True:
            await asyncio.sleep(FRAME_MS / 1000)
            if (time.monotonic() - self._fed_at) * 1000 >= _IDLE_CLOCK_MS:
                self._feed(bytes(FRAME_BYTES), idle=True)

    # -- client events -----------------------------------------------------------------------
    def _handle(self, message: str | None) -> None:
        if message is None:
            raise RealtimeError(
                "binary messages are not events: send each event as JSON text", "invalid_event"
            )
        try:
            event = json.loads(message)
        except json.JSONDecodeError as exc:
            raise RealtimeError(f"the event is not JSON: {exc}", "invalid_json") from exc
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise RealtimeError("an event is a JSON object with a string `type`", "invalid_event", "type")
        handler = _HANDLERS.get(event["type"])
        if handler is None:
            raise RealtimeError(
                f"unsupported event type {event['type']!r}; supported: {', '.join(sorted(_HANDLERS))}",
                "unsupported_event",
                "type",
            )
        handler(self, event)

    def _session_update(self, event: dict[str, Any]) -> None:
        session = _object(event, "session")
        audio = session.get("audio") or {}
        changes: dict[str, Any] = {}
        if (instructions := _field(session, _API_NAMES["system_prompt"])) is not _ABSENT:
            changes["system_prompt"] = str(instructions or "")
        if (voice := _field(session, _API_NAMES["voice"])) is not _ABSENT and voice is not None:
            changes["voice"] = "" if voice in _OPENAI_VOICES else str(voice)
        formats = [(audio.get("input") or {}).get("format"), (audio.get("output") or {}).get("format")]
        formats += [session.get("input_audio_format"), session.get("output_audio_format")]
        for value in formats:
            if value is not None and not _is_pcm16(value):
                raise RealtimeError(
                    f"audio format {value!r} is not supported: use PCM16 at 24 kHz (`audio/pcm`, or `pcm16`)",
                    "unsupported_audio_format",
                    "session.audio.input.format",
                )
        if (detection := _field(session, _TURN_DETECTION)) is not _ABSENT:
            changes.update(_turn_detection(detection))
        functions, choice = self._functions_of(session)
        if changes and self._conversation is not None:
            changed = {
                _API_NAMES[k]
                for k, v in changes.items()
                if getattr(self._settings, k) != v and k not in _ANY_TIME
            }
            if changed:
                # A field inside another one that changed (the turn_detection object) goes unsaid.
                outer = sorted(n for n in changed if not any(n.startswith(f"{o}.") for o in changed))
                raise RealtimeError(
                    f"{', '.join(f'session.{n}' for n in outer)} cannot change once the conversation has "
                    "begun: send session.update first, or open a new connection",
                    "session_fixed",
                    "session",
                )
        try:
            settings = dataclasses.replace(self._settings, **changes)
        except SettingError as exc:
            param = next((_api_name(f) for f in exc.fields if f in _API_NAMES), "session")
            raise RealtimeError(exc.render(_api_name), "invalid_value", param) from exc
        prompt = settings.system_prompt if settings.system_prompt != self._settings.system_prompt else None
        tools_changed = (functions, choice) != (self._functions.functions, self._functions.tool_choice)
        self._settings = settings
        self._functions.functions, self._functions.tool_choice = functions, choice
        if self._toolbox is not None:
            self._toolbox.tool_choice = choice
            self._toolbox.refresh()
        if self._conversation is not None and (prompt is not None or tools_changed):
            # From the next response on; one in progress goes on as it began.
            self._conversation.update(prompt, self._tools if tools_changed else None)
        self._emit("session.updated", session=self._session())

    def _functions_of(self, session: dict[str, Any]) -> tuple[list[Function], str]:
        """The functions and tool choice ``session`` sets (the ones before where it says nothing)."""
        declared = self._functions.functions
        choice = session.get("tool_choice", self._functions.tool_choice)
        try:
            if "tools" in session:
                declared = functions(session["tools"] or [], "session.tools", nested=False)
            names = [f.name for f in declared]
            if "tool_choice" not in session and choice not in (*_CHOICES, *names):
                choice = "auto"  # the function it named is gone
            return declared, tool_choice(choice, names, "session.tool_choice")
        except FunctionError as exc:
            raise RealtimeError(str(exc), "invalid_value", exc.param) from exc

    def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("`audio` must be base64 PCM16 at 24 kHz", "invalid_value", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except binascii.Error as exc:
            raise RealtimeError(f"`audio` is not base64: {exc}", "invalid_value", "audio") from exc
        if len(pcm) % 2:
            raise RealtimeError(
                "`audio` holds an odd number of bytes: PCM16 has 2 a sample", "invalid_value", "audio"
            )
        self._start()
        for frame in self._frames.feed(pcm):
            self._feed(frame)

    def _commit(self, event: dict[str, Any]) -> None:
        if not self._start().end_turn():
            raise RealtimeError(
                "no speech in the audio buffer to commit (nothing was heard since the last turn)",
                "input_audio_buffer_commit_empty",
            )

    def _clear(self, event: dict[str, Any]) -> None:
        self._frames.clear()
        if self._conversation is not None:
            self._conversation.drop_speech()
        self._emit("input_audio_buffer.cleared")

    def _create_item(self, event: dict[str, Any]) -> None:
        item = _object(event, "item")
        if item.get("type") == "function_call_output":
            self._function_output(item)
            return
        texts = [
            part.get("text", "")
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") in ("input_text", "text")
        ]
        if (
            item.get("type", "message") != "message"
            or item.get("role") != "user"
            or not "".join(texts).strip()
        ):
            raise RealtimeError(
                "only a user message with `input_text` content, or a `function_call_output`, can be added",
                "unsupported_item",
                "item",
            )
        self._start()
        item_id = str(item.get("id") or _new_id("item"))
        self._typed.append(" ".join(t.strip() for t in texts))
        added = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": item["content"],
        }
        self._emit("conversation.item.added", previous_item_id=self._last_item or None, item=added)
        self._last_item = item_id

    def _function_output(self, item: dict[str, Any]) -> None:
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(output, str):
            raise RealtimeError(
                "a function_call_output's `output` must be text (or JSON text)",
                "invalid_value",
                "item.output",
            )
        try:
            self._functions.output(str(call_id), output)
            previous = self._functions.item_of(str(call_id))
        except KeyError:
            raise RealtimeError(
                f"no function call {call_id!r} awaits its output (it was answered, or the turn is over)",
                "unknown_call_id",
                "item.call_id",
            ) from None
        item_id = str(item.get("id") or _new_id("item"))
        added = {"id": item_id, "type": "function_call_output", "call_id": call_id, "output": output}
        self._emit(
            "conversation.item.added", previous_item_id=previous, item={**added, "status": "completed"}
        )
        self._last_item = item_id
        if self._calling is not None and self._calling.interrupted and not self._functions.unanswered():
            self._functions.answer()  # the user spoke over the wait: the outputs go to the model now

    def _create_response(self, event: dict[str, Any]) -> None:
        conversation = self._start()
        if self._functions.waiting:
            if unanswered := self._functions.unanswered():
                raise RealtimeError(
                    f"function call {', '.join(unanswered)} awaits its output: add a function_call_output "
                    "item for each call first",
                    "function_call_output_missing",
                    "response",
                )
            self._functions.answer()
            return
        if not self._typed:
            if conversation.busy:
                return  # the turn just committed is being answered already
            raise RealtimeError(
                "nothing to respond to: add a user message or speak first",
                "response_create_empty",
                "response",
            )
        text, self._typed = " ".join(self._typed), []
        self._typed_turn = True
        try:
            conversation.ask(text, {"transcript_final": conversation.now_ms()})
        finally:
            self._typed_turn = False

    def _cancel(self, event: dict[str, Any]) -> None:
        conversation = self._start()
        if (current := conversation.current) is not None and current.id in self._responses:
            self._responses[current.id].cancelled = True
        if not conversation.cancel():
            raise RealtimeError("there is no response in progress to cancel", "response_cancel_not_active")

    # -- the conversation --------------------------------------------------------------------
    def _start(self) -> Conversation:
        if self._conversation is None:
            self._conversation = Conversation(
                self._settings, self._playback, self._show, events=self, tools=self._tools
            )
            self._conversation.start()
        return self._conversation

    @property
    def _tools(self) -> Tools:
        return self._toolbox if self._toolbox is not None else self._functions

    def _feed(self, frame: bytes, idle: bool = False) -> None:
        assert self._conversation is not None
        if not idle:
            self._fed_at = time.monotonic()
        self._conversation.feed(frame)
        self._playback.advance(FRAME_MS)

    def _show(self, kind: str, text: str) -> None:
        if kind == "note":
            log.info("realtime session: %s", text)
        elif kind == "state" and self._extras:
            self._emit("voice_agent.state", state=text)

    def speech_started(self, at_ms: float) -> None:
        self._user_item = _new_id("item")
        self._emit("input_audio_buffer.speech_started", audio_start_ms=round(at_ms), item_id=self._user_item)

    def speech_stopped(self, at_ms: float) -> None:
        self._emit("input_audio_buffer.speech_stopped", audio_end_ms=round(at_ms), item_id=self._user_item)
        self._emit(
            "input_audio_buffer.committed", previous_item_id=self._last_item or None, item_id=self._user_item
        )
        self._last_item = self._user_item

    def reply_started(self, turn: Turn) -> None:
        if not self._typed_turn:
            self._emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=self._user_item,
                content_index=0,
                transcript=turn.user_text,
            )
        for earlier in [r.turn for r in self._responses.values() if r.turn.interrupted]:
            self.reply_done(earlier)  # cut by this turn: done before this one begins
        self._respond(_Response(turn))
        if held := turn.agent_text:  # written while the reply was held
            self.reply_text(turn, held)

    def _respond(self, response: _Response) -> None:
        self._response = self._responses[response.turn.id] = response
        self._emit("response.created", response=self._response_body(response, "in_progress", []))

    def _message(self, response: _Response) -> dict[str, object]:
        """The response's message item, added to it with its first text (or audio)."""
        if response.message_at is None:
            response.message_at = len(response.output)
            response.output.append({})
            item = {"id": response.item_id, "type": "message", "role": "assistant"}
            self._emit(
                "response.output_item.added",
                response_id=response.id,
                output_index=response.message_at,
                item={**item, "status": "in_progress", "content": []},
            )
        return self._part(response)

    def reply_text(self, turn: Turn, text: str) -> None:
        if (response := self._responses.get(turn.id)) is None or response.done:
            return  # held: it goes out with the rest of the text when the reply is released
        response.text += text
        self._emit("response.output_audio_transcript.delta", **self._message(response), delta=text)

    def _audio_out(self, pcm: bytes) -> None:
        if (response := self._response) is not None:
            # Audio of a response done with a call still goes out under it (it was written before).
            part = self._part(response) if response.done else self._message(response)
            self._emit("response.output_audio.delta", **part, delta=base64.b64encode(pcm).decode())

    def reply_done(self, turn: Turn) -> None:
        response = self._responses.pop(turn.id, None)
        if response is None:
            return
        if self._response is response:
            self._response = None
        if response.done:
            return  # done with a call; the turn ended before the client answered it
        if turn.interrupted:
            transcript = turn.heard_text.removeprefix(response.earlier.strip()).strip()
        else:
            transcript = response.text.strip() or turn.apology  # what the failed reply's audio says
        self._end_message(response, transcript)
        body = self._response_body(
            response,
            "failed" if turn.error else "cancelled" if turn.interrupted else "completed",
            response.output,
        )
        if turn.interrupted:
            reason = "client_cancelled" if response.cancelled else "turn_detected"
            body["status_details"] = {"type": "cancelled", "reason": reason}
        if turn.error:
            body["status_details"] = {
                "type": "failed",
                "error": {"type": "server_error", "message": turn.error},
            }
        self._emit("response.done", response=body)
        self._last_item = response.item_id
        if self._extras:
            self._emit("voice_agent.turn", response_id=response.id, t_ms=rounded(turn.t_ms))

    def _end_message(self, response: _Response, transcript: str) -> None:
        part = self._message(response)
        self._emit("response.output_audio.done", **part)
        self._emit("response.output_audio_transcript.done", **part, transcript=transcript)
        item: dict[str, object] = {
            "id": response.item_id,
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_audio", "transcript": transcript}],
        }
        response.output[response.message_at or 0] = item
        self._emit(
            "response.output_item.done", response_id=response.id, output_index=part["output_index"], item=item
        )

    # -- the client's functions --------------------------------------------------------------
    async def _function_call(self, call: ToolCall) -> str:
        """The model calls one of the client's functions: a function_call item of the response in
        progress, which is done with it (and with the other calls made at once)."""
        turn = self._conversation.current if self._conversation is not None else None
        if turn is not None and turn.tentative:
            await turn.confirmed.wait()  # a held reply calls out only once the user's turn is over
        response = self._responses.get(turn.id) if turn is not None and not turn.retracted else None
        if response is None or response.done:
            raise ToolError("the reply was withdrawn before the function was called")
        if response.message_at is not None:
            self._end_message(response, response.text.strip())
        self._calling = turn
        item_id, index = _new_id("item"), len(response.output)
        response.output.append(call_item(item_id, call, "completed"))
        at = {"response_id": response.id, "output_index": index}
        self._emit("response.output_item.added", **at, item=call_item(item_id, call, "in_progress"))
        arguments = json.dumps(call.arguments)
        ids = {"item_id": item_id, "call_id": call.id}
        self._emit("response.function_call_arguments.delta", **at, **ids, delta=arguments)
        self._emit("response.function_call_arguments.done", **at, **ids, name=call.name, arguments=arguments)
        self._emit("response.output_item.done", **at, item=response.output[index])
        self._last_item = item_id
        if response.finishing is not None:
            response.finishing.cancel()
        # Calls made together go out in one response: it is done once they all have.
        response.finishing = asyncio.get_running_loop().call_soon(self._done_with_calls, response)
        return item_id

    def _done_with_calls(self, response: _Response) -> None:
        response.done = True
        self._emit("response.done", response=self._response_body(response, "completed", response.output))

    def _answered(self) -> None:
        """The client answered the calls and asks for a response: the turn goes on in a new one
        (unless the user spoke over the wait: the turn then ends with the outputs)."""
        if (turn := self._calling) is not None and not turn.interrupted:
            before = self._responses.get(turn.id)
            earlier = (before.earlier + before.text) if before is not None else ""
            self._respond(_Response(turn, earlier=earlier))

    @staticmethod
    def _part(response: _Response) -> dict[str, object]:
        return {
            "response_id": response.id,
            "item_id": response.item_id,
            "output_index": response.message_at or 0,
            "content_index": 0,
        }

    @staticmethod
    def _response_body(response: _Response, status: str, output: list[dict[str, object]]) -> dict[str, Any]:
        return {"id": response.id, "object": "realtime.response", "status": status, "output": output}

    def _session(self) -> dict[str, object]:
        settings = self._settings
        detection: dict[str, object] | None = None
        if settings.silence_ms != _MANUAL_SILENCE_MS:
            kind = "semantic_vad" if settings.turn_detector == "bounded" else "server_vad"
            detection = {"type": kind, "silence_duration_ms": settings.end_silence_ms}
        pcm = {"type": "audio/pcm", "rate": API_RATE_HZ}
        tools = [
            {"type": "function", "name": f.name, "description": f.description, "parameters": f.parameters}
            for f in self._functions.functions
        ]
        return {
            "type": "realtime",
            "object": "realtime.session",
            "instructions": settings.system_prompt,
            "tools": tools,
            "tool_choice": self._functions.tool_choice,
            "audio": {
                "input": {"format": pcm, "turn_detection": detection},
                "output": {"format": pcm, "voice": settings.voice},
            },
        }


# The session's fields (paths in the current API's layout), by the conversation setting each one sets.
_API_NAMES = {name: s.api for name, s in SETTINGS.items() if s.api}
# The object whose type picks the turn detector, and that sets its silence and pause.
_TURN_DETECTION = _API_NAMES["turn_detector"].removesuffix(".type")
_ABSENT = object()
# Settings a session may change once the conversation has begun: from the next response on.
_ANY_TIME = {"system_prompt"}
_CHOICES = ("auto", "none", "required")
_OPENAI_VOICES = {"alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse"}
_HANDLERS: dict[str, Callable[[RealtimeSession, dict[str, Any]], None]] = {
    "session.update": RealtimeSession._session_update,
    "input_audio_buffer.append": RealtimeSession._append,
    "input_audio_buffer.commit": RealtimeSession._commit,
    "input_audio_buffer.clear": RealtimeSession._clear,
    "conversation.item.create": RealtimeSession._create_item,
    "response.create": RealtimeSession._create_response,
    "response.cancel": RealtimeSession._cancel,
}


def _object(event: dict[str, Any], name: str) -> dict[str, Any]:
    value = event.get(name)
    if not isinstance(value, dict):
        raise RealtimeError(f"`{name}` must be an object", "invalid_value", name)
    return value


def _is_pcm16(value: object) -> bool:
    if isinstance(value, dict):
        return value.get("type") == "audio/pcm" and value.get("rate", API_RATE_HZ) == API_RATE_HZ
    return value == "pcm16"


def _field(session: dict[str, Any], path: str) -> Any:
    """The value at ``path`` in ``session`` (``audio.output.voice``), or at the beta API's place for
    it (``voice``); ``_ABSENT`` where neither is given."""
    for where in (path, path.removeprefix("audio.input.").removeprefix("audio.output.")):
        *parents, last = where.split(".")
        node: Any = session
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            return node[last]
    return _ABSENT


def _api_name(name: str) -> str:
    """A conversation setting as a Realtime client knows it: its session field, or the gateway's own."""
    return f"session.{_API_NAMES[name]}" if name in _API_NAMES else f"the gateway's {name}"


def _turn_detection(detection: object) -> dict[str, Any]:
    """The conversation settings for the API's ``turn_detection``."""
    if detection is None:
        return {"turn_detector": "silence", "silence_ms": _MANUAL_SILENCE_MS, "pause_ms": 0}
    if not isinstance(detection, dict) or detection.get("type") not in ("server_vad", "semantic_vad"):
        raise RealtimeError(
            "turn_detection must be null, or of type server_vad or semantic_vad",
            "invalid_value",
            f"session.{_TURN_DETECTION}",
        )
    silence = detection.get("silence_duration_ms")
    if silence is not None and (not isinstance(silence, int) or silence <= 0):
        raise RealtimeError(
            "silence_duration_ms must be a whole number of milliseconds above 0",
            "invalid_value",
            _api_name("silence_ms"),
        )
    bounded = detection["type"] == "semantic_vad"
    return {"turn_detector": "bounded" if bounded else "silence", "silence_ms": silence, "pause_ms": None}


def router(base: ConversationSettings, tokens: Tokens) -> APIRouter:
    """``/v1/realtime``; with tokens, one in ``Authorization: Bearer`` or the browser's
    ``openai-insecure-api-key.<token>`` subprotocol."""
    routes = APIRouter()

    @routes.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        keys = [
            p.removeprefix("openai-insecure-api-key.")
            for p in offered
            if p.startswith("openai-insecure-api-key.")
        ]
        header = ws.headers.get("authorization") or (f"Bearer {keys[0]}" if keys else None)
        if reason := refusal(tokens, header):
            await ws.send_denial_response(Unauthenticated(reason).response())
            return
        await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        beta = "realtime=v1" in ws.headers.get("openai-beta", "")
        extras = ws.query_params.get("voice_agent_events") == "true"
        served = getattr(ws.app.state, "tools", None)  # the gateway's tools (MCP servers, the clock)
        await RealtimeSession(ws, base, beta, extras, served).run()

    return routes
