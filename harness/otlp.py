"""A small OTLP/gRPC trace receiver, in a thread of its own: what the processes exported.

It runs apart from any event loop on purpose: an exporter flushing on the loop that would
also serve the receiver waits for itself.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


@dataclass(frozen=True)
class Span:
    """One received span, with the name of the service that sent it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    start_ns: int
    end_ns: int
    attributes: dict[str, object]
    events: list[tuple[str, int, dict[str, object]]]  # (name, time, attributes)
    status_code: int  # 2: error


def _value(value: common_pb2.AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: list[common_pb2.KeyValue]) -> dict[str, object]:
    return {pair.key: _value(pair.value) for pair in pairs}


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            service = str(_attributes(list(resource_spans.resource.attributes)).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    events = [
                        (e.name, e.time_unix_nano, _attributes(list(e.attributes))) for e in span.events
                    ]
                    received.append(
                        Span(
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            _attributes(list(span.attributes)),
                            events,
                            span.status.code,
                        )
                    )
        with self._lock:
            self.spans += received
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass
class Received:
    port: int
    _receiver: _Receiver

    @property
    def spans(self) -> list[Span]:
        with self._receiver._lock:
            return list(self._receiver.spans)

    def wait_for(self, done: Callable[[list[Span]], bool], timeout_s: float = 30) -> list[Span]:
        """The spans once ``done`` says they are all there (the exporters send in batches)."""
        deadline = time.monotonic() + timeout_s
        while not done(spans := self.spans) and time.monotonic() < deadline:
            time.sleep(0.2)
        return spans


def compose_host() -> str:
    """The address the compose stack's containers reach this machine at: where to listen for them."""
    return subprocess.run(
        ["docker", "network", "inspect", "voice-agent_default", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@contextmanager
def otlp_receiver(host: str = "127.0.0.1") -> Iterator[Received]:
    """An OTLP/gRPC receiver on ``host`` and a free port."""
    receiver = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        yield Received(port, receiver)
    finally:
        server.stop(0)
