"""Runs jobs: the queue, the running slots, cancellation, the end states, and resuming after a restart.

A submitted job is stored QUEUED with its `accepted` event and put in the in-process queue; one of
`max_running_jobs` workers takes it, moves it to RUNNING and runs its pipeline. A job ends exactly once
(the store refuses a second terminal state): SUCCEEDED with its result, FAILED with a JobError (code,
stage, field, class and the request id its log lines carry) or CANCELLED.

Stopping the gateway cancels the running pipelines but leaves their jobs RUNNING in the store: the next
start resumes them from their checkpoints (a `resumed` event first), then re-queues QUEUED jobs in the
order they were submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from gateway.clients import Backends
from gateway.events import JobEmitter, TransientHub
from gateway.hosted import run_reference, run_transform
from gateway.metrics import GatewayMetrics
from gateway.pipeline import PipelineContext, run_generate, run_upscale
from gateway.settings import GatewaySettings
from gateway.specs import SpecContext
from gateway.store import TERMINAL_STATES, JobRecord, JobStore
from services.common.errors import FailedPrecondition, TilesmithError
from services.common.interceptors import status_code_for
from services.common.logging import request_id_var
from tilesmith.v1 import gateway_pb2 as pb

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)

_PURGE_SECONDS = 3600.0
_KIND_NAMES = {value: name.removeprefix("JOB_KIND_").lower() for name, value in pb.JobKind.items()}


def job_request_id(job_id: str) -> str:
    """The request id a job's log lines (and its JobError) carry."""
    return f"job-{job_id}"


class JobRunner:
    """The gateway's job engine."""

    def __init__(
        self,
        store: JobStore,
        backends: Backends,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        spec_context: Callable[[], Awaitable[SpecContext]],
    ) -> None:
        self.store = store
        self.backends = backends
        self.settings = settings
        self.metrics = metrics
        self.hub = TransientHub()
        self._spec_context = spec_context
        self._queue: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._queued: list[str] = []  # QUEUED job ids in order, for queue positions
        self._running: dict[str, asyncio.Task[None]] = {}
        self._emitters: dict[str, JobEmitter] = {}
        self._cancel_requested: set[str] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- Life ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume RUNNING jobs, re-queue QUEUED ones, start the workers and the retention sweep."""
        await asyncio.to_thread(self._purge)
        for record in await asyncio.to_thread(self.store.running_jobs):
            self._queue.put_nowait((record.id, True))
        for record in await asyncio.to_thread(self.store.queued_jobs):
            self._enqueue(record.id)
        self._workers = [
            asyncio.create_task(self._worker(), name=f"job-worker-{n}")
            for n in range(self.settings.max_running_jobs)
        ]
        self._workers.append(asyncio.create_task(self._purge_loop(), name="job-purge"))

    async def stop(self) -> None:
        """Stop the workers; running jobs stay RUNNING in the store and resume at the next start."""
        self._stopping = True
        tasks = [*self._workers, *self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    def _purge(self) -> None:
        report = self.store.purge_expired(self.settings.retention_hours * 3600.0)
        if report.jobs or report.images:
            log.info("retention purge", extra={"jobs": report.jobs, "images": report.images})

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(_PURGE_SECONDS)
            try:
                await asyncio.to_thread(self._purge)
            except Exception:
                log.exception("retention purge failed")

    # -- Queries -------------------------------------------------------------------------------------

    def queue_position(self, job_id: str) -> int:
        try:
            return self._queued.index(job_id)
        except ValueError:
            return 0

    def live_progress(self, job_id: str) -> pb.JobProgress | None:
        """The progress of a job running here now (with its ETA), else None."""
        emitter = self._emitters.get(job_id)
        return emitter.progress() if emitter is not None else None

    def queued_count(self) -> int:
        return len(self._queued)

    # -- Submit and cancel ---------------------------------------------------------------------------

    async def submit(self, spec: pb.JobSpec, kind: int, seed: int, idempotency_key: str) -> JobRecord:
        """Store a validated spec as a QUEUED job, log `accepted`, and queue it."""
        record = await asyncio.to_thread(
            self.store.create_job, kind, spec.SerializeToString(), seed, spec.label, idempotency_key or None
        )
        event = pb.JobEvent(accepted=pb.JobAccepted(kind=kind, seed=seed))
        event.time.GetCurrentTime()
        event.progress.queue_position = len(self._queued)
        await asyncio.to_thread(self.store.append_event, record.id, "accepted", event.SerializeToString())
        self._enqueue(record.id)
        return await asyncio.to_thread(self.store.get_job, record.id)

    def _enqueue(self, job_id: str) -> None:
        self._queued.append(job_id)
        self.metrics.queued_jobs.set(len(self._queued))
        self._queue.put_nowait((job_id, False))

    async def cancel(self, job_id: str, reason: str = "cancelled by a client") -> JobRecord:
        """Cancel a queued or running job; a job that has ended is returned unchanged."""
        record = await asyncio.to_thread(self.store.get_job, job_id)
        if record.state in TERMINAL_STATES:
            return record
        task = self._running.get(job_id)
        if task is not None:
            self._cancel_requested.add(job_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return await asyncio.to_thread(self.store.get_job, job_id)
        if record.state == pb.JOB_STATE_QUEUED:
            with contextlib.suppress(FailedPrecondition):  # it started or ended meanwhile
                await self._end(
                    job_id, record.kind, pb.JOB_STATE_CANCELLED, cancelled=pb.JobCancelled(reason=reason)
                )
            with contextlib.suppress(ValueError):
                self._queued.remove(job_id)
                self.metrics.queued_jobs.set(len(self._queued))
        return await asyncio.to_thread(self.store.get_job, job_id)

    # -- Running -------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job_id, resumed = await self._queue.get()
            with contextlib.suppress(ValueError):
                self._queued.remove(job_id)
            self.metrics.queued_jobs.set(len(self._queued))
            task = asyncio.create_task(self._run(job_id, resumed), name=f"job-{job_id}")
            self._running[job_id] = task
            self.metrics.running_jobs.set(len(self._running))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # this worker is being stopped
                    if not task.done():
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
                    raise
                # Only the job's task was cancelled (it parked itself): take the next job.
            except Exception:
                log.exception("job task crashed", extra={"job_id": job_id})
            finally:
                self._running.pop(job_id, None)
                self._emitters.pop(job_id, None)
                self._cancel_requested.discard(job_id)
                self.metrics.running_jobs.set(len(self._running))

    async def _run(self, job_id: str, resumed: bool) -> None:
        request_id_var.set(job_request_id(job_id))
        try:
            record = await asyncio.to_thread(self.store.get_job, job_id)
            if record.state == pb.JOB_STATE_QUEUED:
                record = await asyncio.to_thread(self.store.set_state, job_id, pb.JOB_STATE_RUNNING)
            elif record.state != pb.JOB_STATE_RUNNING:
                return  # cancelled while it waited
        except asyncio.CancelledError:
            # Cancelled before it got going: a client's cancel still ends it; a shutdown leaves it as it is.
            if self._stopping and job_id not in self._cancel_requested:
                raise
            record = await asyncio.to_thread(self.store.get_job, job_id)
            if record.state not in TERMINAL_STATES:
                await self._end(
                    job_id,
                    record.kind,
                    pb.JOB_STATE_CANCELLED,
                    cancelled=pb.JobCancelled(reason="cancelled by a client"),
                )
            return
        emitter = JobEmitter(
            self.store, self.hub, self.metrics, job_id, preview_size=self.settings.preview_size
        )
        self._emitters[job_id] = emitter
        kind_name = _KIND_NAMES.get(record.kind, "unknown")
        started = time.monotonic()
        try:
            if resumed:
                restored = await asyncio.to_thread(self.store.checkpoint_count, job_id)
                await emitter.log(resumed=pb.JobResumed(tiles_restored=restored))
            spec = pb.JobSpec.FromString(record.spec)
            ctx = PipelineContext(
                job_id=job_id,
                store=self.store,
                backends=self.backends,
                settings=self.settings,
                metrics=self.metrics,
                emitter=emitter,
                spec_context=await self._spec_context(),
            )
            which = spec.WhichOneof("spec")
            if which == "upscale":
                result = await run_upscale(ctx, spec.upscale)
            elif which == "generate":
                result = await run_generate(ctx, spec.generate)
            elif which == "transform":
                result = await run_transform(ctx, spec.transform)
            else:
                result = await run_reference(ctx, spec.reference)
        except asyncio.CancelledError:
            if self._stopping and job_id not in self._cancel_requested:
                log.info("job left RUNNING to resume at the next start", extra={"job_id": job_id})
                raise
            emitter.finish()
            await self._end(
                job_id,
                record.kind,
                pb.JOB_STATE_CANCELLED,
                cancelled=pb.JobCancelled(reason="cancelled by a client"),
            )
        except TilesmithError as exc:
            error = self._job_error(exc, emitter)  # before finish(), which clears the stage
            emitter.finish()
            log.info("job failed: %s", exc, extra={"job_id": job_id})
            await self._end(job_id, record.kind, pb.JOB_STATE_FAILED, failed=pb.JobFailed(error=error))
        except Exception:
            error = pb.JobError(
                code=grpc.StatusCode.INTERNAL.value[0],
                message="internal error; see the gateway log under the request id",
                stage=emitter.progress().stage,
                request_id=job_request_id(job_id),
            )
            emitter.finish()
            log.exception("job failed unexpectedly", extra={"job_id": job_id})
            await self._end(job_id, record.kind, pb.JOB_STATE_FAILED, failed=pb.JobFailed(error=error))
        else:
            emitter.finish()
            await self._end(
                job_id, record.kind, pb.JOB_STATE_SUCCEEDED, succeeded=pb.JobSucceeded(result=result)
            )
        finally:
            self.metrics.job_seconds.labels(kind=kind_name).observe(time.monotonic() - started)

    def _job_error(self, exc: TilesmithError, emitter: JobEmitter) -> pb.JobError:
        return pb.JobError(
            code=status_code_for(exc).value[0],
            message=exc.message if hasattr(exc, "message") else str(exc),
            stage=emitter.progress().stage,
            request_id=request_id_var.get() or "",
            field=getattr(exc, "field", "") or "",
            error_class=type(exc).__name__,
        )

    async def _end(self, job_id: str, kind: int, state: int, **terminal: object) -> None:
        """Store the end state, then log the terminal event (so a watcher that sees it finds the job ended)."""
        (name, message) = next(iter(terminal.items()))
        result = message.result.SerializeToString() if name == "succeeded" else None  # type: ignore[attr-defined]
        error = message.error.SerializeToString() if name == "failed" else None  # type: ignore[attr-defined]
        await asyncio.to_thread(self.store.set_state, job_id, state, result=result, error=error)
        emitter = self._emitters.get(job_id)
        if emitter is not None:
            await emitter.log(**terminal)
        else:
            event = pb.JobEvent(**terminal)  # type: ignore[arg-type]
            event.time.GetCurrentTime()
            await asyncio.to_thread(self.store.append_event, job_id, name, event.SerializeToString())
        await asyncio.to_thread(self.store.clear_checkpoints, job_id)
        outcome = {pb.JOB_STATE_SUCCEEDED: "succeeded", pb.JOB_STATE_FAILED: "failed"}.get(state, "cancelled")
        self.metrics.jobs.labels(kind=_KIND_NAMES.get(kind, "unknown"), outcome=outcome).inc()
