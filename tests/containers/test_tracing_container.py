"""Traces from the composed stack and the edge client's own process, set up by the variable alone.

An OTLP/gRPC receiver (``harness.otlp``) listens on the compose network's gateway; the services
are recreated with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at it (and put back as they were
after), and ``voice-agent`` runs on a spoken question with the same variable. What the receiver
got is checked: one trace, the turn's span from the edge client with the three services' spans
of its work under it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from foundation.audio import FRAME_MS
from harness.edge import silence, voice_agent
from harness.otlp import Span, compose_host, otlp_receiver
from harness.speech import english
from tests.containers.conftest import compose

SERVICES = ("stt", "llm", "tts")


def _whole(spans: list[Span]) -> bool:
    """The turn and the services' spans of it have come, and the conversation has ended."""
    turns = [s for s in spans if s.name == "turn"]
    if not turns or not any(s.name == "conversation" for s in spans):
        return False
    under = {s.name.split(" ")[0] for s in spans if s.parent_id == turns[0].span_id}
    return {"stt.final", "chat", "tts"} <= under


async def test_a_spoken_turn_is_one_trace_across_the_processes(
    stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = compose_host()
    with otlp_receiver(host) as received:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{host}:{received.port}")
        await asyncio.to_thread(compose, "up", "-d", "--wait", *SERVICES)
        try:
            said = english()[7]
            pcm = silence(0.5) + said.pcm() + silence(3.0)
            session = await asyncio.to_thread(voice_agent, tmp_path, pcm, "--max-tokens", "40")
            spans = await asyncio.to_thread(received.wait_for, _whole)
        finally:
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            await asyncio.to_thread(compose, "up", "-d", "--wait", *SERVICES)  # as they were
    assert len(session.turns) == 1, session.stderr
    assert _whole(spans), sorted({(s.service, s.name) for s in spans})
    (turn,) = [s for s in spans if s.name == "turn"]
    trace = [s for s in spans if s.trace_id == turn.trace_id]
    # One trace across the four processes, every span under one that was received.
    assert {s.service for s in trace} >= {"voice-agent", "voice-stt", "voice-llm", "voice-tts"}
    ids = {s.span_id for s in trace}
    assert [s.name for s in trace if not s.parent_id] == ["conversation"]
    [conversation] = [s for s in trace if s.name == "conversation"]
    assert conversation.attributes["voice.front_door"] == "edge-client"
    assert not [s.name for s in trace if s.parent_id and s.parent_id not in ids]
    # The services' spans of the turn's work, each from its own service, under the turn.
    under = {s.name.split(" ")[0]: s for s in trace if s.parent_id == turn.span_id}
    assert (under["stt.final"].service, under["chat"].service, under["tts"].service) == (
        "voice-stt",
        "voice-llm",
        "voice-tts",
    )
    assert under["chat"].attributes["gen_ai.operation.name"] == "chat"
    assert isinstance(out := under["chat"].attributes["gen_ai.usage.output_tokens"], int) and out > 0
    # Voice to voice as the report has it.
    t = session.turns[0]["t_ms"]
    assert isinstance(t, dict)
    v2v = turn.attributes["voice.voice_to_voice_ms"]
    assert isinstance(v2v, float) and abs(v2v - (t["first_audio"] - t["speech_end"])) <= FRAME_MS
