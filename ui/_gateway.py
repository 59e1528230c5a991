"""The UI's one way to the gateway: the SDK's blocking `Client`, shared by every session, and job
watchers that follow WatchJob in a background thread so a Streamlit rerun never blocks on a stream.

    gateway()            the cached `Gateway` for TILESMITH_ADDRESS / TILESMITH_TOKEN
    Gateway.client       tilesmith.Client (uploads, jobs, presets, models, LoRAs, providers, the grid
                         overview, tile captions, image analysis)
    Gateway.watch(job)   a `JobWatch`: the latest progress, stage, processed tiles, the end
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from tilesmith import Client, errors
from tilesmith.client import DEFAULT_ADDRESS, job_error
from tilesmith.v1 import gateway_pb2

__all__ = ["Gateway", "JobWatch", "connection", "gateway"]

_TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Connection:
    """Where the gateway is. Read from the environment on the server; never sent to the browser."""

    address: str
    token: str | None


def connection() -> Connection:
    return Connection(
        address=os.environ.get("TILESMITH_ADDRESS") or DEFAULT_ADDRESS,
        token=os.environ.get("TILESMITH_TOKEN") or None,
    )


@dataclass
class JobWatch:
    """What a background thread has seen of one job's event stream (replaced, never mutated in place,
    field by field under the GIL, so a reader sees a consistent enough snapshot for a status bar)."""

    job_id: str
    stage: str = "queued"
    detail: str = ""
    tiles_done: int = 0
    tiles_total: int = 0
    fraction: float = 0.0
    eta_seconds: float | None = None
    queue_position: int = 0
    last_seq: int = 0
    processed: frozenset[int] = frozenset()
    previews: dict[int, bytes] = field(default_factory=dict)
    captions: dict[int, str] = field(default_factory=dict)
    outcome: str | None = None  # succeeded / failed / cancelled once the job has ended
    error: errors.TilesmithError | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> bool:
        return self.outcome is not None


class Gateway:
    """One connection to the gateway, shared by every session of this Streamlit server."""

    def __init__(self, address: str, token: str | None) -> None:
        self.client = Client(address, token=token, timeout=120.0)
        self._watches: dict[str, JobWatch] = {}
        self._lock = threading.Lock()

    # --- Job watching ---------------------------------------------------------------------------------

    def watch(self, job_id: str) -> JobWatch:
        """The watch of `job_id`, started on first use; it follows the job until its end."""
        with self._lock:
            watch = self._watches.get(job_id)
            if watch is None:
                watch = self._watches[job_id] = JobWatch(job_id)
                threading.Thread(
                    target=self._follow, args=(watch,), name=f"watch-{job_id}", daemon=True
                ).start()
        return watch

    def _follow(self, watch: JobWatch) -> None:
        try:
            for event in self.client.job(watch.job_id).events(after_seq=watch.last_seq):
                _apply(watch, event)
                if watch.outcome is not None:
                    break
        except errors.TilesmithError as exc:
            watch.error = exc
        if watch.outcome is None:
            # The stream ended without a terminal event we saw (gateway gone): read the job once.
            try:
                job = self.client.get_job(watch.job_id)
            except errors.TilesmithError as exc:
                watch.error = exc
                watch.outcome = "failed"
                return
            watch.outcome = gateway_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


def _apply(watch: JobWatch, event: gateway_pb2.JobEvent) -> None:
    progress = event.progress
    watch.last_seq = event.seq
    watch.tiles_done = progress.tiles_done
    watch.tiles_total = progress.tiles_total
    watch.fraction = progress.fraction
    watch.eta_seconds = progress.eta_seconds if progress.HasField("eta_seconds") else None
    watch.queue_position = progress.queue_position
    if progress.stage:
        watch.stage = stage_name(progress.stage)
    match event.WhichOneof("kind"):
        case "stage_started":
            watch.stage = stage_name(event.stage_started.stage)
            watch.detail = event.stage_started.detail
        case "tile_captioned":
            watch.captions = {**watch.captions, event.tile_captioned.index: event.tile_captioned.caption}
        case "tile_done":
            done = event.tile_done
            if done.stage == gateway_pb2.JOB_STAGE_REDRAW and done.WhichOneof("item") == "tile_index":
                watch.processed = watch.processed | {done.tile_index}
                if done.preview.data:
                    watch.previews = {**watch.previews, done.tile_index: done.preview.data}
        case "step":
            step = event.step
            watch.detail = f"step {step.step}/{step.total_steps}"
        case "failed":
            watch.error = _job_error(event.failed.error)
            watch.outcome = "failed"
        case "succeeded" | "cancelled" as kind:
            watch.outcome = kind


def _job_error(error: gateway_pb2.JobError) -> errors.TilesmithError:
    return job_error(gateway_pb2.Job(error=error))


def stage_name(stage: int) -> str:
    return gateway_pb2.JobStage.Name(stage).removeprefix("JOB_STAGE_").replace("_", " ").lower()


@st.cache_resource(show_spinner=False)
def _gateway(address: str, token: str | None) -> Gateway:
    return Gateway(address, token)


def gateway() -> Gateway:
    """The shared `Gateway` for this server's configured address."""
    where = connection()
    return _gateway(where.address, where.token)
