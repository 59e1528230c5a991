"""The Bridge gRPC servicer: proto in, one call on `Bridge` (chains.py), proto out.

Requests are validated here, naming the proto field at fault; images are decoded off the event loop;
attempts and provider status stream out as they happen, then the image as chunks, then the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from services.bridge.chains import Attempt, Bridge, ImageResult
from services.bridge.circuit import CircuitState
from services.bridge.metrics import BridgeMetrics
from services.bridge.prompts import DEFAULT_ANALYSIS_INSTRUCTION, Attributes, build_prompt
from services.bridge.providers import AnalyzeTask, Capability, GenerateTask, Img2ImgTask, StatusUpdate
from services.bridge.references import ReferenceStore, UploadedImage, decode_upload
from services.bridge.settings import BridgeSettings
from services.common.errors import InvalidArgument
from services.common.streams import PartStream
from tilesmith import images
from tilesmith.v1 import bridge_pb2, bridge_pb2_grpc, common_pb2

__all__ = ["BridgeServicer"]

log = logging.getLogger(__name__)

MAX_TEXT = 4000
MAX_LORAS = 5
_MODE_CAPABILITY = {
    bridge_pb2.HOSTED_GENERATION_MODE_UNSPECIFIED: Capability.TEXT_TO_IMAGE,
    bridge_pb2.HOSTED_GENERATION_MODE_TEXT_TO_IMAGE: Capability.TEXT_TO_IMAGE,
    bridge_pb2.HOSTED_GENERATION_MODE_DEPTH: Capability.DEPTH_TO_IMAGE,
    bridge_pb2.HOSTED_GENERATION_MODE_EDIT: Capability.IMAGE_EDIT,
}
_OUTPUT = {
    common_pb2.IMAGE_ENCODING_UNSPECIFIED: "png",
    common_pb2.IMAGE_ENCODING_PNG: "png",
    common_pb2.IMAGE_ENCODING_JPEG: "jpeg",
}
_CIRCUIT = {
    CircuitState.CLOSED: bridge_pb2.CIRCUIT_STATE_CLOSED,
    CircuitState.OPEN: bridge_pb2.CIRCUIT_STATE_OPEN,
    CircuitState.HALF_OPEN: bridge_pb2.CIRCUIT_STATE_HALF_OPEN,
}
_FIT = 2048


# --- validation at the door ------------------------------------------------------------------------


def _check_text(field: str, value: str, *, required: bool, limit: int = MAX_TEXT) -> None:
    if required and not value.strip():
        raise InvalidArgument(field, "is required")
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters, got {len(value)}")


def _check_range(field: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    if not (low < value <= high if low_open else low <= value <= high):
        bracket = "(" if low_open else "["
        raise InvalidArgument(field, f"must be in {bracket}{low:g}, {high:g}], got {value:g}")


def _output_format(field: str, value: int) -> str:
    if value not in _OUTPUT:
        raise InvalidArgument(field, f"must be IMAGE_ENCODING_PNG or IMAGE_ENCODING_JPEG, got {value}")
    return _OUTPUT[value]


def _attributes(message: bridge_pb2.PhysicalAttributes) -> Attributes:
    for name in ("hair_color", "hair_style", "eye_color", "skin_tone", "body_type", "age"):
        _check_text(f"params.attributes.{name}", getattr(message, name), required=False, limit=100)
    if len(message.extra) > 16:
        raise InvalidArgument("params.attributes.extra", f"at most 16 entries, got {len(message.extra)}")
    for key, value in message.extra.items():
        _check_text("params.attributes.extra (key)", key, required=True, limit=50)
        _check_text(f"params.attributes.extra[{key}]", value, required=False, limit=100)
    return Attributes(
        message.hair_color,
        message.hair_style,
        message.eye_color,
        message.skin_tone,
        message.body_type,
        message.age,
        dict(message.extra),
    )


def _loras(params: bridge_pb2.GenerateParams) -> tuple[tuple[tuple[str, float], ...], list[str]]:
    if len(params.loras) > MAX_LORAS:
        raise InvalidArgument("params.loras", f"at most {MAX_LORAS} LoRAs, got {len(params.loras)}")
    loras, words = [], []
    for index, lora in enumerate(params.loras):
        field = f"params.loras[{index}]"
        if not lora.url.startswith("https://"):
            raise InvalidArgument(
                f"{field}.url", f"must be an https URL the provider can fetch, got {lora.url!r}"
            )
        weight = lora.weight if lora.HasField("weight") else 1.0
        _check_range(f"{field}.weight", weight, 0.0, 4.0)
        if len(lora.trigger_words) > 32:
            raise InvalidArgument(
                f"{field}.trigger_words", f"at most 32 words, got {len(lora.trigger_words)}"
            )
        for word in lora.trigger_words:
            _check_text(f"{field}.trigger_words", word, required=False, limit=100)
        loras.append((lora.url, weight))
        words += lora.trigger_words
    return tuple(loras), words


def _fit(width: int, height: int) -> tuple[int, int]:
    """The reference's size scaled down (never up) to fit 2048 x 2048."""
    scale = min(1.0, _FIT / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- proto conversion ------------------------------------------------------------------------------


def _attempt_pb(attempt: Attempt) -> bridge_pb2.ProviderAttempt:
    return bridge_pb2.ProviderAttempt(
        provider=attempt.provider,
        model=attempt.model,
        outcome=attempt.outcome.value,
        status_code=attempt.status_code,
        http_status=attempt.http_status,
        message=attempt.message,
        duration_seconds=attempt.duration_seconds,
        retries=attempt.retries,
    )


def _event_pb(event: Attempt | StatusUpdate) -> bridge_pb2.HostedImageResponse:
    if isinstance(event, Attempt):
        return bridge_pb2.HostedImageResponse(attempt=_attempt_pb(event))
    return bridge_pb2.HostedImageResponse(
        status=bridge_pb2.HostedStatus(
            provider=event.provider, state=event.state.value, queue_position=event.queue_position
        )
    )


def _encode_result(result: ImageResult, output_format: str) -> common_pb2.Image:
    """The result in the requested encoding: the provider's file as it is when it already is one."""
    pixels = result.pixels
    if output_format == "jpeg" and pixels.shape[2] == 4:
        pixels = images.split_alpha(pixels)[0]
    data = result.data if result.file_format == output_format else images.encode_bytes(pixels, output_format)
    return common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_PNG if output_format == "png" else common_pb2.IMAGE_ENCODING_JPEG,
        format=common_pb2.PIXEL_FORMAT_RGB8 if pixels.shape[2] == 3 else common_pb2.PIXEL_FORMAT_RGBA8,
        width=pixels.shape[1],
        height=pixels.shape[0],
        data=data,
    )


async def _relay(queue: asyncio.Queue, job: asyncio.Task) -> AsyncIterator[bridge_pb2.HostedImageResponse]:
    """Yield the events `job` puts on `queue` while it runs, then the ones left."""
    try:
        while not job.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield _event_pb(getter.result())
            else:
                getter.cancel()
        while not queue.empty():
            yield _event_pb(queue.get_nowait())
    finally:
        if not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job


class BridgeServicer(bridge_pb2_grpc.BridgeServicer):
    def __init__(self, settings: BridgeSettings, bridge: Bridge, metrics: BridgeMetrics) -> None:
        self._settings = settings
        self._bridge = bridge
        self._metrics = metrics
        self.references = ReferenceStore(settings.reference_dir, settings.reference_max_age_seconds)
        self._cleaner: asyncio.Task | None = None

    async def start(self) -> None:
        """Delete old references now and every `cleanup_interval_seconds` (call once the loop runs)."""
        await asyncio.to_thread(self.references.clean)
        self._cleaner = asyncio.create_task(self._clean_periodically())

    async def _clean_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.cleanup_interval_seconds)
            await asyncio.to_thread(self.references.clean)

    async def close(self) -> None:
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
        await self._bridge.aclose()

    async def _upload(self, parts: PartStream, field: str, *, allow_raw: bool) -> UploadedImage:
        assembled = await parts.collect(images=[field], max_image_bytes=self._settings.max_image_bytes)
        message = assembled[field].result()
        return await asyncio.to_thread(
            decode_upload,
            message,
            field=field,
            max_pixels=self._settings.max_pixels,
            max_bytes=self._settings.max_image_bytes,
            allow_raw=allow_raw,
        )

    # --- ListProviders -----------------------------------------------------------------------------

    async def ListProviders(self, request, context) -> bridge_pb2.ListProvidersResponse:
        self._bridge.update_circuit_metrics()
        providers = []
        for name, provider in self._bridge.providers.items():
            info = bridge_pb2.ProviderInfo(
                name=name,
                kind=provider.kind,
                capabilities=[capability.value for capability in provider.capabilities],
                available=provider.key is not None,
                unavailable_reason=provider.unavailable_reason,
                circuit_state=_CIRCUIT[provider.breaker.state],
                consecutive_failures=provider.breaker.consecutive_failures,
                models=provider.all_models,
                base_url=provider.base_url,
            )
            if (retry := provider.breaker.retry_time) is not None:
                stamp = Timestamp()
                stamp.FromNanoseconds(int(retry * 1e9))
                info.circuit_retry_time.CopyFrom(stamp)
            providers.append(info)
        chains = [
            bridge_pb2.ProviderChain(capability=capability.value, providers=chain)
            for capability, chain in self._bridge.default_chains().items()
        ]
        return bridge_pb2.ListProvidersResponse(providers=providers, default_chains=chains)

    # --- AnalyzeImage ------------------------------------------------------------------------------

    async def AnalyzeImage(self, request_iterator, context) -> bridge_pb2.AnalyzeImageResponse:
        with self._metrics.running_requests.track_inprogress():
            # 1. Params, then the image
            parts = PartStream(request_iterator)
            params: bridge_pb2.AnalyzeImageParams = await parts.params()
            _check_text("params.instruction", params.instruction, required=False)
            max_tokens = params.max_tokens if params.HasField("max_tokens") else 1024
            _check_range("params.max_tokens", max_tokens, 1, 4096)
            chain = self._bridge.resolve_chain(
                Capability.ANALYZE_IMAGE, params.provider_chain, "params.provider_chain"
            )
            image = await self._upload(parts, "image", allow_raw=True)

            # 2. Ask the chain
            task = AnalyzeTask(image, params.instruction.strip() or DEFAULT_ANALYSIS_INSTRUCTION, max_tokens)
            result = await self._bridge.analyze(task, chain, params.model)
            return bridge_pb2.AnalyzeImageResponse(
                description=result.description,
                suggested_prompt=result.suggested_prompt,
                provider=result.provider,
                model=result.model,
                attempts=[_attempt_pb(attempt) for attempt in result.attempts],
            )

    # --- Generate ----------------------------------------------------------------------------------

    async def Generate(self, request_iterator, context) -> AsyncIterator[bridge_pb2.HostedImageResponse]:
        with self._metrics.running_requests.track_inprogress():
            # 1. Check the params
            parts = PartStream(request_iterator)
            params: bridge_pb2.GenerateParams = await parts.params()
            if params.mode not in _MODE_CAPABILITY:
                raise InvalidArgument("params.mode", f"unknown mode {params.mode}")
            capability = _MODE_CAPABILITY[params.mode]
            _check_text("params.prompt", params.prompt, required=True)
            _check_text("params.negative_prompt", params.negative_prompt, required=False)
            if params.HasField("size"):
                _check_range("params.size.width", params.size.width, 256, 4096)
                _check_range("params.size.height", params.size.height, 256, 4096)
            if params.HasField("steps"):
                _check_range("params.steps", params.steps, 1, 50)
            if params.HasField("guidance_scale"):
                _check_range("params.guidance_scale", params.guidance_scale, 0.0, 20.0)
            loras, trigger_words = _loras(params)
            attributes = _attributes(params.attributes)
            output_format = _output_format("params.output_encoding", params.output_encoding)
            chain = self._bridge.resolve_chain(capability, params.provider_chain, "params.provider_chain")

            # 2. The reference image: required for DEPTH and EDIT, refused for TEXT_TO_IMAGE
            reference: UploadedImage | None = None
            if capability is Capability.TEXT_TO_IMAGE:
                try:
                    await parts.collect(max_image_bytes=self._settings.max_image_bytes)
                except InvalidArgument as exc:
                    if exc.field == "reference":
                        raise InvalidArgument(
                            "reference", "TEXT_TO_IMAGE takes no reference image; use DEPTH or EDIT"
                        ) from exc
                    raise
            else:
                reference = await self._upload(parts, "reference", allow_raw=False)
            if params.HasField("size"):
                width, height = params.size.width, params.size.height
            elif reference is not None:
                width, height = _fit(reference.width, reference.height)
            else:
                width, height = 1024, 1024

            # 3. Build the prompt and run the chain, streaming attempts and status as they come
            task = GenerateTask(
                capability=capability,
                prompt=build_prompt(params.prompt, trigger_words, attributes),
                negative_prompt=params.negative_prompt,
                width=width,
                height=height,
                size_requested=params.HasField("size"),
                seed=params.seed if params.HasField("seed") else None,
                steps=params.steps if params.HasField("steps") else None,
                guidance_scale=params.guidance_scale if params.HasField("guidance_scale") else None,
                loras=loras,
                reference=reference,
                output_format=output_format,
            )
            stored = (
                await asyncio.to_thread(self.references.save, reference) if reference is not None else None
            )
            try:
                queue: asyncio.Queue = asyncio.Queue()
                job = asyncio.create_task(self._bridge.generate(task, chain, params.model, queue.put_nowait))
                async for message in _relay(queue, job):
                    yield message
                result = job.result()
            finally:
                if stored is not None:
                    stored.unlink(missing_ok=True)
            async for message in self._image_messages(result, output_format, task.prompt):
                yield message

    # --- Img2Img -----------------------------------------------------------------------------------

    async def Img2Img(self, request_iterator, context) -> AsyncIterator[bridge_pb2.HostedImageResponse]:
        with self._metrics.running_requests.track_inprogress():
            # 1. Check the params, then the image
            parts = PartStream(request_iterator)
            params: bridge_pb2.HostedImg2ImgParams = await parts.params()
            _check_text("params.prompt", params.prompt, required=True)
            _check_text("params.negative_prompt", params.negative_prompt, required=False)
            strength = params.strength if params.HasField("strength") else 0.5
            _check_range("params.strength", strength, 0.0, 1.0, low_open=True)
            if params.HasField("steps"):
                _check_range("params.steps", params.steps, 1, 100)
            if params.HasField("guidance_scale"):
                _check_range("params.guidance_scale", params.guidance_scale, 0.0, 30.0)
            output_format = _output_format("params.output_encoding", params.output_encoding)
            chain = self._bridge.resolve_chain(
                Capability.IMAGE_TO_IMAGE, params.provider_chain, "params.provider_chain"
            )
            image = await self._upload(parts, "image", allow_raw=True)

            # 2. Run the chain, streaming attempts and status as they come
            task = Img2ImgTask(
                image=image,
                prompt=params.prompt,
                negative_prompt=params.negative_prompt,
                strength=strength,
                strength_requested=params.HasField("strength"),
                seed=params.seed if params.HasField("seed") else None,
                steps=params.steps if params.HasField("steps") else None,
                guidance_scale=params.guidance_scale if params.HasField("guidance_scale") else None,
                output_format=output_format,
            )
            queue: asyncio.Queue = asyncio.Queue()
            job = asyncio.create_task(self._bridge.img2img(task, chain, params.model, queue.put_nowait))
            async for message in _relay(queue, job):
                yield message
            async for message in self._image_messages(job.result(), output_format, task.prompt):
                yield message

    async def _image_messages(
        self, result: ImageResult, output_format: str, prompt: str
    ) -> AsyncIterator[bridge_pb2.HostedImageResponse]:
        image = await asyncio.to_thread(_encode_result, result, output_format)
        for chunk in images.iter_chunks(image):
            yield bridge_pb2.HostedImageResponse(image=chunk)
        pixels: np.ndarray = result.pixels
        yield bridge_pb2.HostedImageResponse(
            result=bridge_pb2.HostedImageResult(
                provider=result.provider,
                model=result.model,
                seed=result.output.seed,
                prompt=prompt,
                size=common_pb2.Size(width=pixels.shape[1], height=pixels.shape[0]),
                unused_fields=result.output.unused_fields,
                attempts=[_attempt_pb(attempt) for attempt in result.attempts],
            )
        )
