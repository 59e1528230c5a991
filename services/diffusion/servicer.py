"""The Diffusion gRPC servicer: validate at the door, queue for the GPU, run the engine, stream back.

The work lives in engine.py (SDXL pipelines), upscaler.py (spandrel) and loras.py (the library).
This module turns requests into their domain objects — naming the proto field at fault — admits
GPU work to a one-slot queue (RESOURCE_EXHAUSTED when full), streams progress from the GPU thread,
and stops the work at the next step when the client cancels or its deadline passes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import Cancelled, ImageTooLarge, InvalidArgument, Unavailable
from services.common.streams import PartStream
from services.common.workers import BackgroundCall, WorkerPool
from services.diffusion import engine as engine_mod
from services.diffusion import loras as loras_mod
from services.diffusion.metrics import DiffusionMetrics
from services.diffusion.settings import DiffusionSettings
from services.diffusion.upscalers import UpscalerLibrary
from tilesmith import images
from tilesmith.v1 import common_pb2, diffusion_pb2, diffusion_pb2_grpc

__all__ = ["DiffusionServicer"]

CHUNK_BYTES = 4 * 1024 * 1024
# Tiles and control images: at most 4096 px a side (diffusion.proto), so never decode more than that.
TILE_MAX_PIXELS = 4096 * 4096
MAX_PROMPT_CHARS = 2000

SCHEDULERS = {
    diffusion_pb2.SCHEDULER_UNSPECIFIED: "dpmpp_2m_sde_karras",
    diffusion_pb2.SCHEDULER_DPMPP_2M_SDE_KARRAS: "dpmpp_2m_sde_karras",
    diffusion_pb2.SCHEDULER_DPMPP_2M_KARRAS: "dpmpp_2m_karras",
    diffusion_pb2.SCHEDULER_DPMPP_2M: "dpmpp_2m",
    diffusion_pb2.SCHEDULER_DPMPP_SDE_KARRAS: "dpmpp_sde_karras",
    diffusion_pb2.SCHEDULER_EULER: "euler",
    diffusion_pb2.SCHEDULER_EULER_ANCESTRAL: "euler_ancestral",
    diffusion_pb2.SCHEDULER_DDIM: "ddim",
    diffusion_pb2.SCHEDULER_UNIPC: "unipc",
}
_MODEL_KINDS = {
    "checkpoint": diffusion_pb2.MODEL_KIND_CHECKPOINT,
    "vae": diffusion_pb2.MODEL_KIND_VAE,
    "controlnet": diffusion_pb2.MODEL_KIND_CONTROLNET,
    "ip_adapter": diffusion_pb2.MODEL_KIND_IP_ADAPTER,
    "image_encoder": diffusion_pb2.MODEL_KIND_IMAGE_ENCODER,
}


# --- validation at the door ------------------------------------------------------------------------


def _in_range(field: str, value: float, low: float, high: float, *, low_open: bool = False) -> float:
    ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidArgument(field, f"must be in {bracket}{low}, {high}], got {value}")
    return value


def _prompt(field: str, text: str, *, required: bool = False) -> str:
    if required and not text.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidArgument(field, f"must be at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
    return text


def _rgb(field: str, message: common_pb2.Image, max_pixels: int, *, allow_alpha: bool = False) -> np.ndarray:
    pixels = images.to_array(message, max_pixels=max_pixels, field=field)
    if pixels.shape[2] == 4:
        if not allow_alpha:
            raise InvalidArgument(field, "RGBA is not diffused: split the alpha channel off and send RGB8")
        pixels = pixels[:, :, :3]
    return pixels


def _scheduler(field: str, value: int) -> str:
    if value not in SCHEDULERS:
        raise InvalidArgument(field, f"unknown scheduler {value}")
    return SCHEDULERS[value]


def _controlnet(settings: diffusion_pb2.ControlNetSettings) -> engine_mod.ControlNetOptions:
    start = settings.guidance_start if settings.HasField("guidance_start") else 0.0
    end = settings.guidance_end if settings.HasField("guidance_end") else 1.0
    _in_range("controlnet.guidance_start", start, 0.0, 1.0)
    _in_range("controlnet.guidance_end", end, 0.0, 1.0)
    if start >= end:
        raise InvalidArgument("controlnet.guidance_start", f"must be below guidance_end ({end}), got {start}")
    return engine_mod.ControlNetOptions(
        enabled=settings.enabled if settings.HasField("enabled") else True,
        scale=_in_range("controlnet.scale", settings.scale if settings.HasField("scale") else 0.7, 0.0, 2.0),
        guidance_start=start,
        guidance_end=end,
    )


def _timestamp(value) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class _GpuResult(NamedTuple):
    output: Any
    stats: diffusion_pb2.GenerationStats


class DiffusionServicer(diffusion_pb2_grpc.DiffusionServicer):
    def __init__(
        self,
        settings: DiffusionSettings,
        engine: engine_mod.DiffusionEngine,
        upscalers: UpscalerLibrary,
        metrics: DiffusionMetrics,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._library_or_none: loras_mod.LoraLibrary | None = None
        self._upscalers = upscalers
        self._metrics = metrics
        # One GPU batch at a time; the rest wait in a bounded queue.
        self._gpu = WorkerPool(
            1,
            settings.max_queue,
            name="diffusion",
            queue_gauge=metrics.queue_requests,
            running_gauge=metrics.running_requests,
        )
        self._downloads = WorkerPool(4, 64, name="LoRA installs")

    def attach_library(self, library: loras_mod.LoraLibrary) -> None:
        """Called once the models are loaded (the library checks LoRAs against the loaded UNet)."""
        self._library_or_none = library

    @property
    def _library(self) -> loras_mod.LoraLibrary:
        if self._library_or_none is None or not self._engine.loaded:
            raise Unavailable("the diffusion service is still loading its models; retry shortly")
        return self._library_or_none

    def close(self) -> None:
        self._gpu.close()
        self._downloads.close()

    # --- shared machinery ---------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if not self._engine.loaded:
            raise Unavailable("the diffusion service is still loading its models; retry shortly")

    def _queued(self) -> int | None:
        """Calls ahead of a new one, or None when it would run at once."""
        return self._gpu.waiting + 1 if self._gpu.busy else None

    def _sampling(self, sampling: diffusion_pb2.SamplingParams) -> dict[str, Any]:
        steps = sampling.steps if sampling.HasField("steps") else 30
        _in_range("sampling.steps", steps, 1, 150)
        cfg = sampling.cfg_scale if sampling.HasField("cfg_scale") else 7.0
        _in_range("sampling.cfg_scale", cfg, 0.0, 30.0)
        stack = [(lora.name, lora.weight) for lora in sampling.loras]
        resolved = self._library.validate_stack(stack, field="sampling.loras") if stack else []
        ip_image, ip_scale = None, 0.6
        if sampling.HasField("ip_adapter"):
            if not sampling.ip_adapter.HasField("image"):
                raise InvalidArgument("sampling.ip_adapter.image", "is required when ip_adapter is set")
            ip_image = _rgb(
                "sampling.ip_adapter.image",
                sampling.ip_adapter.image,
                self._settings.max_pixels,
                allow_alpha=True,
            )
            if sampling.ip_adapter.HasField("scale"):
                ip_scale = _in_range("sampling.ip_adapter.scale", sampling.ip_adapter.scale, 0.0, 2.0)
        return {
            "steps": steps,
            "cfg_scale": cfg,
            "scheduler": _scheduler("sampling.scheduler", sampling.scheduler),
            "loras": resolved,
            "ip_adapter_image": ip_image,
            "ip_adapter_scale": ip_scale,
        }

    async def _on_gpu(self, operation: str, work: Callable[[Callable[[Any], None], threading.Event], Any]):
        """Queue for the GPU and run `work(emit, cancel)` there.

        Yields `{"queued": QueuePosition}` when the call has to wait, `{"progress": event}` for each event
        `work` emits (both ready to splat into the RPC's response message), and last a `_GpuResult`.
        """
        queued_at = time.perf_counter()
        self._gpu.admit()  # a full queue answers RESOURCE_EXHAUSTED before anything is sent
        if (ahead := self._queued()) is not None:
            yield {"queued": diffusion_pb2.QueuePosition(ahead=ahead)}
        async with self._gpu.slot():
            started_at = time.perf_counter()
            async with BackgroundCall(self._gpu, work) as call:
                async for event in call.events():
                    yield {"progress": event}
                output = await call.result()
            self._metrics.inference_seconds.labels(operation=operation).observe(
                time.perf_counter() - started_at
            )
        yield _GpuResult(output, self._stats(queued_at, started_at))

    def _stats(self, queued_at: float, started_at: float) -> diffusion_pb2.GenerationStats:
        return diffusion_pb2.GenerationStats(
            model=self._engine.model_name,
            queue_seconds=started_at - queued_at,
            inference_seconds=time.perf_counter() - started_at,
        )

    def _step_reporter(self, emit: Callable[[Any], None]) -> Callable[[int, int, float], None]:
        def on_step(step: int, total: int, seconds: float) -> None:
            self._metrics.denoise_step_seconds.observe(seconds)
            emit(diffusion_pb2.DenoiseProgress(step=step, total_steps=total))

        return on_step

    # --- Img2Img ------------------------------------------------------------------------------------

    def _img2img_batch(self, request: diffusion_pb2.Img2ImgRequest) -> engine_mod.Img2ImgBatch:
        self._require_loaded()
        # 1. The tiles: 1..max_batch_size, RGB, one size, unique tags.
        if not request.tiles:
            raise InvalidArgument("tiles", "must hold at least one tile")
        if len(request.tiles) > self._settings.max_batch_size:
            raise InvalidArgument(
                "tiles",
                f"at most {self._settings.max_batch_size} tiles per request, got {len(request.tiles)}",
            )
        if len({tile.index for tile in request.tiles}) != len(request.tiles):
            raise InvalidArgument("tiles.index", "must be unique within the request")
        tiles = []
        for i, tile in enumerate(request.tiles):
            field = f"tiles[{i}]"
            pixels = _rgb(f"{field}.image", tile.image, min(self._settings.max_pixels, TILE_MAX_PIXELS))
            height, width = pixels.shape[:2]
            for name, side in (("width", width), ("height", height)):
                _in_range(f"{field}.image.{name}", side, 16, 4096)
            if tiles and pixels.shape != tiles[0].image.shape:
                first = tiles[0].image.shape
                raise InvalidArgument(
                    f"{field}.image",
                    f"every tile must have the first tile's size {first[1]}x{first[0]}, got {width}x{height}",
                )
            control = None
            if tile.HasField("control_image"):
                control = _rgb(
                    f"{field}.control_image",
                    tile.control_image,
                    min(self._settings.max_pixels, TILE_MAX_PIXELS),
                )
                if control.shape != pixels.shape:
                    raise InvalidArgument(f"{field}.control_image", f"must be {width}x{height} like the tile")
            tiles.append(
                engine_mod.Img2ImgTileInput(
                    image=pixels,
                    prompt=_prompt(f"{field}.prompt", tile.prompt),
                    negative_prompt=_prompt(f"{field}.negative_prompt", tile.negative_prompt),
                    seed=tile.seed,
                    control_image=control,
                )
            )
        # 2. Shared parameters.
        strength = request.strength if request.HasField("strength") else 0.35
        _in_range("strength", strength, 0.0, 1.0, low_open=True)
        generation_size = None
        if request.HasField("generation_size"):
            generation_size = int(_in_range("generation_size", request.generation_size, 64, 4096))
        return engine_mod.Img2ImgBatch(
            tiles=tiles,
            strength=strength,
            controlnet=_controlnet(request.controlnet),
            generation_size=generation_size,
            **self._sampling(request.sampling),
        )

    async def Img2Img(
        self, request: diffusion_pb2.Img2ImgRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[diffusion_pb2.Img2ImgResponse]:
        batch = await asyncio.to_thread(self._img2img_batch, request)

        def work(emit: Callable[[Any], None], cancel: threading.Event) -> list[np.ndarray]:
            return self._engine.img2img(batch, on_step=self._step_reporter(emit), cancelled=cancel.is_set)

        async for event in self._on_gpu("img2img", work):
            if isinstance(event, _GpuResult):
                outputs, stats = event
            else:
                yield diffusion_pb2.Img2ImgResponse(**event)
        self._metrics.images_generated.labels(operation="img2img").inc(len(outputs))
        for tile, output in zip(request.tiles, outputs, strict=True):
            yield diffusion_pb2.Img2ImgResponse(
                tile=diffusion_pb2.Img2ImgTileResult(
                    index=tile.index, image=images.to_proto(output), seed=tile.seed
                )
            )
        yield diffusion_pb2.Img2ImgResponse(stats=stats)

    # --- Txt2Img ------------------------------------------------------------------------------------

    def _txt2img_job(self, request: diffusion_pb2.Txt2ImgRequest) -> engine_mod.Txt2ImgJob:
        self._require_loaded()
        width = request.size.width if request.HasField("size") else 1024
        height = request.size.height if request.HasField("size") else 1024
        for name, side in (("width", width), ("height", height)):
            _in_range(f"size.{name}", side, 64, 4096)
            if side % 8:
                raise InvalidArgument(f"size.{name}", f"must be a multiple of 8, got {side}")
        if request.output_encoding not in (
            common_pb2.IMAGE_ENCODING_UNSPECIFIED,
            common_pb2.IMAGE_ENCODING_RAW,
            common_pb2.IMAGE_ENCODING_PNG,
        ):
            raise InvalidArgument("output_encoding", "must be RAW or PNG")
        return engine_mod.Txt2ImgJob(
            prompt=_prompt("prompt", request.prompt, required=True),
            negative_prompt=_prompt("negative_prompt", request.negative_prompt),
            width=width,
            height=height,
            seed=request.seed,
            **self._sampling(request.sampling),
        )

    async def Txt2Img(
        self, request: diffusion_pb2.Txt2ImgRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[diffusion_pb2.Txt2ImgResponse]:
        job = await asyncio.to_thread(self._txt2img_job, request)

        def work(emit: Callable[[Any], None], cancel: threading.Event) -> np.ndarray:
            return self._engine.txt2img(job, on_step=self._step_reporter(emit), cancelled=cancel.is_set)

        async for event in self._on_gpu("txt2img", work):
            if isinstance(event, _GpuResult):
                output, stats = event
            else:
                yield diffusion_pb2.Txt2ImgResponse(**event)
        self._metrics.images_generated.labels(operation="txt2img").inc()
        for chunk in self._encode_chunks(output, request.output_encoding):
            yield diffusion_pb2.Txt2ImgResponse(image=chunk)
        yield diffusion_pb2.Txt2ImgResponse(stats=stats)

    def _encode_chunks(self, pixels: np.ndarray, encoding: int):
        if encoding == common_pb2.IMAGE_ENCODING_PNG:
            return images.iter_chunks(images.to_proto(pixels, "png"), chunk_bytes=CHUNK_BYTES)
        return images.iter_array_chunks(pixels, chunk_bytes=CHUNK_BYTES)

    # --- Upscale ------------------------------------------------------------------------------------

    async def Upscale(
        self, request_iterator: AsyncIterator[diffusion_pb2.UpscaleRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[diffusion_pb2.UpscaleResponse]:
        stream = PartStream(request_iterator)
        params: diffusion_pb2.UpscaleParams = await stream.params()
        tile_size = params.tile_size if params.HasField("tile_size") else 512
        _in_range("params.tile_size", tile_size, 32, 4096)
        overlap = params.tile_overlap if params.HasField("tile_overlap") else min(32, tile_size // 4)
        _in_range("params.tile_overlap", overlap, 0, max(tile_size // 4, 0))
        if params.output_encoding not in (
            common_pb2.IMAGE_ENCODING_UNSPECIFIED,
            common_pb2.IMAGE_ENCODING_RAW,
            common_pb2.IMAGE_ENCODING_PNG,
        ):
            raise InvalidArgument("params.output_encoding", "must be RAW or PNG")
        parts = await stream.collect(images=("image",), max_image_bytes=self._settings.max_pixels * 4)
        pixels = await asyncio.to_thread(parts["image"].to_array, self._settings.max_pixels)
        upscaler = await asyncio.to_thread(self._upscalers.get, params.model)
        height, width = pixels.shape[:2]
        if width * height * upscaler.scale**2 > self._settings.max_pixels:
            raise ImageTooLarge(
                f"image: {width}x{height} at x{upscaler.scale} exceeds the {self._settings.max_pixels} pixel cap"
            )

        def work(emit: Callable[[Any], None], cancel: threading.Event) -> np.ndarray:
            return upscaler.upscale(
                pixels,
                tile_size=tile_size,
                tile_overlap=overlap,
                progress=lambda done, total: emit(
                    diffusion_pb2.UpscaleProgress(tiles_done=done, tiles_total=total)
                ),
                cancelled=cancel.is_set,
            )

        async for event in self._on_gpu("upscale", work):
            if isinstance(event, _GpuResult):
                output, stats = event
            else:
                yield diffusion_pb2.UpscaleResponse(**event)
        self._metrics.images_generated.labels(operation="upscale").inc()
        for chunk in self._encode_chunks(output, params.output_encoding):
            yield diffusion_pb2.UpscaleResponse(image=chunk)
        stats.model = upscaler.name
        yield diffusion_pb2.UpscaleResponse(stats=stats)

    # --- models -------------------------------------------------------------------------------------

    async def ListModels(
        self, request: diffusion_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.ListModelsResponse:
        models = [
            diffusion_pb2.ModelInfo(
                name=model.name,
                kind=_MODEL_KINDS.get(model.kind, diffusion_pb2.MODEL_KIND_UNSPECIFIED),
                base_architecture=common_pb2.BASE_ARCHITECTURE_SDXL
                if model.kind in ("checkpoint", "vae", "controlnet", "ip_adapter")
                else common_pb2.BASE_ARCHITECTURE_UNSPECIFIED,
                loaded=model.loaded,
                is_default=True,
                source=model.source,
                size_bytes=model.size_bytes,
            )
            for model in self._engine.describe_models()
        ]
        for file in await asyncio.to_thread(self._upscalers.files):
            loaded = self._upscalers.loaded(file.name)
            models.append(
                diffusion_pb2.ModelInfo(
                    name=file.name,
                    kind=diffusion_pb2.MODEL_KIND_UPSCALER,
                    architecture=loaded.architecture if loaded else "",
                    scale=loaded.scale if loaded else 0,
                    loaded=loaded is not None,
                    is_default=file.name == self._upscalers.default,
                    source=str(file.path),
                    size_bytes=file.size_bytes,
                )
            )
        return diffusion_pb2.ListModelsResponse(
            profile=self._settings.profile,
            device=str(self._engine.device),
            dtype=str(self._engine.dtype).removeprefix("torch."),
            models=models,
            max_batch_size=self._settings.max_batch_size,
            queue_capacity=self._settings.max_queue,
        )

    # --- LoRA library -------------------------------------------------------------------------------

    def _lora_info(self, info: loras_mod.LoraInfo) -> diffusion_pb2.LoraInfo:
        return diffusion_pb2.LoraInfo(
            name=info.name,
            base_architecture=common_pb2.BaseArchitecture.Value(
                "BASE_ARCHITECTURE_" + info.architecture.name
            ),
            compatible=info.compatible,
            size_bytes=info.size_bytes,
            sha256=info.sha256,
            metadata=_metadata_to_proto(info.metadata),
            modified_time=_timestamp(info.modified_time),
            loaded=self._engine.lora_loaded(info.name, info.sha256),
        )

    async def UploadLora(
        self,
        request_iterator: AsyncIterator[diffusion_pb2.UploadLoraRequest],
        context: grpc.aio.ServicerContext,
    ) -> diffusion_pb2.LoraInfo:
        stream = PartStream(request_iterator)
        params: diffusion_pb2.UploadLoraParams = await stream.params()
        metadata = (
            _metadata_from_proto(params.metadata, "params.metadata") if params.HasField("metadata") else None
        )
        upload = await asyncio.to_thread(
            self._library.begin_upload,
            params.name,
            params.total_bytes,
            sha256=params.sha256 or None,
            metadata=metadata,
            overwrite=params.overwrite,
        )
        with upload:
            await stream.collect(
                item="data",
                on_item=lambda data: asyncio.to_thread(upload.write, data),
                max_image_bytes=0,
                max_items=10**7,
            )
            info = await asyncio.to_thread(upload.commit)
        return self._lora_info(info)

    async def InstallLora(
        self, request: diffusion_pb2.InstallLoraRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[diffusion_pb2.InstallLoraResponse]:
        metadata = (
            _metadata_from_proto(request.metadata, "metadata") if request.HasField("metadata") else None
        )
        library = self._library

        def work(emit: Callable[[Any], None], cancel: threading.Event) -> loras_mod.LoraInfo:
            def progress(done: int, total: int | None) -> None:
                if cancel.is_set():
                    raise Cancelled("the install was cancelled")
                emit(diffusion_pb2.LoraDownloadProgress(bytes_done=done, bytes_total=total or 0))

            return library.install(
                request.url,
                name=request.name or None,
                sha256=request.sha256 or None,
                metadata=metadata,
                overwrite=request.overwrite,
                progress=progress,
            )

        # Downloads run beside the GPU queue, a few at a time; a client that leaves stops its download.
        async with self._downloads.slot(), BackgroundCall(self._downloads, work) as call:
            async for event in call.events():
                yield diffusion_pb2.InstallLoraResponse(progress=event)
            info = await call.result()
        yield diffusion_pb2.InstallLoraResponse(lora=self._lora_info(info))

    async def ListLoras(
        self, request: diffusion_pb2.ListLorasRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.ListLorasResponse:
        architecture = None
        if request.base_architecture != common_pb2.BASE_ARCHITECTURE_UNSPECIFIED:
            name = common_pb2.BaseArchitecture.Name(request.base_architecture).removeprefix(
                "BASE_ARCHITECTURE_"
            )
            if name not in loras_mod.BaseArchitecture.__members__:
                raise InvalidArgument("base_architecture", f"no LoRA library architecture {name}")
            architecture = loras_mod.BaseArchitecture[name]
        infos = await asyncio.to_thread(self._library.list, architecture)
        rules = self._library.rules
        return diffusion_pb2.ListLorasResponse(
            loras=[self._lora_info(info) for info in infos],
            rules=diffusion_pb2.LoraStackingRules(
                max_loras=rules.max_loras,
                type_limits=[
                    diffusion_pb2.LoraTypeLimit(
                        type=diffusion_pb2.LoraType.Value("LORA_TYPE_" + lora_type.name), max_count=count
                    )
                    for lora_type, count in rules.max_per_type.items()
                ],
                max_weight_sum=rules.max_weight_sum,
            ),
        )

    async def UpdateLora(
        self, request: diffusion_pb2.UpdateLoraRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.LoraInfo:
        metadata = _metadata_from_proto(request.metadata, "metadata")
        info = await asyncio.to_thread(self._library.update_metadata, request.name, metadata)
        return self._lora_info(info)

    async def DeleteLora(
        self, request: diffusion_pb2.DeleteLoraRequest, context: grpc.aio.ServicerContext
    ) -> diffusion_pb2.DeleteLoraResponse:
        await asyncio.to_thread(self._library.delete, request.name)
        return diffusion_pb2.DeleteLoraResponse()


def _metadata_from_proto(message: diffusion_pb2.LoraMetadata, field: str) -> loras_mod.LoraMetadata:
    if message.type not in diffusion_pb2.LoraType.values():
        raise InvalidArgument(f"{field}.type", f"unknown LoRA type {message.type}")
    metadata = loras_mod.LoraMetadata(
        type=loras_mod.LoraType[diffusion_pb2.LoraType.Name(message.type).removeprefix("LORA_TYPE_")],
        min_weight=message.min_weight if message.HasField("min_weight") else -2.0,
        max_weight=message.max_weight if message.HasField("max_weight") else 2.0,
        default_weight=message.default_weight if message.HasField("default_weight") else None,
        trigger_words=tuple(message.trigger_words),
        description=message.description,
        source_url=message.source_url,
    )
    metadata.check(field)
    return metadata


def _metadata_to_proto(metadata: loras_mod.LoraMetadata) -> diffusion_pb2.LoraMetadata:
    return diffusion_pb2.LoraMetadata(
        type=diffusion_pb2.LoraType.Value("LORA_TYPE_" + metadata.type.name),
        min_weight=metadata.min_weight,
        max_weight=metadata.max_weight,
        default_weight=metadata.suggested_weight,
        trigger_words=list(metadata.trigger_words),
        description=metadata.description,
        source_url=metadata.source_url,
    )
