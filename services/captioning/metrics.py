"""Metrics of the captioning service, registered next to the server's gRPC metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import INFERENCE_BUCKETS

__all__ = ["CaptioningMetrics"]


class CaptioningMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_requests = Gauge(
            "captioning_queue_requests", "Calls waiting for the GPU.", registry=registry
        )
        self.running_requests = Gauge(
            "captioning_running_requests", "Calls running on the GPU.", registry=registry
        )
        self.inference_seconds = Histogram(
            "captioning_inference_duration_seconds",
            "Time a Caption call spends on the GPU, in seconds.",
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.captions = Counter(
            "captioning_captions", "Captions returned (generated or from the cache).", registry=registry
        )
        self.cache_hits = Counter(
            "captioning_cache_hits", "Captions answered from the cache.", registry=registry
        )
