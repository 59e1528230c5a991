"""The UI's one way to the gateway: the SDK's blocking `Client`, shared by every session, plus the two
UI helpers the SDK does not wrap yet (RenderGrid, CaptionTiles) on a channel of our own, and job
watchers that follow WatchJob in a background thread so a Streamlit rerun never blocks on a stream.

    gateway()            the cached `Gateway` for TILESMITH_ADDRESS / TILESMITH_TOKEN
    Gateway.client       tilesmith.Client (uploads, jobs, presets, models, LoRAs, providers)
    Gateway.render_grid  the clickable overview (GridLayout, PNG bytes)
    Gateway.caption_tiles, Gateway.analyze_image (the blocking Client lacks it)
    Gateway.watch(job)   a `JobWatch`: the latest progress, stage, processed tiles, the end
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import streamlit as st

from tilesmith import Client, UpscaleOptions, errors, images
from tilesmith._status import error_from_rpc
from tilesmith.client import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, job_error
from tilesmith.v1 import bridge_pb2, gateway_pb2, gateway_pb2_grpc

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
        options = [
            ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ]
        self._channel = grpc.insecure_channel(address, options=options)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._watches: dict[str, JobWatch] = {}
        self._lock = threading.Lock()

    # --- UI helpers the SDK does not wrap ------------------------------------------------------------

    def render_grid(
        self,
        image_id: str,
        options: UpscaleOptions,
        *,
        selected: Sequence[int] = (),
        processed: Sequence[int] = (),
        max_side: int = 768,
    ) -> tuple[gateway_pb2.GridLayout, bytes]:
        """The grid overview of an uploaded image: its layout and the annotated picture (PNG bytes)."""
        request = gateway_pb2.GatewayRenderGridRequest(
            image_id=image_id,
            settings=options.to_settings(),
            selected=sorted(selected),
            processed=sorted(processed),
            max_side=max_side,
        )
        layout = gateway_pb2.GridLayout()
        chunks = []
        try:
            for part in self._stub.RenderGrid(request, metadata=self._metadata, timeout=60):
                if part.HasField("layout"):
                    layout = part.layout
                elif part.HasField("overview"):
                    chunks.append(part.overview)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        overview = images.assemble(chunks, field="overview")
        return layout, images.encode_bytes(images.to_array(overview, field="overview"), "png")

    def caption_tiles(
        self, image_id: str, options: UpscaleOptions, indices: Sequence[int] = ()
    ) -> Iterator[gateway_pb2.CaptionTilesResponse]:
        """Captions of the grid's tiles (all when `indices` is empty), one message per tile."""
        request = gateway_pb2.CaptionTilesRequest(
            image_id=image_id, settings=options.to_settings(), tile_indices=list(indices)
        )
        try:
            yield from self._stub.CaptionTiles(request, metadata=self._metadata, timeout=600)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    def analyze_image(self, image_id: str, instruction: str = "") -> bridge_pb2.AnalyzeImageResponse:
        """A hosted vision model's description of an uploaded image and a suggested prompt."""
        request = gateway_pb2.GatewayAnalyzeImageRequest(
            image_id=image_id, params=bridge_pb2.AnalyzeImageParams(instruction=instruction)
        )
        try:
            return self._stub.AnalyzeImage(request, metadata=self._metadata, timeout=120)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

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
