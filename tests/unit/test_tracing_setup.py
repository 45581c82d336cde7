"""Tracing is off unless the standard variables ask for it; off, nothing is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from foundation.tracing import configured
from harness.speech import REPO

# Run in a fresh interpreter: the global tracer provider can be set only once in a process.
PROBE = """
import json, grpc
from opentelemetry import trace
from conversation.agent import Events
from conversation.settings import ConversationSettings
from conversation.tracing import Tracing, traced
from foundation import tracing
on = tracing.setup("voice-probe")
show, events = print, Events()
spans, shown, told = traced(ConversationSettings(), show, events, lambda: 0.0)
print(json.dumps({
    "on": on,
    "provider": type(trace.get_tracer_provider()).__name__,
    "span": type(trace.get_tracer("probe").start_span("x")).__name__,
    "channel_wrapped": grpc.aio.insecure_channel.__module__ != "grpc.aio._channel",
    "passed_through": type(spans) is Tracing and shown is show and told is events,
}))
"""


def _probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_off_without_the_variables_nothing_is_installed() -> None:
    assert _probe() == {
        "on": False,
        "provider": "ProxyTracerProvider",
        "span": "NonRecordingSpan",
        "channel_wrapped": False,
        "passed_through": True,
    }


def test_on_with_an_exporter_named_the_sdk_and_the_instrumentors_are_installed() -> None:
    result = _probe(OTEL_TRACES_EXPORTER="console", OTEL_EXPORTER_OTLP_ENDPOINT="")
    assert result == {
        "on": True,
        "provider": "TracerProvider",
        "span": "_Span",
        "channel_wrapped": True,
        "passed_through": False,
    }


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),  # compose passes it through empty
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, False),
    ],
)
def test_the_variables_that_turn_it_on(env: dict[str, str], on: bool) -> None:
    assert configured(env) is on
