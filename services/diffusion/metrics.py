"""Metrics of the diffusion service, registered next to the server's gRPC metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import INFERENCE_BUCKETS

__all__ = ["DiffusionMetrics"]

_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class DiffusionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_requests = Gauge(
            "diffusion_queue_requests", "Calls waiting for the GPU.", registry=registry
        )
        self.running_requests = Gauge(
            "diffusion_running_requests", "Calls running on the GPU.", registry=registry
        )
        self.inference_seconds = Histogram(
            "diffusion_inference_duration_seconds",
            "Time a call spends on the GPU, by operation, in seconds.",
            ("operation",),
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.denoise_step_seconds = Histogram(
            "diffusion_denoise_step_duration_seconds",
            "Time of one denoising step of a batch, in seconds.",
            buckets=_STEP_BUCKETS,
            registry=registry,
        )
        self.images_generated = Counter(
            "diffusion_images_generated",
            "Images produced, by operation (img2img tiles, txt2img images, upscales).",
            ("operation",),
            registry=registry,
        )
