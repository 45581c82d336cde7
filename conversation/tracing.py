"""Each turn of the conversation as a span, when tracing is on (``foundation.tracing``).

    conversation (voice.conversation.id, voice.front_door)
      turn (voice.turn.id, interrupted, withdrawn, held, voice.voice_to_voice_ms; an event at
            each of its times: speech_end, end_of_turn, transcript_final, first_token,
            first_audio, paused, barge_in, resumed, backchannel, held, released, withdrawn;
            fault and reconnect events when a link to a service breaks or comes back)
        end_of_turn (detector, verdicts, probabilities, wait ms)
        stt.final, chat <model>, tts      the services' spans of this turn's work
        execute_tool <name>               each tool the reply called (its arguments and result unrecorded)
      the streams to the services (the grpc.aio instrumentor's spans)

A turn's span begins with the user's speech: the STT service is asked for its final with the
span's context, and the chat and speech services get the same context with the turn they
are asked for; a held reply withdrawn because the user went on stays in the same span, and
the next one answers it there. Speech that gets no reply (a cough, a listener's "mm-hmm")
ends as a ``speech`` span. The rest is taken from the turn's report line when it is reported.

No words of the user's or the agent's go in a span unless
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
Off, ``traced`` hands back the front end's ``show`` and events untouched.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from conversation.agent import Events
from conversation.links import Links
from conversation.settings import ConversationSettings
from conversation.turn import Turn
from foundation import tracing

Show = Callable[[str, str], None]
_tracer = trace.get_tracer("voice.conversation")
# What a link's note says of its service that is back; a tool's note begins so; any other is a fault.
_BACK = "is back"
_TOOL = "tool "
# The OpenTelemetry GenAI instrumentations' switch for recording what was said.
CAPTURE_WORDS = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class Tracing:
    """No tracing: the front end's ``show`` and events as they are."""

    def __init__(self, show: Show, events: Events) -> None:
        self.show = show
        self.events = events

    def start(self, links: Links) -> None:
        links.start()

    async def close(self, links: Links) -> None:
        await links.close()


def traced(
    settings: ConversationSettings, show: Show, events: Events, now_ms: Callable[[], float]
) -> tuple[Tracing, Show, Events]:
    """The conversation's tracing, and what it tells its front end (tapped for spans when on)."""
    spans = TurnSpans(settings, show, events, now_ms) if tracing.enabled() else Tracing(show, events)
    return spans, spans.show, spans.events


class TurnSpans(Tracing):
    """The conversation's spans, from what it tells its front end and what its links ask for."""

    def __init__(
        self, settings: ConversationSettings, show: Show, events: Events, now_ms: Callable[[], float]
    ) -> None:
        super().__init__(self._note(show), events)
        self._settings = settings
        self._now_ms = now_ms
        self._words = os.environ.get(CAPTURE_WORDS, "").lower() == "true"
        self._conversation: Span = trace.INVALID_SPAN
        self._heard_from_ms: float | None = None  # where the user's speech being heard began
        self._pending: Span | None = None  # the turn being heard, before its reply starts
        self._turns: dict[int, Span] = {}  # by turn id (a withdrawn reply and the next share one)
        self._done: Turn | None = None
        self._replying: Turn | None = None  # the reply in progress, and its calls traced so far
        self._calls_traced = 0
        # The front end's own events go on; these are tapped on the way.
        for name in ("speech_started", "reply_started", "reply_done", "reported"):
            setattr(events, name, _both(getattr(self, f"_{name}"), getattr(events, name)))

    def start(self, links: Links) -> None:
        self._conversation = _tracer.start_span(
            "conversation",
            # Under the door's own span where it has one (the gateway's WebSocket), else a root.
            attributes={
                "voice.conversation.id": uuid.uuid4().hex,
                "voice.front_door": self.events.door or tracing.service_name(),
                "voice.turn_detector": self._settings.turn_detector,
            },
        )
        links.trace(self._trace_of)
        with trace.use_span(self._conversation):  # the streams' own spans go under it
            links.start()

    async def close(self, links: Links) -> None:
        await links.close()
        if self._pending is not None:
            self._unanswered(self._pending)
        for span in {id(s): s for s in self._turns.values()}.values():
            span.set_attribute("voice.turn.unfinished", True)
            span.end()
        self._turns.clear()
        self._conversation.end()

    def _wall_ns(self, at_ms: float) -> int:
        """The wall-clock time of ``at_ms`` on the conversation's clock."""
        return time.time_ns() - int((self._now_ms() - at_ms) * 1e6)

    def _open(self) -> Span:
        start = None if self._heard_from_ms is None else self._wall_ns(self._heard_from_ms)
        self._pending = _tracer.start_span(
            "turn", context=trace.set_span_in_context(self._conversation), start_time=start
        )
        return self._pending

    def _trace_of(self, turn_id: int) -> str:
        """The traceparent of a turn's requests (0: the turn being heard)."""
        span = self._turns.get(turn_id) or self._pending or self._open()
        if turn_id:
            self._turns[turn_id] = span
        return tracing.traceparent(span)

    def _note(self, show: Show) -> Show:
        def noted(kind: str, text: str) -> None:
            if kind == "note" and text.startswith(_TOOL):
                self._tool_calls()
            elif kind == "note":
                name = "reconnect" if _BACK in text else "fault"
                spans = [*self._turns.values(), *([self._pending] if self._pending else [])]
                for span in {id(s): s for s in spans}.values() or [self._conversation]:
                    span.add_event(name, {"message": text})
            show(kind, text)

        return noted

    def _speech_started(self, at_ms: float) -> None:
        if self._pending is not None:
            self._unanswered(self._pending)  # heard, and no reply came of it
        self._heard_from_ms = at_ms

    def _unanswered(self, span: Span) -> None:
        span.update_name("speech")
        span.set_attribute("voice.replied", False)
        span.end()
        for turn_id in [i for i, s in self._turns.items() if s is span]:
            del self._turns[turn_id]
        if span is self._pending:
            self._pending = None

    def _reply_started(self, turn: Turn) -> None:
        self._turns[turn.id] = self._turns.get(turn.id) or self._pending or self._open()
        self._pending, self._heard_from_ms = None, None
        self._replying, self._calls_traced = turn, 0

    def _tool_calls(self) -> None:
        """The reply's tool calls that have ended since the last: a span each (GenAI's execute_tool)."""
        turn = self._replying
        if turn is None or (parent := self._turns.get(turn.id)) is None:
            return
        ended = [call for call in turn.calls if "ms" in call]
        now = time.time_ns()
        for call in ended[self._calls_traced :]:
            ms = call["ms"]
            span = _tracer.start_span(
                f"execute_tool {call['name']}",
                context=trace.set_span_in_context(parent),
                start_time=now - int(ms * 1e6) if isinstance(ms, int | float) else now,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": str(call["name"]),
                    "voice.tool.failed": bool(call.get("error")),
                },
            )
            if call.get("error"):
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=now)
        self._calls_traced = len(ended)

    def _reply_done(self, turn: Turn) -> None:
        self._done = turn

    def _reported(self, line: dict[str, object]) -> None:
        turn, self._done = self._done, None
        if turn is None or (span := self._turns.get(turn.id)) is None:
            return
        for turn_id in [i for i, s in self._turns.items() if s is span]:
            del self._turns[turn_id]
        self._finish(span, turn, line)

    def _finish(self, span: Span, turn: Turn, line: dict[str, object]) -> None:
        t = turn.t_ms
        withdrawn = [w for w in turn.withdrawn if isinstance(w.get("t_ms"), dict)]
        span.set_attributes(
            {
                "voice.turn.id": turn.id,
                "voice.turn.interrupted": turn.interrupted,
                "voice.turn.withdrawn": len(withdrawn),
                "voice.turn.held": "held" in t,
                "voice.turn.backchannels": len(turn.backchannels),
            }
        )
        if "speech_end" in t:
            for name in ("transcript_final", "first_token", "first_audio"):
                if name in t:
                    span.set_attribute(f"voice.{name}_ms", round(t[name] - t["speech_end"], 1))
            if "first_audio" in t:
                span.set_attribute("voice.voice_to_voice_ms", round(t["first_audio"] - t["speech_end"], 1))
        if self._words:
            span.set_attributes(
                {"voice.user_text": turn.user_text, "voice.agent_text": str(line["agent_text"])}
            )
        times = [(at, name) for name, at in t.items() if name != "speech_start"]
        for held in withdrawn:
            if isinstance(held_t := held["t_ms"], dict) and "withdrawn" in held_t:
                times.append((held_t["withdrawn"], "withdrawn"))
        for at, name in sorted(times):
            span.add_event(name, timestamp=self._wall_ns(at))
        self._end_of_turn(span, turn)
        if turn.error:
            span.add_event("fault", {"message": turn.error})
            span.set_status(Status(StatusCode.ERROR, turn.error))
        span.end()

    def _end_of_turn(self, parent: Span, turn: Turn) -> None:
        """How long the user's turn took to be judged over, and what was judged of its pauses."""
        t = turn.t_ms
        end = t.get("end_of_turn", t.get("transcript_final"))
        if "speech_end" not in t or end is None:
            return
        judged = turn.judged
        attributes: dict[str, str | float | list[str] | list[float]] = {
            "voice.turn_detector": self._settings.turn_detector,
            "voice.wait_ms": round(end - t["speech_end"], 1),
            "voice.verdicts": [str(j.get("verdict")) for j in judged],
        }
        probabilities = [p for j in judged if isinstance(p := j.get("probability"), float | int)]
        if probabilities:
            attributes["voice.probabilities"] = [float(p) for p in probabilities]
        span = _tracer.start_span(
            "end_of_turn",
            context=trace.set_span_in_context(parent),
            start_time=self._wall_ns(t["speech_end"]),
            attributes=attributes,
        )
        span.end(end_time=self._wall_ns(end))


def _both(first: Callable[..., None], then: Callable[..., None]) -> Callable[..., None]:
    def call(*args: object) -> None:
        first(*args)
        then(*args)

    return call
