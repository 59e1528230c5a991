"""Metrics of the bridge service, registered next to the server's gRPC metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import INFERENCE_BUCKETS

__all__ = ["BridgeMetrics"]


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.upstream_seconds = Histogram(
            "bridge_upstream_request_duration_seconds",
            "Time one HTTP request to a provider takes (submit, poll, fetch, download), in seconds.",
            ("provider",),
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "bridge_requests",
            "Provider attempts, by provider and outcome (succeeded, failed, skipped_*).",
            ("provider", "outcome"),
            registry=registry,
        )
        self.circuit_open = Gauge(
            "bridge_circuit_open",
            "1 while a provider's circuit breaker is open (the provider is skipped), else 0.",
            ("provider",),
            registry=registry,
        )
        self.running_requests = Gauge(
            "bridge_running_requests", "Bridge calls being served now.", registry=registry
        )
