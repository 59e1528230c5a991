"""Metrics of the gateway, registered next to the server's gRPC metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import INFERENCE_BUCKETS

__all__ = ["GatewayMetrics"]

# Jobs take seconds (a tiny upscale) to hours (an 8K supersampled one on few GPUs).
JOB_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter(
            "gateway_jobs",
            "Jobs that ended, by kind and outcome (succeeded, failed, cancelled).",
            ("kind", "outcome"),
            registry=registry,
        )
        self.job_seconds = Histogram(
            "gateway_job_duration_seconds",
            "Time from a job's start to its end, in seconds, by kind.",
            ("kind",),
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.queued_jobs = Gauge("gateway_queue_jobs", "Jobs waiting to run.", registry=registry)
        self.running_jobs = Gauge("gateway_running_jobs", "Jobs running now.", registry=registry)
        self.tiles = Counter(
            "gateway_tiles_redrawn",
            "Tiles and regions re-drawn, by pass (redraw, region, seam_fix).",
            ("stage",),
            registry=registry,
        )
        self.tiles_restored = Counter(
            "gateway_tiles_restored",
            "Tiles restored from checkpoints after a restart instead of re-drawn.",
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "gateway_stage_duration_seconds",
            "Wall time of a job stage, in seconds.",
            ("stage",),
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
