"""The Tiling gRPC servicer: proto in, one domain call, proto out.

The work lives in grid.py, blend.py, resize.py, colorfix.py and render.py (plain numpy, testable
without gRPC). This module validates requests at the door, naming the proto field at fault, moves
heavy steps onto the worker pool, and streams whole images back as chunks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import numpy as np

from services.common import grid
from services.common.errors import ImageTooLarge, InvalidArgument
from services.common.streams import PartStream
from services.common.workers import WorkerPool
from services.tiling import blend, colorfix, render, resize
from services.tiling.metrics import TilingMetrics
from services.tiling.settings import TilingSettings
from tilesmith import images
from tilesmith.v1 import common_pb2, tiling_pb2, tiling_pb2_grpc

__all__ = ["TilingServicer"]

MIN_TILE, MAX_TILE = 64, 4096
# Whole images stream back in chunks of this size: large enough that per-message costs vanish,
# far below any sane message limit.
CHUNK_BYTES = 4 * 1024 * 1024
MAX_SIDE = 65535
_FEATHER = {
    tiling_pb2.FEATHER_MODE_UNSPECIFIED: "cosine",
    tiling_pb2.FEATHER_MODE_COSINE: "cosine",
    tiling_pb2.FEATHER_MODE_LINEAR: "linear",
}
_CHANNELS = {common_pb2.PIXEL_FORMAT_RGB8: 3, common_pb2.PIXEL_FORMAT_RGBA8: 4}


# --- validation at the door ------------------------------------------------------------------------


def _check_side(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high} pixels, got {value}")


def _check_image_size(field: str, width: int, height: int, max_pixels: int) -> None:
    _check_side(f"{field}.width", width, 1, MAX_SIDE)
    _check_side(f"{field}.height", height, 1, MAX_SIDE)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{field}: {width}x{height} is {width * height} pixels; the limit is {max_pixels}"
        )


def _plan(field: str, width: int, height: int, params: tiling_pb2.GridParams) -> grid.Grid:
    """A grid plan from validated request fields (`field` is the GridParams' path in the request)."""
    prefix = f"{field}." if field else ""
    _check_side(f"{prefix}tile_size.width", params.tile_size.width, MIN_TILE, MAX_TILE)
    _check_side(f"{prefix}tile_size.height", params.tile_size.height, MIN_TILE, MAX_TILE)
    limit = min(params.tile_size.width, params.tile_size.height) // 2
    if params.overlap > limit:
        raise InvalidArgument(
            f"{prefix}overlap",
            f"must be between 0 and half the smaller tile side ({limit}), got {params.overlap}",
        )
    return grid.plan_grid(
        width, height, params.tile_size.width, params.tile_size.height, params.overlap, offset=params.offset
    )


def _feather(field: str, mode: int) -> str:
    if mode not in _FEATHER:
        raise InvalidArgument(field, f"unknown feather mode {mode}")
    return _FEATHER[mode]


def _format_channels(field: str, pixel_format: int) -> int:
    if pixel_format not in _CHANNELS:
        raise InvalidArgument(field, f"must be PIXEL_FORMAT_RGB8 or PIXEL_FORMAT_RGBA8, got {pixel_format}")
    return _CHANNELS[pixel_format]


def grid_to_proto(plan: grid.Grid) -> common_pb2.GridPlan:
    return common_pb2.GridPlan(
        image_size=common_pb2.Size(width=plan.image_width, height=plan.image_height),
        tile_size=common_pb2.Size(width=plan.tile_width, height=plan.tile_height),
        overlap=plan.overlap,
        rows=plan.rows,
        cols=plan.cols,
        offset=plan.offset,
        tiles=[_tile_to_proto(t) for t in plan.tiles],
    )


def _tile_to_proto(tile: grid.TileRect) -> common_pb2.Tile:
    return common_pb2.Tile(
        index=tile.index,
        row=tile.row,
        col=tile.col,
        rect=common_pb2.Rect(x=tile.x, y=tile.y, width=tile.width, height=tile.height),
    )


class _TileCollector:
    """Checks each streamed tile against the plan and hands its pixels to `sink(index, array)`."""

    def __init__(self, plan: grid.Grid, channels: int, field: str, sink) -> None:
        self._plan = plan
        self._channels = channels
        self._field = field
        self._sink = sink
        self.seen: set[int] = set()

    def __call__(self, message: tiling_pb2.TileImage) -> None:
        index = message.tile.index
        field = f"{self._field}[{index}]"
        if index >= len(self._plan.tiles):
            raise InvalidArgument(
                f"{self._field}.tile.index", f"must be below {len(self._plan.tiles)}, got {index}"
            )
        if index in self.seen:
            raise InvalidArgument(f"{self._field}.tile.index", f"tile {index} was sent twice")
        rect = self._plan.tiles[index]
        header = message.image
        # Tiles travel raw (ARCHITECTURE.md): check the declared size before touching the bytes.
        if header.encoding != common_pb2.IMAGE_ENCODING_RAW:
            raise InvalidArgument(f"{field}.image.encoding", "tiles travel raw: IMAGE_ENCODING_RAW")
        if (header.width, header.height) != (rect.width, rect.height):
            raise InvalidArgument(
                f"{field}.image",
                f"must be {rect.width}x{rect.height} with {self._channels} channels, "
                f"got {header.width}x{header.height}",
            )
        pixels = images.to_array(header, max_pixels=rect.width * rect.height, field=f"{field}.image")
        if pixels.shape != (rect.height, rect.width, self._channels):
            raise InvalidArgument(
                f"{field}.image",
                f"must be {rect.width}x{rect.height} with {self._channels} channels, "
                f"got {pixels.shape[1]}x{pixels.shape[0]} with {pixels.shape[2]}",
            )
        self.seen.add(index)
        self._sink(index, pixels)  # a raw view, stored: cheap enough for the event loop

    def check_complete(self) -> None:
        missing = sorted(set(range(len(self._plan.tiles))) - self.seen)
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise InvalidArgument(self._field, f"{len(missing)} tile(s) of the plan were not sent: {shown}")


class TilingServicer(tiling_pb2_grpc.TilingServicer):
    def __init__(self, settings: TilingSettings, metrics: TilingMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._pool = WorkerPool(
            settings.workers,
            settings.max_queue,
            name="tiling",
            queue_gauge=metrics.queue_requests,
            running_gauge=metrics.running_requests,
        )
        # Uploads are received before a worker is taken (a slow client holds no worker), but only so
        # many at once: each may buffer up to the byte cap.
        self._uploads = WorkerPool(settings.max_uploads, 0, name="tiling uploads")
        # Bytes a whole RGBA image at the pixel cap takes; encoded uploads are far smaller.
        self._max_image_bytes = settings.max_pixels * 4

    def close(self) -> None:
        self._pool.close()
        self._uploads.close()

    @contextlib.asynccontextmanager
    async def _receiving(self, requests: AsyncIterator[Any]) -> AsyncIterator[PartStream]:
        """Read a request stream under the upload limit, with an idle timeout between messages."""
        async with self._uploads.slot():
            yield PartStream(requests, idle_seconds=self._settings.upload_idle_seconds)

    # --- helpers ------------------------------------------------------------------------------------

    def _decode(self, assembler: images.ChunkAssembler) -> np.ndarray:
        """Pixels of a received image: raw ones viewed in place, encoded ones decoded under the pixel cap."""
        return assembler.to_array(max_pixels=self._settings.max_pixels)

    def _chunks(self, pixels: np.ndarray) -> Iterable[common_pb2.ImageChunk]:
        return images.iter_array_chunks(pixels, chunk_bytes=CHUNK_BYTES)

    def _count(self, operation: str, tiles: int, pixels: int, started: float) -> None:
        self._metrics.tiles_processed.labels(operation=operation).inc(tiles)
        self._metrics.pixels_processed.labels(operation=operation).inc(pixels)
        self._metrics.operation_seconds.labels(operation=operation).observe(time.perf_counter() - started)

    # --- RPCs ---------------------------------------------------------------------------------------

    async def PlanGrid(
        self, request: tiling_pb2.PlanGridRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.GridPlan:
        size = request.image_size
        _check_image_size("image_size", size.width, size.height, self._settings.max_pixels)
        params = tiling_pb2.GridParams(
            tile_size=request.tile_size, overlap=request.overlap, offset=request.offset
        )
        return grid_to_proto(_plan("", size.width, size.height, params))

    async def Split(
        self, request_iterator: AsyncIterator[tiling_pb2.SplitRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tiling_pb2.TileImage]:
        async with self._receiving(request_iterator) as stream:
            params: tiling_pb2.GridParams = await stream.params()
            parts = await stream.collect(images=("image",), max_image_bytes=self._max_image_bytes)
        async with self._pool.slot():
            pixels = await self._pool.run(self._decode, parts["image"])
            height, width = pixels.shape[:2]
            plan = _plan("params", width, height, params)
            started = time.perf_counter()

            def cut() -> list[tiling_pb2.TileImage]:
                tiles = blend.split_tiles(pixels, plan)
                return [
                    tiling_pb2.TileImage(tile=_tile_to_proto(rect), image=images.to_proto(tile))
                    for rect, tile in zip(plan.tiles, tiles, strict=True)
                ]

            messages = await self._pool.run(cut)
            self._count("split", len(plan.tiles), width * height, started)
        for message in messages:  # streamed after the slot is free: a slow reader holds no worker
            yield message

    async def Blend(
        self, request_iterator: AsyncIterator[tiling_pb2.BlendRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tiling_pb2.BlendResponse]:
        async with self._receiving(request_iterator) as stream:
            params: tiling_pb2.BlendParams = await stream.params()
            size = params.image_size
            _check_image_size("params.image_size", size.width, size.height, self._settings.max_pixels)
            plan = _plan("params.grid", size.width, size.height, params.grid)
            channels = _format_channels("params.format", params.format)
            mode = _feather("params.feather", params.feather)
            blender = blend.Blender(plan, channels=channels, mode=mode)
            collector = _TileCollector(plan, channels, "tile", blender.add)
            await stream.collect(item="tile", on_item=collector, max_image_bytes=0, max_items=len(plan.tiles))
            collector.check_complete()
        async with self._pool.slot():
            started = time.perf_counter()
            result = await self._pool.run(blender.result)
            self._count("blend", len(plan.tiles), size.width * size.height, started)
        for chunk in self._chunks(result):
            yield tiling_pb2.BlendResponse(image=chunk)
        yield tiling_pb2.BlendResponse(
            summary=tiling_pb2.BlendSummary(tiles=len(plan.tiles), touched_fraction=1.0)
        )

    async def BlendSeams(
        self, request_iterator: AsyncIterator[tiling_pb2.BlendSeamsRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tiling_pb2.BlendResponse]:
        async with self._receiving(request_iterator) as stream:
            params: tiling_pb2.BlendSeamsParams = await stream.params()
            size = params.image_size
            _check_image_size("params.image_size", size.width, size.height, self._settings.max_pixels)
            first = _plan("params.first_grid", size.width, size.height, params.first_grid)
            offset_params = tiling_pb2.GridParams()
            offset_params.CopyFrom(params.first_grid)
            offset_params.offset = True
            offset = _plan("params.first_grid", size.width, size.height, offset_params)
            channels = _format_channels("params.format", params.format)
            mode = _feather("params.feather", params.feather)
            band = params.band_width or max(2, params.first_grid.overlap)
            tile_side = min(first.tile_width, first.tile_height)
            if not 2 <= band <= tile_side:
                raise InvalidArgument(
                    "params.band_width", f"must be between 2 and the tile side ({tile_side}), got {band}"
                )
            tiles: dict[int, np.ndarray] = {}
            collector = _TileCollector(offset, channels, "tile", tiles.__setitem__)
            parts = await stream.collect(
                images=("base",),
                item="tile",
                on_item=collector,
                max_image_bytes=self._max_image_bytes,
                max_items=len(offset.tiles),
            )
            collector.check_complete()
        async with self._pool.slot():
            started = time.perf_counter()
            base = await self._pool.run(self._decode, parts["base"])
            if base.shape != (size.height, size.width, channels):
                raise InvalidArgument(
                    "base",
                    f"must be {size.width}x{size.height} with {channels} channels (params), "
                    f"got {base.shape[1]}x{base.shape[0]} with {base.shape[2]}",
                )
            fixed = await self._pool.run(
                blend.blend_seam_band,
                base,
                [tiles[i] for i in range(len(offset.tiles))],
                offset,
                first,
                band,
                mode,
            )
            self._count("blend_seams", len(offset.tiles), size.width * size.height, started)
        for chunk in self._chunks(fixed.image):
            yield tiling_pb2.BlendResponse(image=chunk)
        yield tiling_pb2.BlendResponse(
            summary=tiling_pb2.BlendSummary(tiles=len(offset.tiles), touched_fraction=fixed.touched_fraction)
        )

    async def Resize(
        self, request_iterator: AsyncIterator[tiling_pb2.ResizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.ImageChunk]:
        async with self._receiving(request_iterator) as stream:
            params: tiling_pb2.ResizeParams = await stream.params()
            _check_image_size("params.size", params.size.width, params.size.height, self._settings.max_pixels)
            parts = await stream.collect(images=("image",), max_image_bytes=self._max_image_bytes)
        async with self._pool.slot():
            pixels = await self._pool.run(self._decode, parts["image"])
            started = time.perf_counter()
            result = await self._pool.run(resize.resize, pixels, params.size.width, params.size.height)
            self._count("resize", 0, params.size.width * params.size.height, started)
        for chunk in self._chunks(result):
            yield chunk

    async def ColorFix(
        self, request_iterator: AsyncIterator[tiling_pb2.ColorFixRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[common_pb2.ImageChunk]:
        methods = {
            tiling_pb2.COLOR_FIX_METHOD_UNSPECIFIED: colorfix.wavelet_color_fix,
            tiling_pb2.COLOR_FIX_METHOD_WAVELET: colorfix.wavelet_color_fix,
            tiling_pb2.COLOR_FIX_METHOD_ADAIN: colorfix.adain_color_fix,
        }
        async with self._receiving(request_iterator) as stream:
            params: tiling_pb2.ColorFixParams = await stream.params()
            if params.method not in methods:
                raise InvalidArgument("params.method", f"unknown colour-fix method {params.method}")
            parts = await stream.collect(
                images=("target", "reference"), max_image_bytes=self._max_image_bytes
            )
        async with self._pool.slot():
            target = await self._pool.run(self._decode, parts["target"])
            reference = await self._pool.run(self._decode, parts["reference"])
            started = time.perf_counter()
            result = await self._pool.run(methods[params.method], target, reference)
            self._count("color_fix", 0, target.shape[0] * target.shape[1], started)
        for chunk in self._chunks(result):
            yield chunk

    async def RenderGrid(
        self, request_iterator: AsyncIterator[tiling_pb2.RenderGridRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tiling_pb2.RenderGridResponse]:
        async with self._receiving(request_iterator) as stream:
            params: tiling_pb2.RenderGridParams = await stream.params()
            max_side = params.max_side or 1024
            _check_side("params.max_side", max_side, 64, 4096)
            if params.thumbnail_size:
                _check_side("params.thumbnail_size", params.thumbnail_size, 32, 1024)
            parts = await stream.collect(images=("image",), max_image_bytes=self._max_image_bytes)
        async with self._pool.slot():
            pixels = await self._pool.run(self._decode, parts["image"])
            height, width = pixels.shape[:2]
            plan = _plan("params.grid", width, height, params.grid)
            for name in ("selected", "processed"):
                bad = [i for i in getattr(params, name) if i >= len(plan.tiles)]
                if bad:
                    raise InvalidArgument(
                        f"params.{name}", f"tile indices must be below {len(plan.tiles)}, got {bad}"
                    )
            selected, processed = set(params.selected), set(params.processed)
            started = time.perf_counter()
            overview = await self._pool.run(render.render_grid, pixels, plan, selected, processed, max_side)
            thumbnails = []
            if params.thumbnail_size:
                thumbnails = await self._pool.run(
                    render.render_tile_thumbnails, pixels, plan, params.thumbnail_size, selected, processed
                )
            self._count("render", len(thumbnails), overview.shape[0] * overview.shape[1], started)
        for chunk in self._chunks(overview):
            yield tiling_pb2.RenderGridResponse(overview=chunk)
        for rect, thumbnail in zip(plan.tiles, thumbnails, strict=False):
            yield tiling_pb2.RenderGridResponse(
                thumbnail=tiling_pb2.TileImage(tile=_tile_to_proto(rect), image=images.to_proto(thumbnail))
            )
