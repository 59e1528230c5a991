"""Metrics of the tiling service, registered next to the server's gRPC metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import HANDLING_BUCKETS

__all__ = ["TilingMetrics"]


class TilingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tiles_processed = Counter(
            "tiling_tiles_processed",
            "Tiles cut, blended or rendered, by operation.",
            ("operation",),
            registry=registry,
        )
        self.queue_requests = Gauge(
            "tiling_queue_requests", "Image operations waiting for a worker.", registry=registry
        )
        self.running_requests = Gauge(
            "tiling_running_requests", "Image operations running now.", registry=registry
        )
        self.operation_seconds = Histogram(
            "tiling_operation_duration_seconds",
            "Time an image operation spends on a worker, in seconds.",
            ("operation",),
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )
        self.pixels_processed = Counter(
            "tiling_pixels_processed",
            "Output pixels produced, by operation.",
            ("operation",),
            registry=registry,
        )
