"""Tracing with OpenTelemetry: off unless the standard variables turn it on.

Every process (the edge client, the gateway, the three services) calls ``setup`` once at
start. With neither ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
nor ``OTEL_TRACES_EXPORTER`` set, nothing is installed: the tracer is OpenTelemetry's no-op one
and no exporter runs. Once on, the SDK reads the other standard variables itself
(``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
``OTEL_EXPORTER_OTLP_HEADERS``...), and the grpc.aio instrumentors give every call a span and
carry the trace context in the call's metadata.

The streams to the services live across turns, so a stream's own span cannot be a turn's.
Each request that starts a turn's work (an end of utterance, a user turn, a reply's first
text) carries the turn's context in its ``traceparent`` field, and the service's span of that
work is a child of the turn's span: one trace from the front door through the three services.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context, trace
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_state: dict[str, object] = {}  # the provider and the instrumentors, once set up


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    return bool(_state.get("on"))


def service_name() -> str:
    """The name the process gave ``setup``: which front door or service it is."""
    return str(_state.get("service", ""))


def setup(service_name: str, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on where the variables ask for it (or to ``exporter``, which also exports
    each span as it ends); False when it stays off. ``OTEL_SERVICE_NAME`` overrides the name."""
    if exporter is None and not configured():
        return False
    for name in [n for n, value in os.environ.items() if n.startswith("OTEL_") and not value]:
        del os.environ[name]  # empty is unset (compose passes each one through, set or not)
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    from opentelemetry.instrumentation.grpc.filters import health_check, negate
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = _state.get("provider")
    if not isinstance(provider, TracerProvider):  # the global provider can be set once only
        provider = _state["provider"] = TracerProvider(
            resource=Resource.create({"service.name": service_name})
        )
        trace.set_tracer_provider(provider)
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(_exporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    not_health = negate(health_check())  # a health check at every reconnect says nothing of a turn
    client = GrpcAioInstrumentorClient(filter_=not_health)  # type: ignore[no-untyped-call]
    server = GrpcAioInstrumentorServer(not_health)  # type: ignore[no-untyped-call]
    for instrumentor in (client, server):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
    _state.update(on=True, service=service_name)
    return True


def shutdown() -> None:
    """Export what is left and turn tracing off again (the grpc.aio instrumentors too)."""
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    from opentelemetry.sdk.trace import TracerProvider

    for instrumentor in (GrpcAioInstrumentorClient(), GrpcAioInstrumentorServer()):  # type: ignore[no-untyped-call]
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    if isinstance(provider := _state.get("provider"), TracerProvider):
        provider.force_flush()
    _state["on"] = False


def _exporter() -> SpanExporter:
    """The exporter the variables name: OTLP over gRPC (the default) or HTTP, or the console."""
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        from foundation.errors import ConfigError

        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported here; use otlp, console or none")
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def traceparent(span: trace.Span) -> str:
    """The W3C ``traceparent`` of ``span``; empty when it records nothing."""
    if not span.get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


def context_of(traceparent: str) -> context.Context | None:
    """The context a ``traceparent`` names, to parent a span on; None for an empty one (the
    span then goes under whatever is current: the call's own span)."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})
