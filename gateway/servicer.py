"""The Gateway service: jobs, uploads, UI helpers, presets, and proxies to the backends.

Every RPC validates at the door (gateway.specs) and names the offending field; jobs run in the
`JobRunner`; what the gateway stores goes through the `JobStore`; everything a backend answers is
reached through `Backends`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from PIL import Image

from gateway.captions import caption_tiles, check_caption_settings
from gateway.clients import Backends
from gateway.hosted import default_chains, prepare_spec, refuse_unavailable
from gateway.jobs import JobRunner
from gateway.settings import GatewaySettings
from gateway.specs import (
    ImageInfo,
    SpecContext,
    geometry,
    job_kind,
    plan_grids,
    validate_job_spec,
    validate_settings,
)
from gateway.store import FINAL_RESULT, TERMINAL_STATES, ImageMeta, JobRecord, JobStore
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from tilesmith import images
from tilesmith.v1 import (
    bridge_pb2,
    bridge_pb2_grpc,
    common_pb2,
    diffusion_pb2,
    diffusion_pb2_grpc,
    gateway_pb2_grpc,
    tiling_pb2,
)
from tilesmith.v1 import gateway_pb2 as pb

__all__ = ["GatewayServicer"]

log = logging.getLogger(__name__)

_TERMINAL_KINDS = frozenset({"succeeded", "failed", "cancelled"})
_MODELS_TTL = 10.0  # seconds a ListModels / ListLoras answer is reused for validating specs
_ENCODINGS = {
    common_pb2.IMAGE_ENCODING_PNG: "png",
    common_pb2.IMAGE_ENCODING_JPEG: "jpeg",
    common_pb2.IMAGE_ENCODING_WEBP: "webp",
}
_SNIFFED = {
    "PNG": common_pb2.IMAGE_ENCODING_PNG,
    "JPEG": common_pb2.IMAGE_ENCODING_JPEG,
    "WEBP": common_pb2.IMAGE_ENCODING_WEBP,
}


def _timestamp(seconds: float | None, message: Any) -> None:
    if seconds is not None:
        message.FromNanoseconds(int(seconds * 1e9))


def _grid_to_proto(plan) -> common_pb2.GridPlan:  # plan: services.common.grid.Grid
    return common_pb2.GridPlan(
        image_size=common_pb2.Size(width=plan.image_width, height=plan.image_height),
        tile_size=common_pb2.Size(width=plan.tile_width, height=plan.tile_height),
        overlap=plan.overlap,
        rows=plan.rows,
        cols=plan.cols,
        offset=plan.offset,
        tiles=[
            common_pb2.Tile(
                index=t.index,
                row=t.row,
                col=t.col,
                rect=common_pb2.Rect(x=t.x, y=t.y, width=t.width, height=t.height),
            )
            for t in plan.tiles
        ],
    )


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(
        self, settings: GatewaySettings, store: JobStore, backends: Backends, runner: JobRunner
    ) -> None:
        self.settings = settings
        self.store = store
        self.backends = backends
        self.runner = runner
        self._models: (
            tuple[float, diffusion_pb2.ListModelsResponse, diffusion_pb2.ListLorasResponse] | None
        ) = None
        self._models_lock = asyncio.Lock()
        self._providers: tuple[float, bridge_pb2.ListProvidersResponse] | None = None

    # -- Validation context --------------------------------------------------------------------------

    def _image_info(self, image_id: str) -> ImageInfo:
        record = self.store.get_image(image_id)
        return ImageInfo(record.meta.width, record.meta.height, record.meta.has_alpha)

    async def _catalog(
        self, *, fresh: bool = False
    ) -> tuple[diffusion_pb2.ListModelsResponse, diffusion_pb2.ListLorasResponse]:
        async with self._models_lock:
            now = time.monotonic()
            if fresh or self._models is None or now - self._models[0] > _MODELS_TTL:
                models, loras = await asyncio.gather(
                    self.backends.diffusion.list_models(), self.backends.diffusion.list_loras()
                )
                self._models = (now, models, loras)
            return self._models[1], self._models[2]

    def forget_catalog(self) -> None:
        self._models = None

    async def _bridge_providers(self) -> bridge_pb2.ListProvidersResponse | None:
        """The bridge's ListProviders (cached like the catalog); None without a bridge."""
        if self.backends.bridge is None:
            return None
        now = time.monotonic()
        if self._providers is None or now - self._providers[0] > _MODELS_TTL:
            self._providers = (now, await self.backends.bridge.list_providers())
        return self._providers[1]

    async def _hosted_context(self, ctx: SpecContext) -> SpecContext:
        providers = await self._bridge_providers()
        if providers is None:
            return ctx
        return dataclasses.replace(ctx, hosted_providers=frozenset(p.name for p in providers.providers))

    async def spec_context(self) -> SpecContext:
        """What validation needs from the backends (the diffusion catalog, cached for a few seconds)."""
        models, loras = await self._catalog()
        upscalers = frozenset(m.name for m in models.models if m.kind == diffusion_pb2.MODEL_KIND_UPSCALER)
        default = next(
            (m.name for m in models.models if m.kind == diffusion_pb2.MODEL_KIND_UPSCALER and m.is_default),
            next(iter(sorted(upscalers)), "lanczos"),
        )
        return SpecContext(
            image_info=self._image_info,
            loras=loras,
            upscalers=upscalers,
            default_upscaler=default,
            max_batch_size=max(1, models.max_batch_size),
            default_batch_size=self.settings.batch_size,
            max_pixels=self.settings.max_pixels,
        )

    # -- Jobs ----------------------------------------------------------------------------------------

    def _job(self, record: JobRecord) -> pb.Job:
        job = pb.Job(
            id=record.id,
            kind=record.kind,
            state=record.state,
            spec=pb.JobSpec.FromString(record.spec),
            seed=record.seed,
            last_seq=record.last_seq,
        )
        _timestamp(record.created, job.created_time)
        _timestamp(record.started, job.started_time)
        _timestamp(record.finished, job.finished_time)
        live = self.runner.live_progress(record.id) if record.state == pb.JOB_STATE_RUNNING else None
        if live is not None:
            job.progress.CopyFrom(live)
        else:
            job.progress.stage = (
                record.stage if record.state == pb.JOB_STATE_RUNNING else pb.JOB_STAGE_UNSPECIFIED
            )
            job.progress.tiles_done = record.tiles_done
            job.progress.tiles_total = record.tiles_total
            job.progress.fraction = (
                1.0
                if record.state == pb.JOB_STATE_SUCCEEDED
                else (record.tiles_done / record.tiles_total if record.tiles_total else 0.0)
            )
        if record.state == pb.JOB_STATE_QUEUED:
            job.progress.queue_position = self.runner.queue_position(record.id)
        if record.result:
            job.result.ParseFromString(record.result)
        if record.error:
            job.error.ParseFromString(record.error)
        return job

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        key = request.idempotency_key
        if len(key) > 128:
            raise InvalidArgument("idempotency_key", f"at most 128 characters, got {len(key)}")
        if key:
            existing = await asyncio.to_thread(self.store.find_job_by_idempotency_key, key)
            if existing is not None:
                return self._job(existing)
        if not request.HasField("spec"):
            raise InvalidArgument("spec", "required: one of upscale, generate, transform, reference")
        which = request.spec.WhichOneof("spec")
        refuse_unavailable(request.spec, bridge=self.backends.bridge is not None)
        ctx = await self.spec_context()
        if which in ("transform", "reference"):
            ctx = await self._hosted_context(ctx)
        spec = await asyncio.to_thread(validate_job_spec, request.spec, ctx)
        if which in ("upscale", "generate"):
            if getattr(spec, which).settings.caption.auto_caption and self.backends.captioning_pool is None:
                raise FailedPrecondition(
                    f"{which}.settings.caption.auto_caption: no captioning service is configured on this gateway"
                )
            seed = getattr(spec, which).settings.seed
        else:
            await asyncio.to_thread(prepare_spec, spec, self.settings, ctx)
            if which == "transform":
                seed = spec.transform.seed
            else:  # the provider picks one when unset
                seed = spec.reference.seed if spec.reference.HasField("seed") else -1
        kind = job_kind(spec)
        try:
            record = await self.runner.submit(spec, kind, seed, key)
        except AlreadyExists:  # a concurrent submit with the same key won
            existing = await asyncio.to_thread(self.store.find_job_by_idempotency_key, key)
            if existing is None:
                raise
            record = existing
        log.info("job submitted", extra={"job_id": record.id, "kind": pb.JobKind.Name(kind), "seed": seed})
        return self._job(record)

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        return self._job(await asyncio.to_thread(self.store.get_job, self._job_id(request.job_id)))

    @staticmethod
    def _job_id(job_id: str) -> str:
        if not job_id:
            raise InvalidArgument("job_id", "required")
        return job_id

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        if request.page_size > 500:
            raise InvalidArgument("page_size", f"1..500 (0: 50), got {request.page_size}")
        records, token = await asyncio.to_thread(
            self.store.list_jobs,
            list(request.states),
            list(request.kinds),
            request.page_size or 50,
            request.page_token,
        )
        return pb.ListJobsResponse(jobs=[self._job(r) for r in records], next_page_token=token)

    async def CancelJob(self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        return self._job(await self.runner.cancel(self._job_id(request.job_id)))

    async def DeleteJob(
        self, request: pb.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteJobResponse:
        await asyncio.to_thread(self.store.delete_job, self._job_id(request.job_id))
        return pb.DeleteJobResponse()

    async def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.JobEvent]:
        job_id = self._job_id(request.job_id)
        await asyncio.to_thread(self.store.get_job, job_id)  # NOT_FOUND before anything is streamed
        seen = request.after_seq
        with self.runner.hub.subscribe(job_id) as transient:
            while True:
                # 1. Everything logged since the last seq sent, in order.
                ended = False
                for record in await asyncio.to_thread(self.store.events_after, job_id, seen):
                    event = pb.JobEvent.FromString(record.payload)
                    event.seq = record.seq
                    if request.omit_previews and event.WhichOneof("kind") == "tile_done":
                        event.tile_done.ClearField("preview")
                    seen = record.seq
                    yield event
                    ended = ended or event.WhichOneof("kind") in ("succeeded", "failed", "cancelled")
                if ended:
                    return
                if await asyncio.to_thread(self._log_complete, job_id, seen):
                    return
                # 2. Wait for the next logged event; pass transient ones on; a heartbeat after quiet.
                waiter = asyncio.ensure_future(self.store.notifier.wait(job_id, seen))
                step = asyncio.ensure_future(transient.get())
                try:
                    done, _ = await asyncio.wait(
                        {waiter, step},
                        timeout=self.settings.heartbeat_seconds,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for future in (waiter, step):
                        if not future.done():
                            future.cancel()
                if step in done:
                    event = step.result()
                    event.seq = seen
                    yield event
                elif not done:
                    heartbeat = pb.JobEvent(seq=seen, heartbeat=pb.JobHeartbeat())
                    heartbeat.time.GetCurrentTime()
                    yield heartbeat

    def _log_complete(self, job_id: str, seen: int) -> bool:
        """Whether a watcher that has seen up to `seen` has the whole log of an ended job. (The end state
        is stored just before the terminal event is logged, so an ended job may lack it for a moment.)"""
        record = self.store.get_job(job_id)
        if record.state not in TERMINAL_STATES or seen < record.last_seq:
            return False
        last = self.store.events_after(job_id, max(0, record.last_seq - 1), limit=1)
        return bool(last) and last[0].kind in _TERMINAL_KINDS

    async def GetResult(
        self, request: pb.GetResultRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.ImageChunk]:
        job_id = self._job_id(request.job_id)
        record = await asyncio.to_thread(self.store.get_job, job_id)
        name = request.intermediate or FINAL_RESULT
        if not request.intermediate and record.state != pb.JOB_STATE_SUCCEEDED:
            raise FailedPrecondition(f"job {job_id} has no result: it is {pb.JobState.Name(record.state)}")
        if request.HasField("quality") and not 1 <= request.quality <= 100:
            raise InvalidArgument("quality", f"1..100, got {request.quality}")
        try:
            data = await asyncio.to_thread(self.store.get_result, job_id, name)
        except NotFound as exc:
            raise NotFound(f"intermediate: job {job_id} kept no image named {name!r}") from exc
        encoding = request.encoding
        if encoding in (common_pb2.IMAGE_ENCODING_UNSPECIFIED, common_pb2.IMAGE_ENCODING_PNG):
            message = common_pb2.Image(data=data, encoding=common_pb2.IMAGE_ENCODING_PNG)
            pixels = None
        else:
            pixels = await asyncio.to_thread(images.decode_bytes, data, self.settings.max_pixels)
            if encoding == common_pb2.IMAGE_ENCODING_RAW:
                message = images.to_proto(pixels, "raw")
            elif encoding in _ENCODINGS:
                if encoding == common_pb2.IMAGE_ENCODING_JPEG and pixels.shape[2] == 4:
                    raise InvalidArgument(
                        "encoding", "JPEG has no alpha channel; this result is RGBA (use PNG or WebP)"
                    )
                quality = request.quality if request.HasField("quality") else 95
                message = await asyncio.to_thread(images.to_proto, pixels, _ENCODINGS[encoding], quality)
            else:
                raise InvalidArgument("encoding", f"unknown encoding {encoding}")
        if pixels is None:
            width, height, alpha = await asyncio.to_thread(_png_header, data)
            message.width, message.height = width, height
            message.format = common_pb2.PIXEL_FORMAT_RGBA8 if alpha else common_pb2.PIXEL_FORMAT_RGB8
        for chunk in images.iter_chunks(message):
            yield chunk

    # -- Images --------------------------------------------------------------------------------------

    async def UploadImage(
        self, request_iterator: AsyncIterator[pb.UploadImageRequest], context: grpc.aio.ServicerContext
    ) -> pb.UploadImageResponse:
        params: pb.UploadImageParams | None = None
        assembler = images.ChunkAssembler(max_bytes=self.settings.max_upload_bytes, field="image")
        async for message in request_iterator:
            which = message.WhichOneof("part")
            if which == "params":
                if params is not None:
                    raise InvalidArgument("params", "sent twice; it comes first, once")
                params = message.params
            elif which == "image":
                if params is None:
                    raise InvalidArgument("params", "must come first, before the image chunks")
                assembler.add(message.image)
            else:
                raise InvalidArgument("part", "each message carries params or an image chunk")
        if params is None:
            raise InvalidArgument("params", "required as the first message")
        if len(params.filename) > 255:
            raise InvalidArgument("params.filename", f"at most 255 characters, got {len(params.filename)}")
        image = assembler.result()
        # The format is read from the bytes (a header may leave the encoding unset); raw pixels are
        # stored as PNG, so every stored image is a file the decoder reads on its own.
        if image.encoding == common_pb2.IMAGE_ENCODING_RAW:
            pixels = await asyncio.to_thread(
                images.to_array, image, self.settings.max_pixels, self.settings.max_upload_bytes, "image"
            )
            data, encoding = (
                await asyncio.to_thread(images.encode_bytes, pixels, "png"),
                common_pb2.IMAGE_ENCODING_PNG,
            )
        else:
            data = image.data
            pixels = await asyncio.to_thread(
                images.decode_bytes,
                data,
                self.settings.max_pixels,
                self.settings.max_upload_bytes,
                "image.data",
            )
            encoding = _SNIFFED.get(images._sniff_format(data[:16]) or "", common_pb2.IMAGE_ENCODING_PNG)
        meta = ImageMeta(
            width=pixels.shape[1],
            height=pixels.shape[0],
            has_alpha=pixels.shape[2] == 4,
            encoding=encoding,
            filename=params.filename,
        )
        record = await asyncio.to_thread(self.store.put_image, data, meta)
        return pb.UploadImageResponse(
            image_id=record.image_id,
            size=common_pb2.Size(width=meta.width, height=meta.height),
            has_alpha=meta.has_alpha,
            encoding=encoding,
            size_bytes=record.size_bytes,
            sha256=record.sha256,
        )

    # -- UI helpers ----------------------------------------------------------------------------------

    async def _layout(self, image_id: str, settings: pb.UpscaleSettings) -> tuple[pb.GridLayout, Any, Any]:
        """The sizes and grids an upscale with `settings` uses on an upload; only the grid settings matter
        (the rest may be a work in progress in the UI)."""
        if not image_id:
            raise InvalidArgument("image_id", "required")
        info = await asyncio.to_thread(self._image_info, image_id)
        geo = geometry(
            settings, (info.width, info.height), field="settings", max_pixels=self.settings.max_pixels
        )
        grid, seam_grid = plan_grids(settings, geo, field="settings")
        layout = pb.GridLayout(
            input_size=common_pb2.Size(width=geo.input_size[0], height=geo.input_size[1]),
            working_size=common_pb2.Size(width=geo.working_size[0], height=geo.working_size[1]),
            output_size=common_pb2.Size(width=geo.output_size[0], height=geo.output_size[1]),
            plan=_grid_to_proto(grid),
        )
        if seam_grid is not None:
            layout.seam_plan.CopyFrom(_grid_to_proto(seam_grid))
        return layout, geo, grid

    async def PlanGrid(
        self, request: pb.GatewayPlanGridRequest, context: grpc.aio.ServicerContext
    ) -> pb.GridLayout:
        layout, _, _ = await self._layout(request.image_id, request.settings)
        return layout

    async def RenderGrid(
        self, request: pb.GatewayRenderGridRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GatewayRenderGridResponse]:
        layout, geo, grid = await self._layout(request.image_id, request.settings)
        count = len(grid.tiles)
        for name in ("selected", "processed"):
            for i, index in enumerate(getattr(request, name)):
                if index >= count:
                    raise InvalidArgument(f"{name}[{i}]", f"tile index below {count}, got {index}")
        if request.max_side and not 64 <= request.max_side <= 4096:
            raise InvalidArgument("max_side", f"64..4096 (0: 1024), got {request.max_side}")
        if request.thumbnail_size and not 32 <= request.thumbnail_size <= 1024:
            raise InvalidArgument("thumbnail_size", f"0 or 32..1024, got {request.thumbnail_size}")
        yield pb.GatewayRenderGridResponse(layout=layout)
        # The overview is drawn on the input scaled to the working size's shape, capped at max_side, so
        # grid coordinates map onto it by overview width / working width.
        data = await asyncio.to_thread(self.store.read_image, request.image_id)
        pixels = await asyncio.to_thread(images.decode_bytes, data, self.settings.max_pixels)
        max_side = request.max_side or 1024
        scale = min(1.0, max_side / max(geo.working_size))
        view = (max(1, round(geo.working_size[0] * scale)), max(1, round(geo.working_size[1] * scale)))
        canvas = await self.backends.tiling.resize(np.ascontiguousarray(pixels), view)
        params = tiling_pb2.RenderGridParams(
            grid=tiling_pb2.GridParams(
                tile_size=common_pb2.Size(
                    width=max(16, round(grid.tile_width * scale)),
                    height=max(16, round(grid.tile_height * scale)),
                ),
                overlap=round(grid.overlap * scale),
            ),
            selected=request.selected,
            processed=request.processed,
            max_side=max(64, max(view)),
            thumbnail_size=request.thumbnail_size,
        )
        overview = images.ChunkAssembler(max_bytes=4096 * 4096 * 3 + 1024, field="overview")
        sent = False
        async for message in self.backends.tiling.render_grid(canvas, params):
            if message.WhichOneof("part") == "overview":
                overview.add(message.overview)
                continue
            if not sent:  # the overview is complete once the thumbnails start
                for chunk in await asyncio.to_thread(_png_chunks, overview):
                    yield pb.GatewayRenderGridResponse(overview=chunk)
                sent = True
            yield pb.GatewayRenderGridResponse(thumbnail=message.thumbnail)
        if not sent:
            for chunk in await asyncio.to_thread(_png_chunks, overview):
                yield pb.GatewayRenderGridResponse(overview=chunk)

    async def CaptionTiles(
        self, request: pb.CaptionTilesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CaptionTilesResponse]:
        if self.backends.captioning_pool is None:
            raise Unavailable("no captioning service is configured on this gateway")
        _, geo, grid = await self._layout(request.image_id, request.settings)
        options = check_caption_settings(request.settings.caption, "settings.caption")
        count = len(grid.tiles)
        for i, index in enumerate(request.tile_indices):
            if index >= count:
                raise InvalidArgument(f"tile_indices[{i}]", f"tile index below {count}, got {index}")
            if index in request.tile_indices[:i]:
                raise InvalidArgument(f"tile_indices[{i}]", f"tile {index} appears twice")
        indices = sorted(request.tile_indices) if request.tile_indices else list(range(count))
        data = await asyncio.to_thread(self.store.read_image, request.image_id)
        source = await asyncio.to_thread(images.decode_bytes, data, self.settings.max_pixels)
        done = 0
        async for caption in caption_tiles(
            self.backends,
            source,
            geo,
            grid,
            indices,
            options,
            batch_size=self.settings.caption_batch_size,
            overview_side=self.settings.caption_overview_side,
        ):
            done += 1
            yield pb.CaptionTilesResponse(
                index=caption.index,
                caption=caption.text,
                cached=caption.cached,
                model=caption.model,
                done=done,
                total=len(indices),
            )

    async def AnalyzeImage(
        self, request: pb.GatewayAnalyzeImageRequest, context: grpc.aio.ServicerContext
    ) -> bridge_pb2.AnalyzeImageResponse:
        if self.backends.bridge_pool is None:
            raise Unavailable("no bridge service is configured on this gateway")
        if not request.image_id:
            raise InvalidArgument("image_id", "required")
        record = await asyncio.to_thread(self.store.get_image, request.image_id)
        if record.size_bytes > 10 * 1024 * 1024:
            raise InvalidArgument(
                "image_id", f"the image is {record.size_bytes} bytes; analysis takes at most 10 MB"
            )
        data = await asyncio.to_thread(self.store.read_image, request.image_id)
        image = common_pb2.Image(encoding=record.meta.encoding, data=data)

        def requests() -> Any:
            yield bridge_pb2.AnalyzeImageRequest(params=request.params)
            for chunk in images.iter_chunks(image):
                yield bridge_pb2.AnalyzeImageRequest(image=chunk)

        return await self.backends.bridge_pool.call(
            lambda ch, md, t: bridge_pb2_grpc.BridgeStub(ch).AnalyzeImage(requests(), metadata=md, timeout=t),
            deadline=self.settings.tile_deadline_seconds,
        )

    # -- Presets -------------------------------------------------------------------------------------

    def _preset(self, record) -> pb.Preset:
        preset = pb.Preset(
            name=record.name,
            description=record.description,
            settings=pb.UpscaleSettings.FromString(record.settings),
        )
        _timestamp(record.created, preset.created_time)
        _timestamp(record.updated, preset.updated_time)
        return preset

    async def SavePreset(self, request: pb.SavePresetRequest, context: grpc.aio.ServicerContext) -> pb.Preset:
        preset = request.preset
        if len(preset.description) > 2000:
            raise InvalidArgument(
                "preset.description", f"at most 2000 characters, got {len(preset.description)}"
            )
        ctx = await self.spec_context()
        await asyncio.to_thread(validate_settings, preset.settings, ctx, field="preset.settings")
        try:
            record = await asyncio.to_thread(
                self.store.save_preset, preset.name, preset.settings.SerializeToString(), preset.description
            )
        except InvalidArgument as exc:
            raise InvalidArgument("preset.name", exc.message) from exc
        return self._preset(record)

    async def GetPreset(self, request: pb.GetPresetRequest, context: grpc.aio.ServicerContext) -> pb.Preset:
        return self._preset(await asyncio.to_thread(self.store.get_preset, request.name))

    async def ListPresets(
        self, request: pb.ListPresetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPresetsResponse:
        return pb.ListPresetsResponse(
            presets=[self._preset(r) for r in await asyncio.to_thread(self.store.list_presets)]
        )

    async def DeletePreset(
        self, request: pb.DeletePresetRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePresetResponse:
        await asyncio.to_thread(self.store.delete_preset, request.name)
        return pb.DeletePresetResponse()

    # -- Models, LoRAs, providers (proxies) ----------------------------------------------------------

    def _diffusion_unary(self, method: str, request: Any, *, idempotent: bool = True) -> Any:
        return self.backends.diffusion_pool.call(
            lambda ch, md, t: getattr(diffusion_pb2_grpc.DiffusionStub(ch), method)(
                request, metadata=md, timeout=t
            ),
            idempotent=idempotent,
        )

    async def ListModels(
        self, request: diffusion_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.ListModelsResponse:
        return await self._diffusion_unary("ListModels", request)

    async def ListLoras(
        self, request: diffusion_pb2.ListLorasRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.ListLorasResponse:
        return await self._diffusion_unary("ListLoras", request)

    async def UpdateLora(
        self, request: diffusion_pb2.UpdateLoraRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.LoraInfo:
        info = await self._diffusion_unary("UpdateLora", request)
        self.forget_catalog()
        return info

    async def DeleteLora(
        self, request: diffusion_pb2.DeleteLoraRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.DeleteLoraResponse:
        answer = await self._diffusion_unary("DeleteLora", request, idempotent=False)
        self.forget_catalog()
        return answer

    async def UploadLora(
        self,
        request_iterator: AsyncIterator[diffusion_pb2.UploadLoraRequest],
        context: grpc.aio.ServicerContext,
    ) -> diffusion_pb2.LoraInfo:
        # Streamed through as it arrives: a LoRA can be gigabytes. One replica takes it (they share the folder).
        async with self.backends.diffusion_pool.replica() as channel:
            info = await diffusion_pb2_grpc.DiffusionStub(channel).UploadLora(
                request_iterator, metadata=self.backends.diffusion_pool._call_metadata()
            )
        self.forget_catalog()
        return info

    async def InstallLora(
        self, request: diffusion_pb2.InstallLoraRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[diffusion_pb2.InstallLoraResponse]:
        async for message in self.backends.diffusion_pool.stream(
            lambda ch, md, t: diffusion_pb2_grpc.DiffusionStub(ch).InstallLora(
                request, metadata=md, timeout=t
            ),
            idempotent=False,
            deadline=3600.0,
        ):
            yield message
        self.forget_catalog()

    async def ListProviders(
        self, request: bridge_pb2.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> bridge_pb2.ListProvidersResponse:
        internal = bridge_pb2.ProviderInfo(
            name="internal",
            kind=bridge_pb2.PROVIDER_KIND_INTERNAL,
            capabilities=[bridge_pb2.PROVIDER_CAPABILITY_IMAGE_TO_IMAGE],
            available=True,
        )
        response = bridge_pb2.ListProvidersResponse(providers=[internal])
        if self.backends.bridge is not None:
            self._providers = None  # a listing is asked for: answer fresh circuit states
            answer = await self._bridge_providers()
            assert answer is not None
            response.providers.extend(answer.providers)
            response.default_chains.extend(answer.default_chains)
        # The gateway's own TRANSFORM / REFERENCE defaults replace the bridge's for those capabilities.
        ctx = SpecContext(
            image_info=self._image_info,
            loras=None,
            upscalers=frozenset(),
            default_upscaler="lanczos",
            max_batch_size=1,
            default_batch_size=1,
            max_pixels=self.settings.max_pixels,
            hosted_providers=frozenset(p.name for p in response.providers if p.name != "internal"),
        )
        ours = default_chains(self.settings, ctx)
        replaced = {chain.capability for chain in ours}
        kept = [chain for chain in response.default_chains if chain.capability not in replaced]
        del response.default_chains[:]
        response.default_chains.extend([*ours, *kept])
        return response


def _png_chunks(overview: images.ChunkAssembler) -> list[common_pb2.ImageChunk]:
    """The overview as the contract promises it: PNG (the tiling service sends it raw)."""
    message = overview.result()
    if message.encoding != common_pb2.IMAGE_ENCODING_PNG:
        message = images.to_proto(overview.to_array(), "png")
    return list(images.iter_chunks(message))


def _png_header(data: bytes) -> tuple[int, int, bool]:
    """Width, height and alpha of a stored PNG, from its header (no decode)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.width, image.height, image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
