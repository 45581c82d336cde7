"""Each turn's speech as a span: from its first text to its done, with the time to its first
audio and the pieces it was spoken in. A child of the client's turn where the requests name it
(their ``traceparent``); the words are not recorded."""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry import trace

from foundation.tracing import context_of
from services.tts.session import Audio, Done, Event

_tracer = trace.get_tracer("voice.tts")


@dataclass
class _Speech:
    span: trace.Span
    started: float  # time.monotonic()
    pieces: int = 0


class SpeechSpans:
    """The spans of one stream's turns, by turn id."""

    def __init__(self) -> None:
        self._open: dict[int, _Speech] = {}

    def asked(self, turn_id: int, traceparent: str) -> None:
        """A request of ``turn_id`` came: its span begins with the first."""
        if turn_id not in self._open:
            span = _tracer.start_span("tts", context_of(traceparent), attributes={"voice.turn.id": turn_id})
            self._open[turn_id] = _Speech(span, time.monotonic())

    def said(self, event: Event) -> None:
        speech = self._open.get(event.turn_id)
        if speech is None:
            return
        if isinstance(event, Audio):
            if not speech.pieces and event.text:
                ms = (time.monotonic() - speech.started) * 1000
                speech.span.add_event("first_audio")
                speech.span.set_attribute("voice.time_to_first_audio_ms", round(ms, 1))
            speech.pieces += bool(event.text)
            return
        assert isinstance(event, Done)
        del self._open[event.turn_id]
        speech.span.set_attributes(
            {
                "voice.tts.pieces": speech.pieces,
                "voice.tts.audio_ms": event.audio_ms,
                "voice.tts.cancelled": event.cancelled,
            }
        )
        speech.span.end()

    def close(self) -> None:
        """The stream ended: turns still open end with it."""
        for speech in self._open.values():
            speech.span.set_attribute("voice.tts.pieces", speech.pieces)
            speech.span.end()
        self._open.clear()
