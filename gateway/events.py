"""A running job's voice: its logged events, its transient ones, its progress and its stage timings.

`JobEmitter` is what a pipeline talks to. Logged events (accepted, stage started/finished, tile done,
succeeded...) go to the store, which numbers them; transient ones (denoising steps) go only to the
watchers connected now, through `TransientHub`, carrying the seq of the last logged event so a
client resuming from any seq it saw loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image

from gateway.metrics import GatewayMetrics
from gateway.store import JobStore
from tilesmith.v1 import common_pb2
from tilesmith.v1 import gateway_pb2 as pb

__all__ = ["JobEmitter", "TransientHub", "preview"]

_TRANSIENT_QUEUE = 256


class TransientHub:
    """Fan-out of transient events (steps) to the WatchJob streams of this process."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[pb.JobEvent]]] = defaultdict(set)

    @contextlib.contextmanager
    def subscribe(self, job_id: str):  # -> Iterator[asyncio.Queue[pb.JobEvent]]
        queue: asyncio.Queue[pb.JobEvent] = asyncio.Queue(_TRANSIENT_QUEUE)
        self._queues[job_id].add(queue)
        try:
            yield queue
        finally:
            self._queues[job_id].discard(queue)
            if not self._queues[job_id]:
                del self._queues[job_id]

    def publish(self, job_id: str, event: pb.JobEvent) -> None:
        for queue in self._queues.get(job_id, ()):
            with contextlib.suppress(asyncio.QueueFull):  # a slow watcher misses steps, never logged events
                queue.put_nowait(event)


def preview(pixels: np.ndarray, size: int) -> common_pb2.Image:
    """A small JPEG of a tile for its tile_done event."""
    image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]))
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_JPEG,
        format=common_pb2.PIXEL_FORMAT_RGB8,
        width=image.width,
        height=image.height,
        data=buffer.getvalue(),
    )


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class _Progress:
    stage: int = pb.JOB_STAGE_UNSPECIFIED
    tiles_done: int = 0
    tiles_total: int = 0
    redrawn_here: int = 0  # tiles re-drawn by this process (restored ones excluded): the ETA's basis
    first_tile_at: float | None = None
    fraction: float = 0.0
    timings: dict[int, float] = field(default_factory=dict)


class JobEmitter:
    """Logs a job's events with its progress; one per running job."""

    def __init__(
        self,
        store: JobStore,
        hub: TransientHub,
        metrics: GatewayMetrics,
        job_id: str,
        *,
        preview_size: int = 128,
        tiles_done: int = 0,
    ) -> None:
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.job_id = job_id
        self.preview_size = preview_size
        self._progress = _Progress(tiles_done=tiles_done)
        self._last_seq = 0
        self._lock = asyncio.Lock()  # one writer at a time keeps progress and seq in step

    # -- Progress ------------------------------------------------------------------------------------

    def progress(self) -> pb.JobProgress:
        p = self._progress
        message = pb.JobProgress(
            stage=p.stage, tiles_done=p.tiles_done, tiles_total=p.tiles_total, fraction=p.fraction
        )
        eta = self.eta_seconds()
        if eta is not None:
            message.eta_seconds = eta
        return message

    def eta_seconds(self) -> float | None:
        p = self._progress
        if p.first_tile_at is None or p.redrawn_here == 0 or p.tiles_total == 0:
            return None
        per_tile = (time.monotonic() - p.first_tile_at) / p.redrawn_here
        return max(0.0, per_tile * (p.tiles_total - p.tiles_done))

    def set_total(self, tiles_total: int) -> None:
        self._progress.tiles_total = tiles_total
        self._update_fraction()

    def _update_fraction(self) -> None:
        p = self._progress
        if p.tiles_total:
            p.fraction = min(0.99, 0.05 + 0.9 * p.tiles_done / p.tiles_total)

    def stage_timings(self) -> list[pb.StageTiming]:
        return [pb.StageTiming(stage=stage, seconds=s) for stage, s in self._progress.timings.items()]

    # -- Events --------------------------------------------------------------------------------------

    async def log(self, **kind: object) -> int:
        """Log one event (`kind` is the JobEvent oneof field and its message) with the progress now."""
        async with self._lock:
            (name,) = kind
            event = pb.JobEvent(time=_now(), progress=self.progress(), **kind)  # type: ignore[arg-type]
            p = self._progress
            self._last_seq = await asyncio.to_thread(
                self._append, name, event.SerializeToString(), p.stage, p.tiles_done, p.tiles_total
            )
            return self._last_seq

    def _append(self, name: str, payload: bytes, stage: int, done: int, total: int) -> int:
        self.store.update_progress(self.job_id, stage=stage, tiles_done=done, tiles_total=total)
        return self.store.append_event(self.job_id, name, payload)

    def step(self, stage: int, step: int, total: int, tile_indices: list[int]) -> None:
        """A transient denoising-step event, for the watchers connected now."""
        event = pb.JobEvent(
            seq=self._last_seq,
            time=_now(),
            progress=self.progress(),
            step=pb.JobStepProgress(stage=stage, step=step, total_steps=total, tile_indices=tile_indices),
        )
        self.hub.publish(self.job_id, event)

    @contextlib.asynccontextmanager
    async def stage(self, stage: int, detail: str = "") -> AsyncIterator[None]:
        """Log a stage's start and, when its block succeeds, its end with the time it took."""
        self._progress.stage = stage
        await self.log(stage_started=pb.JobStageStarted(stage=stage, detail=detail))
        started = time.monotonic()
        yield
        seconds = time.monotonic() - started
        self._progress.timings[stage] = self._progress.timings.get(stage, 0.0) + seconds
        self.metrics.stage_seconds.labels(
            stage=pb.JobStage.Name(stage).removeprefix("JOB_STAGE_").lower()
        ).observe(seconds)
        await self.log(stage_finished=pb.JobStageFinished(stage=stage, seconds=seconds))

    async def tile_done(
        self,
        stage: int,
        pixels: np.ndarray,
        *,
        tile_index: int | None = None,
        region_index: int | None = None,
        replica: str = "",
        model: str = "",
        seed: int = 0,
        restored: bool = False,
    ) -> None:
        """Count a re-drawn (or restored) tile and log its tile_done event with a preview."""
        p = self._progress
        p.tiles_done += 1
        if not restored:
            p.redrawn_here += 1
            if p.first_tile_at is None:
                p.first_tile_at = time.monotonic()
        self._update_fraction()
        done = pb.JobTileDone(
            stage=stage,
            preview=await asyncio.to_thread(preview, pixels, self.preview_size),
            provider=replica,
            model=model,
            seed=seed,
            restored=restored,
        )
        if region_index is not None:
            done.region_index = region_index
        else:
            done.tile_index = tile_index or 0
        await self.log(tile_done=done)

    def mark_tile_started(self) -> None:
        """Start the ETA clock at the first tile call rather than the first answer."""
        if self._progress.first_tile_at is None:
            self._progress.first_tile_at = time.monotonic()

    def finish(self) -> None:
        self._progress.stage = pb.JOB_STAGE_UNSPECIFIED
        self._progress.fraction = 1.0
