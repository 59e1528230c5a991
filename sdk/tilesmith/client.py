"""The gateway client: `AsyncClient` (asyncio, grpc.aio) and `Client` (the same calls, blocking).

    async with AsyncClient("localhost:50051", token="...") as client:
        job = await client.upscale(Path("in.png"), target="4K", seam_fix=True)
        async for event in job.events():
            print(event.progress.fraction)
        image = await job.result()

Errors are mapped once: every call goes through `_mapped_errors`, which turns a failed RPC into the
`tilesmith.errors` class the server raised (`error_from_rpc`), re-raised ``from`` the gRPC error.
Calls that only read (GetJob, ListJobs, GetResult, WatchJob, RenderGrid, the listings) are retried on
`Unavailable` a few times with exponential backoff (`_retrying`); calls that change state (SubmitJob,
CancelJob, DeleteJob, UploadImage, presets, LoRA uploads and deletes) are not: retry a submit
yourself with the same ``idempotency_key``. Nor are the calls that run a model (CaptionTiles,
AnalyzeImage). `AsyncJob.events` resumes a dropped stream from the last seq it saw.

`Client` runs one `AsyncClient` on a private event loop in a daemon thread and blocks on its
coroutines, so both clients share every line of protocol logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from PIL import Image

from tilesmith import errors, images
from tilesmith._status import build_error, error_from_rpc
from tilesmith.options import GenerateOptions, ReferenceOptions, TransformOptions, UpscaleOptions, _enum
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2, gateway_pb2_grpc

__all__ = ["AsyncClient", "AsyncJob", "Client", "GridRender", "Job"]

T = TypeVar("T")

ImageInput = Image.Image | np.ndarray | bytes | Path | str
"""An image for a job: an uploaded image id (str), a file (Path), encoded bytes, or pixels."""

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_TERMINAL_EVENTS = ("succeeded", "failed", "cancelled")
_TERMINAL_STATES = (
    gateway_pb2.JOB_STATE_SUCCEEDED,
    gateway_pb2.JOB_STATE_FAILED,
    gateway_pb2.JOB_STATE_CANCELLED,
)
# A JobError's message for INVALID_ARGUMENT is the exception's str(): "field.path: message".
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.DOTALL)


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """The one place a failed RPC becomes a `tilesmith.errors` exception."""
    try:
        yield
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from exc


def job_error(job: gateway_pb2.Job) -> errors.TilesmithError:
    """The exception a FAILED job stands for: the class, field and request id a direct call would give."""
    code = next(
        (status for status in grpc.StatusCode if status.value[0] == job.error.code), grpc.StatusCode.UNKNOWN
    )
    message = job.error.message or code.name
    field = job.error.field
    if not field and code == grpc.StatusCode.INVALID_ARGUMENT and (match := _FIELD_PREFIX.match(message)):
        field = match.group(1)  # a gateway that predates JobError.field: read it from "field: message"
    error = build_error(
        code, message, error_class=job.error.error_class, field=field, request_id=job.error.request_id or None
    )
    error.job = job  # type: ignore[attr-defined]
    return error


@dataclass(frozen=True)
class GridRender:
    """The grid overview of an image (RenderGrid's stream, assembled).

    Attributes:
        layout: The grids and sizes an upscale would use (as `plan_grid` returns them).
        overview: The input scaled to at most `max_side`, with grid lines and tile indices drawn over
            it (RGB); grid coordinates map onto it by ``overview.width / layout.working_size.width``.
        thumbnails: (first-pass tile index, the tile's area of the input, annotated like the
            overview), in index order; empty unless a `thumbnail_size` was asked for.
    """

    layout: gateway_pb2.GridLayout
    overview: Image.Image
    thumbnails: tuple[tuple[int, Image.Image], ...]


class AsyncClient:
    """An asyncio client of the Tilesmith gateway.

    Args:
        address: ``host:port`` (or any gRPC target, e.g. ``dns:///gateway:50051``).
        token: Sent as ``authorization: Bearer <token>`` on every call. Default: none.
        credentials: TLS channel credentials. Default (None): a plaintext channel.
        max_message_bytes: Send and receive limit per message; images travel in chunks below it.
        timeout: Deadline in seconds for unary calls; streams (events, results, uploads) have none.
        retries: Extra attempts of a read-only call that failed with `Unavailable`.
        backoff: Seconds before the first retry; doubles each time.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        timeout: float | None = 60.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- Plumbing ---------------------------------------------------------------------------------

    async def _unary(self, method: str, request: Any, *, retry: bool) -> Any:
        """Call a unary RPC of the stub by name, mapping errors and retrying reads."""
        rpc = getattr(self._stub, method)

        async def call() -> Any:
            with _mapped_errors():
                return await rpc(request, metadata=self._metadata, timeout=self._timeout)

        return await self._retrying(call) if retry else await call()

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`, again after a backoff while it raises `Unavailable` (at most `retries` more)."""
        for retry in range(self._retries):
            try:
                return await attempt()
            except errors.Unavailable:
                await asyncio.sleep(self._backoff * 2**retry)
        return await attempt()

    async def _image_id(self, image: ImageInput) -> str:
        return image if isinstance(image, str) else await self.upload_image(image)

    # --- Images -----------------------------------------------------------------------------------

    async def upload_image(
        self,
        image: Image.Image | np.ndarray | bytes | Path,
        *,
        filename: str = "",
        chunk_bytes: int = images.DEFAULT_CHUNK_BYTES,
    ) -> str:
        """Upload an input image and return its id. Not retried (it is a stream of requests).

        Args:
            image: Pixels (PIL image or uint8 array, sent as PNG so alpha is kept), encoded file bytes,
                or a file path (sent as-is; its name becomes `filename`).
            filename: Kept for display. Default: the path's name, else none.
            chunk_bytes: Payload bytes per message.
        """
        # 1. The bytes to send
        if isinstance(image, Path):
            filename = filename or image.name
            message = common_pb2.Image(data=await asyncio.to_thread(image.read_bytes))
        elif isinstance(image, bytes):
            message = common_pb2.Image(data=image)
        else:
            message = images.to_proto(image, "png")

        # 2. Params, then the chunks
        def requests() -> Iterator[gateway_pb2.UploadImageRequest]:
            yield gateway_pb2.UploadImageRequest(params=gateway_pb2.UploadImageParams(filename=filename))
            for chunk in images.iter_chunks(message, chunk_bytes):
                yield gateway_pb2.UploadImageRequest(image=chunk)

        with _mapped_errors():
            response = await self._stub.UploadImage(requests(), metadata=self._metadata)
        return response.image_id

    # --- Jobs -------------------------------------------------------------------------------------

    async def submit(self, spec: gateway_pb2.JobSpec, *, idempotency_key: str | None = None) -> AsyncJob:
        """Submit a JobSpec as it is. Default key: a fresh UUID (pass your own to retry safely)."""
        request = gateway_pb2.SubmitJobRequest(spec=spec, idempotency_key=idempotency_key or uuid.uuid4().hex)
        return AsyncJob(self, await self._unary("SubmitJob", request, retry=False))

    async def upscale(
        self,
        image: ImageInput,
        options: UpscaleOptions | None = None,
        *,
        label: str = "",
        idempotency_key: str | None = None,
        **overrides: Any,
    ) -> AsyncJob:
        """Submit an UPSCALE job; `image` (and an IP-Adapter image) are uploaded first unless ids.

        Args:
            image: The input (see `ImageInput`).
            options: The options; `overrides` (UpscaleOptions field names) replace single fields.
            label: Shown in the job history.
            idempotency_key: See `submit`.
        """
        options = replace(options or UpscaleOptions(), **overrides)
        if options.ip_adapter_image is not None:
            options = replace(options, ip_adapter_image=await self._image_id(options.ip_adapter_image))
        spec = gateway_pb2.JobSpec(upscale=options.to_spec(await self._image_id(image)), label=label)
        return await self.submit(spec, idempotency_key=idempotency_key)

    async def generate(
        self,
        prompt: str,
        options: GenerateOptions | None = None,
        *,
        label: str = "",
        idempotency_key: str | None = None,
        **overrides: Any,
    ) -> AsyncJob:
        """Submit a GENERATE job; arguments as `upscale` (overrides: GenerateOptions fields)."""
        options = replace(options or GenerateOptions(), **overrides)
        enhance = options.enhance
        if enhance.ip_adapter_image is not None:
            enhance = replace(enhance, ip_adapter_image=await self._image_id(enhance.ip_adapter_image))
            options = replace(options, enhance=enhance)
        spec = gateway_pb2.JobSpec(generate=options.to_spec(prompt), label=label)
        return await self.submit(spec, idempotency_key=idempotency_key)

    async def transform(
        self,
        image: ImageInput,
        options: TransformOptions | None = None,
        *,
        label: str = "",
        idempotency_key: str | None = None,
        **overrides: Any,
    ) -> AsyncJob:
        """Submit a TRANSFORM job; arguments as `upscale` (overrides: TransformOptions fields)."""
        options = replace(options or TransformOptions(), **overrides)
        spec = gateway_pb2.JobSpec(transform=options.to_spec(await self._image_id(image)), label=label)
        return await self.submit(spec, idempotency_key=idempotency_key)

    async def reference(
        self,
        image: ImageInput,
        prompt: str,
        options: ReferenceOptions | None = None,
        *,
        label: str = "",
        idempotency_key: str | None = None,
        **overrides: Any,
    ) -> AsyncJob:
        """Submit a REFERENCE job; arguments as `upscale` (overrides: ReferenceOptions fields)."""
        options = replace(options or ReferenceOptions(), **overrides)
        spec = gateway_pb2.JobSpec(
            reference=options.to_spec(await self._image_id(image), prompt), label=label
        )
        return await self.submit(spec, idempotency_key=idempotency_key)

    async def get_job(self, job_id: str) -> gateway_pb2.Job:
        """One job (retried on Unavailable)."""
        return await self._unary("GetJob", gateway_pb2.GetJobRequest(job_id=job_id), retry=True)

    def job(self, job_id: str) -> AsyncJob:
        """A handle on an existing job, without a call."""
        return AsyncJob(self, gateway_pb2.Job(id=job_id))

    async def list_jobs(
        self,
        state: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        *,
        page_size: int = 0,
    ) -> AsyncIterator[gateway_pb2.Job]:
        """Every job, newest first, fetched page by page (each page retried on Unavailable).

        Args:
            state: Only jobs in these states, by name (``"running"``, ``["failed", "cancelled"]``).
            kind: Only jobs of these kinds, by name (``"upscale"``).
            page_size: Jobs per page. Default (0): the gateway's (50).
        """
        request = gateway_pb2.ListJobsRequest(
            states=_enum_values(gateway_pb2.JobState, "JOB_STATE_", state, "state"),
            kinds=_enum_values(gateway_pb2.JobKind, "JOB_KIND_", kind, "kind"),
            page_size=page_size,
        )
        while True:
            page = await self._unary("ListJobs", request, retry=True)
            for job in page.jobs:
                yield job
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def cancel_job(self, job_id: str) -> gateway_pb2.Job:
        """Cancel a queued or running job; a job that has ended is returned unchanged."""
        return await self._unary("CancelJob", gateway_pb2.CancelJobRequest(job_id=job_id), retry=False)

    async def delete_job(self, job_id: str) -> None:
        """Delete a job that has ended, with its events and results."""
        await self._unary("DeleteJob", gateway_pb2.DeleteJobRequest(job_id=job_id), retry=False)

    async def watch_job(
        self, job_id: str, *, after_seq: int = 0, omit_previews: bool = False
    ) -> AsyncIterator[gateway_pb2.JobEvent]:
        """A job's events with seq > `after_seq`, until its terminal event.

        A stream dropped with `Unavailable` is reopened from the last seq seen, so no logged event is
        lost or repeated; `retries` drops in a row (without an event between them) give up.
        """
        last_seq = after_seq
        drops = 0
        while True:
            request = gateway_pb2.WatchJobRequest(
                job_id=job_id, after_seq=last_seq, omit_previews=omit_previews
            )
            call = self._stub.WatchJob(request, metadata=self._metadata)
            try:
                with _mapped_errors():
                    async for event in call:
                        drops = 0
                        last_seq = event.seq
                        yield event
                return
            except errors.Unavailable:
                if drops >= self._retries:
                    raise
                await asyncio.sleep(self._backoff * 2**drops)
                drops += 1
            finally:
                call.cancel()  # a consumer that stops early ends the stream on the server too

    async def get_result(
        self,
        job_id: str,
        name: str = "final",
        *,
        encoding: str | None = None,
        quality: int | None = None,
    ) -> gateway_pb2.Image:
        """A job's final image (``name="final"``) or a kept intermediate, as an Image message.

        Args:
            encoding: ``"png"``, ``"jpeg"``, ``"webp"`` or ``"raw"``. Default: as stored (PNG).
            quality: JPEG / WebP quality. Default (None): 95.
        """
        request = gateway_pb2.GetResultRequest(
            job_id=job_id,
            intermediate="" if name == "final" else name,
            encoding=_enum(common_pb2.ImageEncoding, "IMAGE_ENCODING_", encoding, "encoding"),
            quality=quality,
        )

        async def fetch() -> common_pb2.Image:
            with _mapped_errors():
                return await images.assemble_async(
                    self._stub.GetResult(request, metadata=self._metadata), field="result"
                )

        return await self._retrying(fetch)

    # --- Presets ----------------------------------------------------------------------------------

    async def save_preset(
        self, name: str, options: UpscaleOptions, *, description: str = ""
    ) -> gateway_pb2.Preset:
        """Create or replace the preset `name` with the settings of `options` (an IP-Adapter image
        must be an uploaded image id)."""
        preset = gateway_pb2.Preset(name=name, description=description, settings=options.to_settings())
        return await self._unary("SavePreset", gateway_pb2.SavePresetRequest(preset=preset), retry=False)

    async def get_preset(self, name: str) -> gateway_pb2.Preset:
        """One preset."""
        return await self._unary("GetPreset", gateway_pb2.GetPresetRequest(name=name), retry=True)

    async def list_presets(self) -> list[gateway_pb2.Preset]:
        """Every preset, sorted by name."""
        response = await self._unary("ListPresets", gateway_pb2.ListPresetsRequest(), retry=True)
        return list(response.presets)

    async def delete_preset(self, name: str) -> None:
        """Delete a preset."""
        await self._unary("DeletePreset", gateway_pb2.DeletePresetRequest(name=name), retry=False)

    # --- Models and UI helpers --------------------------------------------------------------------

    async def list_models(self) -> diffusion_pb2.ListModelsResponse:
        """The diffusion profile and its models."""
        return await self._unary("ListModels", diffusion_pb2.ListModelsRequest(), retry=True)

    async def list_loras(self) -> diffusion_pb2.ListLorasResponse:
        """The LoRA library and stacking rules."""
        return await self._unary("ListLoras", diffusion_pb2.ListLorasRequest(), retry=True)

    async def upload_lora(
        self,
        lora: Path | str | bytes,
        name: str,
        *,
        metadata: diffusion_pb2.LoraMetadata | None = None,
        overwrite: bool = False,
        chunk_bytes: int = images.DEFAULT_CHUNK_BYTES,
    ) -> diffusion_pb2.LoraInfo:
        """Upload a ``.safetensors`` LoRA into the library and return it as stored. Not retried.

        Args:
            lora: The file: a path (`Path` or `str`), read in chunks, or its bytes.
            name: Name to store it under (letters, digits, ``.``, ``_``, ``-``).
            metadata: Library metadata (type, weight range, trigger words). Default (None): none.
            overwrite: Replace a LoRA of the same name. Default: `AlreadyExists` if the name is taken.
            chunk_bytes: Payload bytes per message.
        """
        # 1. Size and digest up front: the server checks the stream against both
        if isinstance(lora, bytes):
            total_bytes, sha256 = len(lora), hashlib.sha256(lora).hexdigest()
        else:
            lora = Path(lora)
            total_bytes, sha256 = await asyncio.to_thread(_size_and_digest, lora)
        params = diffusion_pb2.UploadLoraParams(
            name=name, total_bytes=total_bytes, sha256=sha256, metadata=metadata, overwrite=overwrite
        )

        # 2. Params, then the bytes in order
        def requests() -> Iterator[diffusion_pb2.UploadLoraRequest]:
            yield diffusion_pb2.UploadLoraRequest(params=params)
            for data in _read_chunks(lora, chunk_bytes):
                yield diffusion_pb2.UploadLoraRequest(data=data)

        with _mapped_errors():
            return await self._stub.UploadLora(requests(), metadata=self._metadata)

    async def delete_lora(self, name: str) -> None:
        """Delete a LoRA from the library."""
        await self._unary("DeleteLora", diffusion_pb2.DeleteLoraRequest(name=name), retry=False)

    async def list_providers(self) -> bridge_pb2.ListProvidersResponse:
        """The hosted providers plus "internal", and the default chains per capability."""
        return await self._unary("ListProviders", bridge_pb2.ListProvidersRequest(), retry=True)

    async def plan_grid(
        self, image: ImageInput, options: UpscaleOptions | None = None
    ) -> gateway_pb2.GridLayout:
        """The grids and sizes an upscale of `image` with `options` would use."""
        request = gateway_pb2.GatewayPlanGridRequest(
            image_id=await self._image_id(image), settings=(options or UpscaleOptions()).to_settings()
        )
        return await self._unary("PlanGrid", request, retry=True)

    async def render_grid(
        self,
        image: ImageInput,
        options: UpscaleOptions | None = None,
        *,
        selected: Iterable[int] = (),
        processed: Iterable[int] = (),
        max_side: int = 0,
        thumbnail_size: int = 0,
    ) -> GridRender:
        """The grid overview of `image` (the UI's clickable picture). Retried on Unavailable.

        Args:
            image: The input (see `ImageInput`).
            options: The grid's settings; only target, supersampling, tile_size, overlap and seam_fix
                matter. Default: `UpscaleOptions()`.
            selected: First-pass tile indices drawn as selected (blue).
            processed: First-pass tile indices drawn as processed (green tint).
            max_side: Longest side of the overview in pixels, 64..4096. Default (0): the gateway's (1024).
            thumbnail_size: Longer side of each thumbnail in pixels, 32..1024. Default (0): none.
        """
        # 1. The request
        request = gateway_pb2.GatewayRenderGridRequest(
            image_id=await self._image_id(image),
            settings=(options or UpscaleOptions()).to_settings(),
            selected=list(selected),
            processed=list(processed),
            max_side=max_side,
            thumbnail_size=thumbnail_size,
        )

        # 2. The stream, read whole on each attempt: the layout, the overview's chunks, the thumbnails
        async def fetch() -> GridRender:
            layout = gateway_pb2.GridLayout()
            overview = images.ChunkAssembler(field="overview")
            thumbnails = []
            with _mapped_errors():
                async for part in self._stub.RenderGrid(
                    request, metadata=self._metadata, timeout=self._timeout
                ):
                    match part.WhichOneof("part"):
                        case "layout":
                            layout = part.layout
                        case "overview":
                            overview.add(part.overview)
                        case "thumbnail":
                            thumbnail = images.to_pil(part.thumbnail.image, field="thumbnail")
                            thumbnails.append((part.thumbnail.tile.index, thumbnail))
            return GridRender(layout, images.to_pil(overview.result(), field="overview"), tuple(thumbnails))

        return await self._retrying(fetch)

    async def caption_tiles(
        self, image: ImageInput, options: UpscaleOptions | None = None, *, tile_indices: Iterable[int] = ()
    ) -> AsyncIterator[gateway_pb2.CaptionTilesResponse]:
        """Captions of the first-pass tiles of `image`'s grid, one message per tile in index order, as
        each is ready, without a job (nothing is stored). Not retried; no deadline.

        Args:
            image: The input (see `ImageInput`).
            options: The grid's settings and `caption_instruction`. Default: `UpscaleOptions()`.
            tile_indices: The tiles to caption. Default (empty): every tile.
        """
        request = gateway_pb2.CaptionTilesRequest(
            image_id=await self._image_id(image),
            settings=(options or UpscaleOptions()).to_settings(),
            tile_indices=list(tile_indices),
        )
        call = self._stub.CaptionTiles(request, metadata=self._metadata)
        try:
            with _mapped_errors():
                async for answer in call:
                    yield answer
        finally:
            call.cancel()  # a consumer that stops early ends the captioning on the server too

    async def analyze_image(
        self, image: ImageInput, *, instruction: str = ""
    ) -> bridge_pb2.AnalyzeImageResponse:
        """A hosted vision model's description of `image` and a suggested prompt. Not retried.

        Args:
            image: The input (see `ImageInput`).
            instruction: What to ask, at most 4000 characters. Default (empty): the bridge's (describe the
                image, end with a suggested prompt).
        """
        request = gateway_pb2.GatewayAnalyzeImageRequest(
            image_id=await self._image_id(image),
            params=bridge_pb2.AnalyzeImageParams(instruction=instruction),
        )
        return await self._unary("AnalyzeImage", request, retry=False)


class AsyncJob:
    """A handle on one job. `job` is the latest snapshot the client saw (from submit or `refresh`)."""

    def __init__(self, client: AsyncClient, job: gateway_pb2.Job) -> None:
        self._client = client
        self.job = job

    @property
    def id(self) -> str:
        return self.job.id

    def __repr__(self) -> str:
        return f"AsyncJob(id={self.id!r}, state={gateway_pb2.JobState.Name(self.job.state)})"

    async def refresh(self) -> gateway_pb2.Job:
        """Fetch the job again and keep it as `job`."""
        self.job = await self._client.get_job(self.id)
        return self.job

    def events(
        self, *, after_seq: int = 0, omit_previews: bool = False
    ) -> AsyncIterator[gateway_pb2.JobEvent]:
        """The job's events, resumed across dropped streams, until the terminal one (`watch_job`)."""
        return self._client.watch_job(self.id, after_seq=after_seq, omit_previews=omit_previews)

    async def wait(
        self,
        *,
        on_event: Callable[[gateway_pb2.JobEvent], object] | None = None,
        after_seq: int = 0,
    ) -> gateway_pb2.Job:
        """Wait for the job to end and return it.

        Args:
            on_event: Called with each event (previews omitted) as it arrives, e.g. to show progress.
            after_seq: Follow the log from after this seq (events up to it were seen already).

        Raises:
            TilesmithError: The job FAILED: the class of its error code (InvalidArgument keeps the
                field), with ``.job`` set.
            Cancelled: The job was cancelled.
        """
        async with contextlib.aclosing(self.events(after_seq=after_seq, omit_previews=True)) as events:
            async for event in events:
                if on_event is not None:
                    on_event(event)
                if event.WhichOneof("kind") in _TERMINAL_EVENTS:
                    break
        job = await self.refresh()
        if job.state == gateway_pb2.JOB_STATE_FAILED:
            raise job_error(job)
        if job.state == gateway_pb2.JOB_STATE_CANCELLED:
            error = errors.Cancelled(f"job {job.id} was cancelled")
            error.job = job  # type: ignore[attr-defined]
            raise error
        return job

    async def result(self, name: str = "final") -> Image.Image:
        """The final image (or a kept intermediate) as a PIL image, RGB or RGBA."""
        return images.to_pil(await self._client.get_result(self.id, name), field="result")

    async def cancel(self) -> gateway_pb2.Job:
        """Cancel the job (idempotent) and keep the answer as `job`."""
        self.job = await self._client.cancel_job(self.id)
        return self.job

    async def delete(self) -> None:
        """Delete the ended job and its data."""
        await self._client.delete_job(self.id)

    @property
    def done(self) -> bool:
        """True when the last snapshot is in a terminal state."""
        return self.job.state in _TERMINAL_STATES


# ---------------------------------------------------------------------------------------------------
# Blocking client


class _LoopThread:
    """A private event loop in a daemon thread; runs coroutines and async iterators for a caller."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tilesmith-client", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Client:
    """The blocking client: `AsyncClient`'s calls, run on a private event loop thread.

    Arguments as `AsyncClient`. Methods return the same values; async iterators become iterators
    and `AsyncJob` becomes `Job`. Use as a context manager or call `close`.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, **kwargs: Any) -> None:
        self._runner = _LoopThread()

        async def make() -> AsyncClient:
            return AsyncClient(address, **kwargs)

        self._async = self._runner.run(make())

    def close(self) -> None:
        self._runner.run(self._async.close())
        self._runner.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _job(self, job: Awaitable[AsyncJob]) -> Job:
        return Job(self._runner, self._runner.run(job))

    def upload_image(self, image: Image.Image | np.ndarray | bytes | Path, **kwargs: Any) -> str:
        """See `AsyncClient.upload_image`."""
        return self._runner.run(self._async.upload_image(image, **kwargs))

    def submit(self, spec: gateway_pb2.JobSpec, **kwargs: Any) -> Job:
        """See `AsyncClient.submit`."""
        return self._job(self._async.submit(spec, **kwargs))

    def upscale(self, image: ImageInput, options: UpscaleOptions | None = None, **kwargs: Any) -> Job:
        """See `AsyncClient.upscale`."""
        return self._job(self._async.upscale(image, options, **kwargs))

    def generate(self, prompt: str, options: GenerateOptions | None = None, **kwargs: Any) -> Job:
        """See `AsyncClient.generate`."""
        return self._job(self._async.generate(prompt, options, **kwargs))

    def transform(self, image: ImageInput, options: TransformOptions | None = None, **kwargs: Any) -> Job:
        """See `AsyncClient.transform`."""
        return self._job(self._async.transform(image, options, **kwargs))

    def reference(
        self, image: ImageInput, prompt: str, options: ReferenceOptions | None = None, **kwargs: Any
    ) -> Job:
        """See `AsyncClient.reference`."""
        return self._job(self._async.reference(image, prompt, options, **kwargs))

    def job(self, job_id: str) -> Job:
        """A handle on an existing job, without a call."""
        return Job(self._runner, self._async.job(job_id))

    def get_job(self, job_id: str) -> gateway_pb2.Job:
        """See `AsyncClient.get_job`."""
        return self._runner.run(self._async.get_job(job_id))

    def list_jobs(
        self, state: Any = None, kind: Any = None, *, page_size: int = 0
    ) -> Iterator[gateway_pb2.Job]:
        """See `AsyncClient.list_jobs`."""
        return self._runner.iterate(self._async.list_jobs(state, kind, page_size=page_size))

    def cancel_job(self, job_id: str) -> gateway_pb2.Job:
        """See `AsyncClient.cancel_job`."""
        return self._runner.run(self._async.cancel_job(job_id))

    def delete_job(self, job_id: str) -> None:
        """See `AsyncClient.delete_job`."""
        self._runner.run(self._async.delete_job(job_id))

    def get_result(self, job_id: str, name: str = "final", **kwargs: Any) -> gateway_pb2.Image:
        """See `AsyncClient.get_result`."""
        return self._runner.run(self._async.get_result(job_id, name, **kwargs))

    def save_preset(self, name: str, options: UpscaleOptions, *, description: str = "") -> gateway_pb2.Preset:
        """See `AsyncClient.save_preset`."""
        return self._runner.run(self._async.save_preset(name, options, description=description))

    def get_preset(self, name: str) -> gateway_pb2.Preset:
        """See `AsyncClient.get_preset`."""
        return self._runner.run(self._async.get_preset(name))

    def list_presets(self) -> list[gateway_pb2.Preset]:
        """See `AsyncClient.list_presets`."""
        return self._runner.run(self._async.list_presets())

    def delete_preset(self, name: str) -> None:
        """See `AsyncClient.delete_preset`."""
        self._runner.run(self._async.delete_preset(name))

    def list_models(self) -> diffusion_pb2.ListModelsResponse:
        """See `AsyncClient.list_models`."""
        return self._runner.run(self._async.list_models())

    def list_loras(self) -> diffusion_pb2.ListLorasResponse:
        """See `AsyncClient.list_loras`."""
        return self._runner.run(self._async.list_loras())

    def upload_lora(self, lora: Path | str | bytes, name: str, **kwargs: Any) -> diffusion_pb2.LoraInfo:
        """See `AsyncClient.upload_lora`."""
        return self._runner.run(self._async.upload_lora(lora, name, **kwargs))

    def delete_lora(self, name: str) -> None:
        """See `AsyncClient.delete_lora`."""
        self._runner.run(self._async.delete_lora(name))

    def list_providers(self) -> bridge_pb2.ListProvidersResponse:
        """See `AsyncClient.list_providers`."""
        return self._runner.run(self._async.list_providers())

    def plan_grid(self, image: ImageInput, options: UpscaleOptions | None = None) -> gateway_pb2.GridLayout:
        """See `AsyncClient.plan_grid`."""
        return self._runner.run(self._async.plan_grid(image, options))

    def render_grid(
        self, image: ImageInput, options: UpscaleOptions | None = None, **kwargs: Any
    ) -> GridRender:
        """See `AsyncClient.render_grid`."""
        return self._runner.run(self._async.render_grid(image, options, **kwargs))

    def caption_tiles(
        self, image: ImageInput, options: UpscaleOptions | None = None, *, tile_indices: Iterable[int] = ()
    ) -> Iterator[gateway_pb2.CaptionTilesResponse]:
        """See `AsyncClient.caption_tiles`."""
        return self._runner.iterate(self._async.caption_tiles(image, options, tile_indices=tile_indices))

    def analyze_image(self, image: ImageInput, *, instruction: str = "") -> bridge_pb2.AnalyzeImageResponse:
        """See `AsyncClient.analyze_image`."""
        return self._runner.run(self._async.analyze_image(image, instruction=instruction))


class Job:
    """The blocking twin of `AsyncJob`."""

    def __init__(self, runner: _LoopThread, job: AsyncJob) -> None:
        self._runner = runner
        self._async = job

    @property
    def id(self) -> str:
        return self._async.id

    @property
    def job(self) -> gateway_pb2.Job:
        """The latest snapshot."""
        return self._async.job

    def __repr__(self) -> str:
        return repr(self._async).removeprefix("Async")

    def refresh(self) -> gateway_pb2.Job:
        """See `AsyncJob.refresh`."""
        return self._runner.run(self._async.refresh())

    def events(self, *, after_seq: int = 0, omit_previews: bool = False) -> Iterator[gateway_pb2.JobEvent]:
        """See `AsyncJob.events`."""
        return self._runner.iterate(self._async.events(after_seq=after_seq, omit_previews=omit_previews))

    def wait(self, **kwargs: Any) -> gateway_pb2.Job:
        """See `AsyncJob.wait` (`on_event` is called on the client's event loop thread)."""
        return self._runner.run(self._async.wait(**kwargs))

    def result(self, name: str = "final") -> Image.Image:
        """See `AsyncJob.result`."""
        return self._runner.run(self._async.result(name))

    def cancel(self) -> gateway_pb2.Job:
        """See `AsyncJob.cancel`."""
        return self._runner.run(self._async.cancel())

    def delete(self) -> None:
        """See `AsyncJob.delete`."""
        self._runner.run(self._async.delete())

    @property
    def done(self) -> bool:
        """See `AsyncJob.done`."""
        return self._async.done


def _enum_values(wrapper: Any, prefix: str, names: str | Iterable[str] | None, field_name: str) -> list[int]:
    """Enum values from names without their prefix (``"running"`` -> JOB_STATE_RUNNING)."""
    if names is None:
        return []
    return [
        _enum(wrapper, prefix, name, field_name) for name in ([names] if isinstance(names, str) else names)
    ]


def _size_and_digest(path: Path) -> tuple[int, str]:
    with path.open("rb") as file:
        return path.stat().st_size, hashlib.file_digest(file, "sha256").hexdigest()


def _read_chunks(source: Path | bytes, chunk_bytes: int) -> Iterator[bytes]:
    """`source` in runs of `chunk_bytes`; a file is read as the stream is sent, not all at once."""
    if isinstance(source, bytes):
        for start in range(0, len(source), chunk_bytes):
            yield source[start : start + chunk_bytes]
        return
    with source.open("rb") as file:
        while data := file.read(chunk_bytes):
            yield data
