"""Prometheus metrics shared by the services, served on a per-service HTTP port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Latencies of a voice pipeline live between a few ms and a few seconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)

STAGE_LATENCY = Histogram(
    "voice_stage_latency_seconds",
    "Latency of one processing stage.",
    ["service", "stage"],
    buckets=LATENCY_BUCKETS_S,
)
RPCS = Counter("voice_rpcs_total", "RPCs finished, by method and status code.", ["method", "code"])
ACTIVE_STREAMS = Gauge("voice_active_rpcs", "RPCs in progress.", ["method"])
REJECTED = Counter(
    "voice_rpcs_rejected_total", "RPCs refused because the server was at its limit.", ["method"]
)

# Reasons are a fixed set (unauthenticated, client_streams, client_requests, idle); never a client's name.
REFUSED = Counter(
    "voice_rpcs_refused_total", "RPCs refused by access control or per-client limits.", ["method", "reason"]
)


def serve_metrics(port: int) -> None:
    """Expose /metrics on ``port``; 0 turns metrics serving off."""
    if port:
        start_http_server(port)
