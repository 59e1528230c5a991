"""Prometheus metrics every server exports, and the /metrics HTTP endpoint.

Metrics live in a registry owned by the server (not the process-global default), so several servers
in one process — tests, the embedded stack — keep their own counts. Names follow Prometheus' naming
guide and go-grpc-prometheus: base units, `_total` counters, `_seconds` histograms.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["INFERENCE_BUCKETS", "MetricsEndpoint", "ServerMetrics", "serve_metrics"]

_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# From 1 ms to 10 min: tiling calls take milliseconds, a diffusion batch minutes.
HANDLING_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
INFERENCE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


@dataclass
class ServerMetrics:
    """The gRPC server metrics, registered in `registry`, plus `<service>_build_info`."""

    service: str
    version: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.started = Counter(
            "grpc_server_started",
            "RPCs started on the server.",
            _RPC_LABELS,
            registry=self.registry,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            (*_RPC_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end, in seconds.",
            _RPC_LABELS,
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )
        self.build_info = Gauge(
            f"{self.service}_build_info",
            f"Build of the {self.service} service; the value is always 1.",
            ("version",),
            registry=self.registry,
        )
        self.build_info.labels(version=self.version).set(1)


@dataclass
class MetricsEndpoint:
    """A running /metrics HTTP server."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve `registry` at http://host:port/metrics from a daemon thread (port 0 picks a free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread)
