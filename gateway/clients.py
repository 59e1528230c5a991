"""Typed calls from the gateway to its backends: pixels in, pixels out.

Each client wraps a `BackendPool` (replicas, limits, retries, deadlines) and the generated stub of
one service, and speaks numpy arrays (RGB8 / RGBA8, shape (h, w, c)) to the pipeline. Images travel
raw, as chunk streams, so nothing is encoded twice between the gateway and a backend on one network.
Every call is idempotent (the same request gives the same pixels), so every call may be retried onto
another replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.backends import BackendPool
from gateway.settings import GatewaySettings
from services.common.errors import FailedPrecondition, Unavailable
from tilesmith.images import ChunkAssembler, iter_array_chunks, iter_chunks, to_proto
from tilesmith.v1 import (
    bridge_pb2,
    bridge_pb2_grpc,
    captioning_pb2_grpc,
    common_pb2,
    diffusion_pb2,
    diffusion_pb2_grpc,
    tiling_pb2,
    tiling_pb2_grpc,
)

__all__ = ["Backends", "BridgeClient", "DiffusionClient", "GridSpec", "TileBatchResult", "TilingClient"]

StepCallback = Callable[[int, int], None]
AttemptCallback = Callable[[bridge_pb2.ProviderAttempt], Awaitable[None]]


@dataclass(frozen=True)
class GridSpec:
    """The geometry of a grid as the tiling service plans it (`GridParams` plus the image size)."""

    image_width: int
    image_height: int
    tile_width: int
    tile_height: int
    overlap: int

    def params(self, offset: bool = False) -> tiling_pb2.GridParams:
        return tiling_pb2.GridParams(
            tile_size=common_pb2.Size(width=self.tile_width, height=self.tile_height),
            overlap=self.overlap,
            offset=offset,
        )

    @property
    def size(self) -> common_pb2.Size:
        return common_pb2.Size(width=self.image_width, height=self.image_height)


def _format(channels: int) -> int:
    return common_pb2.PIXEL_FORMAT_RGB8 if channels == 3 else common_pb2.PIXEL_FORMAT_RGBA8


def _raw_tile(pixels: np.ndarray) -> common_pb2.Image:
    return to_proto(np.ascontiguousarray(pixels), "raw")


class _Collector:
    """Gathers one image from a stream of chunks; `max_pixels` caps what a backend may send back."""

    def __init__(self, max_bytes: int, max_pixels: int, field: str) -> None:
        self._assembler = ChunkAssembler(max_bytes=max_bytes, field=field)
        self._max_pixels = max_pixels
        self.seen = False

    def add(self, chunk: common_pb2.ImageChunk) -> None:
        self.seen = True
        self._assembler.add(chunk)

    def array(self) -> np.ndarray:
        return self._assembler.to_array(self._max_pixels)


class TilingClient:
    """Resize, blend, seam-blend, colour-fix and render through the tiling service."""

    def __init__(self, pool: BackendPool, settings: GatewaySettings) -> None:
        self.pool = pool
        self._max_bytes = settings.max_pixels * 4 + 1024  # an RGBA8 image at the pixel cap
        self._max_pixels = settings.max_pixels
        self._deadline = settings.backend_deadline_seconds

    async def _image_call(
        self, method: str, requests: Callable[[], Iterator[Any]], field: str, *, part: str = "image"
    ) -> tuple[np.ndarray, Any]:
        """Run a stream-in/stream-out call whose answer is one image (as `part` chunks) and maybe a tail."""

        async def collect(channel: Any, metadata: Any, seconds: float) -> tuple[np.ndarray, Any]:
            stub = tiling_pb2_grpc.TilingStub(channel)
            collector = _Collector(self._max_bytes, self._max_pixels, field)
            tail = None
            async for message in getattr(stub, method)(requests(), metadata=metadata, timeout=seconds):
                which = message.WhichOneof("part")
                if which == part:
                    collector.add(getattr(message, part))
                else:
                    tail = getattr(message, which)
            return collector.array(), tail

        return await self.pool.call(collect, deadline=self._deadline)

    async def resize(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Premultiplied Lanczos resize to (width, height); the same array back when the size matches."""
        if (pixels.shape[1], pixels.shape[0]) == tuple(size):
            return pixels

        def requests() -> Iterator[tiling_pb2.ResizeRequest]:
            params = tiling_pb2.ResizeParams(size=common_pb2.Size(width=size[0], height=size[1]))
            yield tiling_pb2.ResizeRequest(params=params)
            for chunk in iter_array_chunks(pixels):
                yield tiling_pb2.ResizeRequest(image=chunk)

        async def collect(channel: Any, metadata: Any, seconds: float) -> np.ndarray:
            collector = _Collector(self._max_bytes, self._max_pixels, "resize")
            call = tiling_pb2_grpc.TilingStub(channel).Resize(requests(), metadata=metadata, timeout=seconds)
            async for chunk in call:
                collector.add(chunk)
            return collector.array()

        return await self.pool.call(collect, deadline=self._deadline)

    async def blend(
        self, grid: GridSpec, tiles: Mapping[int, np.ndarray], feather: int, channels: int
    ) -> np.ndarray:
        """Blend every tile of `grid` (by index) into one image."""

        def requests() -> Iterator[tiling_pb2.BlendRequest]:
            params = tiling_pb2.BlendParams(
                image_size=grid.size, grid=grid.params(), format=_format(channels), feather=feather
            )
            yield tiling_pb2.BlendRequest(params=params)
            for index in sorted(tiles):
                tile = tiling_pb2.TileImage(tile=common_pb2.Tile(index=index), image=_raw_tile(tiles[index]))
                yield tiling_pb2.BlendRequest(tile=tile)

        image, _ = await self._image_call("Blend", requests, "blend")
        return image

    async def blend_seams(
        self,
        base: np.ndarray,
        grid: GridSpec,
        tiles: Mapping[int, np.ndarray],
        feather: int,
        band_width: int,
    ) -> tuple[np.ndarray, float]:
        """Blend the offset-grid tiles over `base` inside the bands around `grid`'s seams.

        Returns the image and the fraction of pixels inside the bands.
        """

        def requests() -> Iterator[tiling_pb2.BlendSeamsRequest]:
            params = tiling_pb2.BlendSeamsParams(
                image_size=grid.size,
                first_grid=grid.params(),
                format=_format(base.shape[2]),
                feather=feather,
                band_width=band_width,
            )
            yield tiling_pb2.BlendSeamsRequest(params=params)
            for chunk in iter_array_chunks(base):
                yield tiling_pb2.BlendSeamsRequest(base=chunk)
            for index in sorted(tiles):
                tile = tiling_pb2.TileImage(tile=common_pb2.Tile(index=index), image=_raw_tile(tiles[index]))
                yield tiling_pb2.BlendSeamsRequest(tile=tile)

        image, summary = await self._image_call("BlendSeams", requests, "blend_seams")
        return image, summary.touched_fraction if summary is not None else 0.0

    async def color_fix(self, target: np.ndarray, reference: np.ndarray, method: int) -> np.ndarray:
        """`target` with the colours of `reference` (tiling ColorFixMethod)."""

        def requests() -> Iterator[tiling_pb2.ColorFixRequest]:
            yield tiling_pb2.ColorFixRequest(params=tiling_pb2.ColorFixParams(method=method))
            for chunk in iter_array_chunks(target):
                yield tiling_pb2.ColorFixRequest(target=chunk)
            for chunk in iter_array_chunks(reference):
                yield tiling_pb2.ColorFixRequest(reference=chunk)

        async def collect(channel: Any, metadata: Any, seconds: float) -> np.ndarray:
            collector = _Collector(self._max_bytes, self._max_pixels, "color_fix")
            call = tiling_pb2_grpc.TilingStub(channel).ColorFix(
                requests(), metadata=metadata, timeout=seconds
            )
            async for chunk in call:
                collector.add(chunk)
            return collector.array()

        return await self.pool.call(collect, deadline=self._deadline)

    def render_grid(
        self, pixels: np.ndarray, params: tiling_pb2.RenderGridParams
    ) -> AsyncIterator[tiling_pb2.RenderGridResponse]:
        """RenderGrid's answer stream (overview chunks, then thumbnails)."""

        def call(channel: Any, metadata: Any, seconds: float) -> Any:
            def requests() -> Iterator[tiling_pb2.RenderGridRequest]:
                yield tiling_pb2.RenderGridRequest(params=params)
                for chunk in iter_array_chunks(pixels):
                    yield tiling_pb2.RenderGridRequest(image=chunk)

            return tiling_pb2_grpc.TilingStub(channel).RenderGrid(
                requests(), metadata=metadata, timeout=seconds
            )

        return self.pool.stream(call, deadline=self._deadline)


@dataclass(frozen=True)
class TileBatchResult:
    """What one Img2Img call returned: pixels by tile index, who drew them, with which checkpoint."""

    tiles: dict[int, np.ndarray]
    seeds: dict[int, int]
    replica: str
    model: str


class DiffusionClient:
    """Img2Img batches, Txt2Img and super-resolution on the diffusion replicas, plus model listings."""

    def __init__(
        self, pool: BackendPool, settings: GatewaySettings, *, replica_name: str | None = None
    ) -> None:
        self.pool = pool
        self._max_bytes = settings.max_pixels * 4 + 1024
        self._max_pixels = settings.max_pixels
        self._tile_deadline = settings.tile_deadline_seconds
        self._deadline = settings.backend_deadline_seconds
        self._replica_name = replica_name  # "embedded" when every service shares the gateway's process

    def _replica(self, channel: Any) -> str:
        return self._replica_name or self.pool.address_of(channel)

    async def img2img(
        self, request: diffusion_pb2.Img2ImgRequest, on_step: StepCallback | None = None
    ) -> TileBatchResult:
        """Re-draw one batch; `on_step(step, total)` is called per denoising step of the attempt."""

        async def collect(channel: Any, metadata: Any, seconds: float) -> TileBatchResult:
            stub = diffusion_pb2_grpc.DiffusionStub(channel)
            tiles: dict[int, np.ndarray] = {}
            seeds: dict[int, int] = {}
            model = ""
            async for message in stub.Img2Img(request, metadata=metadata, timeout=seconds):
                which = message.WhichOneof("part")
                if which == "progress" and on_step is not None:
                    on_step(message.progress.step, message.progress.total_steps)
                elif which == "tile":
                    result = message.tile
                    tiles[result.index] = _tile_pixels(result.image, self._max_pixels)
                    seeds[result.index] = result.seed
                elif which == "stats":
                    model = message.stats.model
            missing = {tile.index for tile in request.tiles} - tiles.keys()
            if missing:
                raise Unavailable(f"the diffusion service answered without tiles {sorted(missing)}")
            return TileBatchResult(tiles, seeds, self._replica(channel), model)

        return await self.pool.call(collect, deadline=self._tile_deadline)

    async def txt2img(
        self, request: diffusion_pb2.Txt2ImgRequest, on_step: StepCallback | None = None
    ) -> tuple[np.ndarray, str]:
        """One generated image (RGB8) and the checkpoint that drew it."""

        async def collect(channel: Any, metadata: Any, seconds: float) -> tuple[np.ndarray, str]:
            collector = _Collector(self._max_bytes, self._max_pixels, "txt2img")
            model = ""
            async for message in diffusion_pb2_grpc.DiffusionStub(channel).Txt2Img(
                request, metadata=metadata, timeout=seconds
            ):
                which = message.WhichOneof("part")
                if which == "progress" and on_step is not None:
                    on_step(message.progress.step, message.progress.total_steps)
                elif which == "image":
                    collector.add(message.image)
                elif which == "stats":
                    model = message.stats.model
            return collector.array(), model

        return await self.pool.call(collect, deadline=self._tile_deadline)

    async def upscale(self, pixels: np.ndarray, model: str) -> tuple[np.ndarray, str]:
        """Super-resolution with an upscaler model at its native scale; the upscaler's name."""

        def requests() -> Iterator[diffusion_pb2.UpscaleRequest]:
            yield diffusion_pb2.UpscaleRequest(params=diffusion_pb2.UpscaleParams(model=model))
            for chunk in iter_array_chunks(pixels):
                yield diffusion_pb2.UpscaleRequest(image=chunk)

        async def collect(channel: Any, metadata: Any, seconds: float) -> tuple[np.ndarray, str]:
            collector = _Collector(self._max_bytes, self._max_pixels, "upscale")
            name = model
            async for message in diffusion_pb2_grpc.DiffusionStub(channel).Upscale(
                requests(), metadata=metadata, timeout=seconds
            ):
                which = message.WhichOneof("part")
                if which == "image":
                    collector.add(message.image)
                elif which == "stats":
                    name = message.stats.model
            return collector.array(), name

        return await self.pool.call(collect, deadline=self._tile_deadline)

    async def list_models(self) -> diffusion_pb2.ListModelsResponse:
        return await self.pool.call(
            lambda ch, md, t: diffusion_pb2_grpc.DiffusionStub(ch).ListModels(
                diffusion_pb2.ListModelsRequest(), metadata=md, timeout=t
            ),
            deadline=self._deadline,
        )

    async def list_loras(self) -> diffusion_pb2.ListLorasResponse:
        return await self.pool.call(
            lambda ch, md, t: diffusion_pb2_grpc.DiffusionStub(ch).ListLoras(
                diffusion_pb2.ListLorasRequest(), metadata=md, timeout=t
            ),
            deadline=self._deadline,
        )


class BridgeClient:
    """Hosted generation and image-to-image through the bridge, streaming provider attempts as they come.

    Hosted calls are never retried by the pool (a provider may have run and billed the first one); the
    bridge itself retries each provider on 429 / 5xx and falls back along the chain.
    """

    def __init__(self, pool: BackendPool, settings: GatewaySettings) -> None:
        self.pool = pool
        self._max_bytes = settings.max_pixels * 4 + 1024
        self._max_pixels = settings.max_pixels
        self._deadline = settings.tile_deadline_seconds

    async def _hosted(
        self, method: str, requests: Callable[[], Iterator[Any]], on_attempt: AttemptCallback
    ) -> tuple[np.ndarray, bridge_pb2.HostedImageResult]:
        async def collect(
            channel: Any, metadata: Any, seconds: float
        ) -> tuple[np.ndarray, bridge_pb2.HostedImageResult]:
            collector = _Collector(self._max_bytes, self._max_pixels, f"bridge.{method}")
            result: bridge_pb2.HostedImageResult | None = None
            call = getattr(bridge_pb2_grpc.BridgeStub(channel), method)(
                requests(), metadata=metadata, timeout=seconds
            )
            async for message in call:
                which = message.WhichOneof("part")
                if which == "attempt":
                    await on_attempt(message.attempt)
                elif which == "image":
                    collector.add(message.image)
                elif which == "result":
                    result = message.result
            if result is None or not collector.seen:
                raise Unavailable(f"the bridge ended {method} without an image and its result")
            return collector.array(), result

        return await self.pool.call(collect, idempotent=False, deadline=self._deadline)

    async def img2img(
        self, params: bridge_pb2.HostedImg2ImgParams, image: common_pb2.Image, on_attempt: AttemptCallback
    ) -> tuple[np.ndarray, bridge_pb2.HostedImageResult]:
        """Bridge.Img2Img: the image and its result; `on_attempt` gets each failed or skipped provider."""

        def requests() -> Iterator[bridge_pb2.BridgeImg2ImgRequest]:
            yield bridge_pb2.BridgeImg2ImgRequest(params=params)
            for chunk in iter_chunks(image):
                yield bridge_pb2.BridgeImg2ImgRequest(image=chunk)

        return await self._hosted("Img2Img", requests, on_attempt)

    async def generate(
        self, params: bridge_pb2.GenerateParams, reference: common_pb2.Image, on_attempt: AttemptCallback
    ) -> tuple[np.ndarray, bridge_pb2.HostedImageResult]:
        """Bridge.Generate with a reference image (DEPTH / EDIT), as `img2img`."""

        def requests() -> Iterator[bridge_pb2.GenerateRequest]:
            yield bridge_pb2.GenerateRequest(params=params)
            for chunk in iter_chunks(reference):
                yield bridge_pb2.GenerateRequest(reference=chunk)

        return await self._hosted("Generate", requests, on_attempt)

    async def list_providers(self) -> bridge_pb2.ListProvidersResponse:
        return await self.pool.call(
            lambda ch, md, t: bridge_pb2_grpc.BridgeStub(ch).ListProviders(
                bridge_pb2.ListProvidersRequest(), metadata=md, timeout=t
            )
        )


def _tile_pixels(image: common_pb2.Image, max_pixels: int) -> np.ndarray:
    from tilesmith.images import to_array

    pixels = to_array(image, max_pixels=max_pixels, field="tile.image")
    if pixels.shape[2] != 3:
        raise FailedPrecondition("the diffusion service answered a tile that is not RGB8")
    return pixels


class Backends:
    """The gateway's backend pools, built from its settings; captioning and bridge are optional."""

    def __init__(self, settings: GatewaySettings, *, embedded: bool = False) -> None:
        token = settings.backend_token.get_secret_value() if settings.backend_token else None

        def pool(name: str, address: str, in_flight: int) -> BackendPool:
            return BackendPool(
                name,
                address,
                max_message_bytes=settings.max_message_bytes,
                in_flight_per_replica=in_flight,
                deadline_seconds=settings.backend_deadline_seconds,
                retries=settings.backend_retries,
                token=token,
            )

        self.tiling_pool = pool("tiling", settings.tiling_addr, settings.tiling_in_flight)
        self.diffusion_pool = pool("diffusion", settings.diffusion_addr, settings.diffusion_in_flight)
        self.captioning_pool = (
            pool("captioning", settings.captioning_addr, 2) if settings.captioning_addr else None
        )
        self.bridge_pool = pool("bridge", settings.bridge_addr, 8) if settings.bridge_addr else None
        self.tiling = TilingClient(self.tiling_pool, settings)
        self.diffusion = DiffusionClient(
            self.diffusion_pool, settings, replica_name="embedded" if embedded else None
        )
        self.bridge = BridgeClient(self.bridge_pool, settings) if self.bridge_pool is not None else None

    @property
    def pools(self) -> list[BackendPool]:
        return [
            pool
            for pool in (self.tiling_pool, self.diffusion_pool, self.captioning_pool, self.bridge_pool)
            if pool is not None
        ]

    def captioning_stub(self) -> Callable[[Any], captioning_pb2_grpc.CaptioningStub]:
        if self.captioning_pool is None:
            raise Unavailable("no captioning service is configured (TILESMITH_GATEWAY_CAPTIONING_ADDR)")
        return captioning_pb2_grpc.CaptioningStub

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools))


def chunked(indices: Iterable[int], size: int) -> list[list[int]]:
    """`indices` sorted and cut into runs of `size`: batches come from tile indices, never arrival order."""
    ordered = sorted(indices)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]
