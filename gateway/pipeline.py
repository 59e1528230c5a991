"""The tile pipeline of UPSCALE and GENERATE jobs (ARCHITECTURE.md, "An upscale job, step by step").

    DECODE      the upload, EXIF orientation applied, alpha kept        (GENERATE: Txt2Img at the base size)
    PREUPSCALE  Lanczos (tiling) or an upscaler model (diffusion), then Lanczos to the exact working size
    PLAN        first-pass grid, offset grid, regions (gateway.specs)
    CAPTION     tiles to re-draw that have no prompt of their own, when auto-caption is on (gateway.captions)
    REDRAW      tiles and regions re-drawn on every diffusion replica, in batches formed from tile indices
    BLEND       tiles blended (tiling), regions pasted with their feather
    COLOR_FIX   against the pre-upscaled image (tiling)
    SEAM_FIX    offset tiles next to re-drawn ones, blended only inside bands around the seams (tiling)
    DOWNSCALE   Lanczos to the target, alpha re-attached
    ENCODE      PNG, stored as the result and registered as an upload ("use result as input")

Reproducibility: every tile's seed is derived from the job seed, the pass and the tile index; batches are
cut from sorted tile indices; every finished tile (and every caption) is checkpointed. A job resumed after a restart restores
its checkpointed batches, re-draws only the others (with the same composition) and recomputes the
deterministic stages, so it ends with the very pixels an uninterrupted run gives.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.captions import CaptionOptions, caption_tiles
from gateway.clients import Backends, GridSpec, chunked
from gateway.events import JobEmitter
from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings
from gateway.specs import (
    ResolvedRegion,
    ResolvedSettings,
    ResolvedUpscale,
    SpecContext,
    derive_seed,
    resolve_generate,
    resolve_upscale,
    tile_prompt,
)
from gateway.store import FINAL_RESULT, ImageMeta, JobStore
from services.common.grid import Grid, plan_grid
from tilesmith.images import decode_bytes, encode_bytes, join_alpha, split_alpha, to_proto
from tilesmith.v1 import common_pb2, diffusion_pb2, tiling_pb2
from tilesmith.v1 import gateway_pb2 as pb

__all__ = ["PipelineContext", "run_generate", "run_upscale", "store_result"]

_FEATHER = {"linear": tiling_pb2.FEATHER_MODE_LINEAR, "cosine": tiling_pb2.FEATHER_MODE_COSINE}
_COLOR_FIX = {
    pb.COLOR_FIX_MODE_WAVELET: tiling_pb2.COLOR_FIX_METHOD_WAVELET,
    pb.COLOR_FIX_MODE_ADAIN: tiling_pb2.COLOR_FIX_METHOD_ADAIN,
}
_MIN_DIFFUSION_SIDE = 16  # Img2ImgTile: 16..4096 px per side


@dataclass
class PipelineContext:
    """Everything a running job needs."""

    job_id: str
    store: JobStore
    backends: Backends
    settings: GatewaySettings
    metrics: GatewayMetrics
    emitter: JobEmitter
    spec_context: SpecContext


@dataclass(frozen=True)
class _Item:
    """One tile to re-draw: its index in its pass, its pixels, its control image and prompt."""

    index: int
    image: np.ndarray
    control: np.ndarray | None
    prompt: str


@dataclass(frozen=True)
class _Pass:
    """What the tiles of one pass share."""

    name: str  # checkpoint stage and seed salt: "redraw", "seam_fix", "region_3"
    stage: int  # JobStage of its events
    strength: float
    region_index: int | None = None


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first real failure in a task group's exceptions (the others are usually its cancellations)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return next((exc for exc in leaves if not isinstance(exc, asyncio.CancelledError)), leaves[0])


async def _all(coros: list) -> list:
    """Run coroutines together; the first failure cancels the others and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    return [task.result() for task in tasks]


def _crop(pixels: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    return pixels[y : y + h, x : x + w]


def _tile(pixels: np.ndarray, rect) -> np.ndarray:  # rect: TileRect
    return pixels[rect.slices]


def _png(pixels: np.ndarray) -> bytes:
    return encode_bytes(pixels, "png")


def _grid_spec(grid: Grid) -> GridSpec:
    return GridSpec(grid.image_width, grid.image_height, grid.tile_width, grid.tile_height, grid.overlap)


def _overlaps(a, b) -> bool:  # two TileRects
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


class _Run:
    """One UPSCALE enhancement (also the second half of GENERATE)."""

    def __init__(self, ctx: PipelineContext, resolved: ResolvedUpscale) -> None:
        self.ctx = ctx
        self.resolved = resolved
        self.s: ResolvedSettings = resolved.settings
        self.intermediates: list[str] = []
        self.tiles_redrawn = 0
        self._ip_adapter: common_pb2.Image | None = None
        pool = ctx.backends.diffusion_pool
        self._calls = asyncio.Semaphore(max(1, pool.capacity))

    # -- Helpers -------------------------------------------------------------------------------------

    async def _store(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def _keep(self, name: str, pixels: np.ndarray) -> None:
        if self.s.keep_intermediates:
            data = await asyncio.to_thread(_png, pixels)
            await self._store(self.ctx.store.put_result, self.ctx.job_id, name, data)
            self.intermediates.append(name)

    async def _ip_adapter_image(self) -> common_pb2.Image | None:
        if self.s.ip_adapter_image_id is None:
            return None
        if self._ip_adapter is None:
            data = await self._store(self.ctx.store.read_image, self.s.ip_adapter_image_id)
            pixels = await asyncio.to_thread(
                decode_bytes, data, self.ctx.settings.max_pixels, field="ip_adapter.image_id"
            )
            self._ip_adapter = await asyncio.to_thread(to_proto, pixels[..., :3].copy(), "png")
        return self._ip_adapter

    async def _sampling(self) -> diffusion_pb2.SamplingParams:
        sampling = diffusion_pb2.SamplingParams(
            steps=self.s.steps,
            cfg_scale=self.s.cfg_scale,
            scheduler=self.s.scheduler,
            loras=[common_pb2.LoraRef(name=name, weight=weight) for name, weight in self.s.loras],
        )
        image = await self._ip_adapter_image()
        if image is not None:
            sampling.ip_adapter.CopyFrom(
                diffusion_pb2.IpAdapterParams(image=image, scale=self.s.ip_adapter_scale)
            )
        return sampling

    # -- Re-drawing ----------------------------------------------------------------------------------

    async def redraw(self, pass_: _Pass, items: Sequence[_Item]) -> dict[int, np.ndarray]:
        """Re-draw `items` in batches cut from their sorted indices; restore checkpointed batches."""
        ctx, emitter = self.ctx, self.ctx.emitter
        by_index = {item.index: item for item in items}
        shape = {item.index: item.image.shape for item in items}
        saved = await self._store(ctx.store.checkpointed_tiles, ctx.job_id, pass_.name)
        results: dict[int, np.ndarray] = {}
        pending: list[list[int]] = []
        # 1. A batch counts as done only when all of its tiles were checkpointed (a crash can fall between).
        for batch in chunked(by_index, self.s.batch_size):
            if all(index in saved for index in batch):
                for index in batch:
                    h, w, c = shape[index]
                    results[index] = np.frombuffer(saved[index], dtype=np.uint8).reshape(h, w, c)
                    ctx.metrics.tiles_restored.inc()
                    await self._tile_done(pass_, index, results[index], restored=True)
            else:
                pending.append(batch)
        if not pending:
            return results
        # 2. The others, every batch as its own task; the semaphore keeps the calls within the replicas'
        #    capacity, so a call's deadline counts from when it is sent, not from when the job started.
        emitter.mark_tile_started()
        sampling = await self._sampling()

        async def run(batch: list[int]) -> None:
            request = diffusion_pb2.Img2ImgRequest(
                tiles=[self._request_tile(pass_, by_index[index]) for index in batch],
                strength=pass_.strength,
                sampling=sampling,
                controlnet=self.s.controlnet,
            )
            if self.s.generation_size is not None:
                request.generation_size = self.s.generation_size
            async with self._calls:
                answer = await ctx.backends.diffusion.img2img(
                    request, on_step=lambda step, total: emitter.step(pass_.stage, step, total, batch)
                )
            for index in batch:
                pixels = answer.tiles[index]
                await self._store(ctx.store.checkpoint_tile, ctx.job_id, pass_.name, index, pixels.tobytes())
                results[index] = pixels
                self.tiles_redrawn += 1
                ctx.metrics.tiles.labels(
                    stage="region" if pass_.region_index is not None else pass_.name
                ).inc()
                await self._tile_done(pass_, index, pixels, replica=answer.replica, model=answer.model)

        await _all([run(batch) for batch in pending])
        return results

    def _request_tile(self, pass_: _Pass, item: _Item) -> diffusion_pb2.Img2ImgTile:
        tile = diffusion_pb2.Img2ImgTile(
            index=item.index,
            image=to_proto(np.ascontiguousarray(item.image), "raw"),
            prompt=item.prompt,
            negative_prompt=self.s.negative_prompt,
            seed=derive_seed(self.s.seed, pass_.name, item.index),
        )
        if item.control is not None:
            tile.control_image.CopyFrom(to_proto(np.ascontiguousarray(item.control), "raw"))
        return tile

    async def _tile_done(
        self, pass_: _Pass, index: int, pixels: np.ndarray, *, restored: bool = False, **who: object
    ) -> None:
        seed = derive_seed(self.s.seed, pass_.name, index)
        if pass_.region_index is not None:
            await self.ctx.emitter.tile_done(
                pass_.stage, pixels, region_index=pass_.region_index, restored=restored, seed=seed, **who
            )
        else:
            await self.ctx.emitter.tile_done(
                pass_.stage, pixels, tile_index=index, restored=restored, seed=seed, **who
            )

    # -- Captions ------------------------------------------------------------------------------------

    async def caption(self, source: np.ndarray, indices: list[int]) -> dict[int, str]:
        """Captions of first-pass tiles `indices`: checkpointed ones restored, the others written."""
        ctx, s = self.ctx, self.s
        saved = await self._store(ctx.store.checkpointed_tiles, ctx.job_id, "caption")
        captions = {i: saved[i].decode("utf-8") for i in indices if i in saved}
        todo = [i for i in indices if i not in captions]
        options = CaptionOptions(
            instruction=s.caption_instruction,
            system_prompt=s.caption_system_prompt,
            use_context=s.caption_use_context,
            max_new_tokens=s.caption_max_new_tokens,
        )
        detail = f"{len(todo)} tiles" + (f", {len(captions)} restored" if captions else "")
        async with ctx.emitter.stage(pb.JOB_STAGE_CAPTION, detail):
            async for caption in caption_tiles(
                ctx.backends,
                source,
                s.geometry,
                s.grid,
                todo,
                options,
                batch_size=ctx.settings.caption_batch_size,
                overview_side=ctx.settings.caption_overview_side,
                deadline=ctx.settings.backend_deadline_seconds,
            ):
                data = caption.text.encode("utf-8")
                await self._store(ctx.store.checkpoint_tile, ctx.job_id, "caption", caption.index, data)
                captions[caption.index] = caption.text
                await ctx.emitter.log(
                    tile_captioned=pb.JobTileCaptioned(
                        index=caption.index, caption=caption.text, cached=caption.cached
                    )
                )
        return captions

    # -- Regions -------------------------------------------------------------------------------------

    def _region_box(
        self, region: ResolvedRegion
    ) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int], int]:
        """The region's rect and its padded crop in working pixels, and its feather in working pixels."""
        geo = self.s.geometry
        scale = geo.scaled_size[0] / geo.input_size[0]
        x, y, w, h = geo.input_rect_to_working(*region.rect)
        pad = round(region.padding * scale)
        feather = round(region.feather * scale)
        width, height = geo.working_size
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
        # Diffusion needs 16 px a side: grow a sliver inside the image where it can.
        for lo, hi, size in ((0, 2, width), (1, 3, height)):
            box = [x0, y0, x1, y1]
            short = _MIN_DIFFUSION_SIDE - (box[hi] - box[lo])
            if short > 0:
                box[lo] = max(0, box[lo] - short // 2 - short % 2)
                box[hi] = min(size, box[lo] + _MIN_DIFFUSION_SIDE)
                box[lo] = max(0, box[hi] - _MIN_DIFFUSION_SIDE)
            x0, y0, x1, y1 = box
        return (x, y, w, h), (x0, y0, x1 - x0, y1 - y0), feather

    def region_plan(self, region: ResolvedRegion) -> Grid:
        _, (_, _, cw, ch), _ = self._region_box(region)
        tw, th = self.s.tile_size
        overlap = min(self.s.overlap, min(tw, th, cw, ch) // 2)
        return plan_grid(cw, ch, tw, th, overlap)

    async def redraw_region(self, region: ResolvedRegion, working: np.ndarray) -> np.ndarray:
        """The region's padded crop re-drawn (as its own grid when larger than a tile)."""
        _, (cx, cy, cw, ch), _ = self._region_box(region)
        crop = _crop(working, cx, cy, cw, ch)
        grid = self.region_plan(region)
        prompt = tile_prompt(self.s.prompt, region.prompt)
        items = [_Item(t.index, _tile(crop, t), None, prompt) for t in grid.tiles]
        pass_ = _Pass(f"region_{region.index}", pb.JOB_STAGE_REDRAW, region.strength, region.index)
        tiles = await self.redraw(pass_, items)
        if len(grid.tiles) == 1:
            return tiles[0]
        return await self.ctx.backends.tiling.blend(_grid_spec(grid), tiles, _FEATHER[self.s.feather], 3)

    def paste_region(self, base: np.ndarray, region: ResolvedRegion, redrawn: np.ndarray) -> np.ndarray:
        """`redrawn` over `base`: fully inside the rect, fading to nothing over the feather outside it."""
        (x, y, w, h), (cx, cy, cw, ch), feather = self._region_box(region)
        ys = np.arange(cy, cy + ch, dtype=np.float32)[:, None]
        xs = np.arange(cx, cx + cw, dtype=np.float32)[None, :]
        dx = np.maximum(np.maximum(x - xs, xs - (x + w - 1)), 0)
        dy = np.maximum(np.maximum(y - ys, ys - (y + h - 1)), 0)
        distance = np.maximum(dx, dy)
        if feather > 0:
            weight = np.clip(1.0 - distance / (feather + 1), 0.0, 1.0)
            weight = 0.5 - 0.5 * np.cos(np.pi * weight)
        else:
            weight = (distance == 0).astype(np.float32)
        out = base.copy()
        area = out[cy : cy + ch, cx : cx + cw].astype(np.float32)
        mixed = area + (redrawn.astype(np.float32) - area) * weight[..., None]
        out[cy : cy + ch, cx : cx + cw] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return out

    # -- The stages ----------------------------------------------------------------------------------

    async def enhance(self, source: np.ndarray) -> pb.JobResult:
        ctx, s, emitter = self.ctx, self.s, self.ctx.emitter
        tiling, geo = ctx.backends.tiling, self.s.geometry

        # 2. Pre-upscale to the working size (COVER: to the covering size, then the centre crop).
        detail = "lanczos" if s.pre_upscaler == "lanczos" else s.pre_upscaler
        async with emitter.stage(pb.JOB_STAGE_PREUPSCALE, detail):
            scaled = source
            if s.pre_upscaler != "lanczos":
                for _ in range(4):  # x4 models: at most 256x, far past any target
                    if scaled.shape[1] >= geo.scaled_size[0] and scaled.shape[0] >= geo.scaled_size[1]:
                        break
                    scaled, _name = await ctx.backends.diffusion.upscale(scaled, s.pre_upscaler)
            scaled = await tiling.resize(scaled, geo.scaled_size)
            working_full = _crop(scaled, *geo.crop, *geo.working_size)
            working, alpha = split_alpha(np.ascontiguousarray(working_full))
            working = np.ascontiguousarray(working)
            await self._keep("preupscaled", working_full)

        # 3. Plan: the grids are resolved; count what will be re-drawn.
        grid, redraw_tiles = s.grid, list(self.resolved.redraw_tiles)
        seam_tiles: list[int] = []
        if s.seam_fix and s.seam_grid is not None and redraw_tiles:
            redrawn_rects = [grid.tiles[i] for i in redraw_tiles]
            seam_tiles = [t.index for t in s.seam_grid.tiles if any(_overlaps(t, r) for r in redrawn_rects)]
        regions = self.resolved.regions
        region_tiles = sum(len(self.region_plan(region).tiles) for region in regions)
        async with emitter.stage(
            pb.JOB_STAGE_PLAN,
            f"{len(redraw_tiles)} of {len(grid.tiles)} tiles, {len(regions)} regions, {len(seam_tiles)} seam tiles",
        ):
            emitter.set_total(len(redraw_tiles) + region_tiles + len(seam_tiles))

        # 4. Caption the tiles to re-draw that have no prompt of their own (user prompts always win).
        captions: dict[int, str] = {}
        if s.auto_caption:
            uncaptioned = [i for i in redraw_tiles if not self.resolved.tile_prompts.get(i)]
            if uncaptioned:
                captions = await self.caption(source, uncaptioned)

        # 5. Re-draw tiles and regions (regions from the pre-upscaled pixels, pasted after the blend).
        batches = math.ceil(len(redraw_tiles) / s.batch_size) if redraw_tiles else 0
        async with emitter.stage(pb.JOB_STAGE_REDRAW, f"{len(redraw_tiles)} tiles in {batches} batches"):
            items = [
                _Item(
                    i,
                    _tile(working, grid.tiles[i]),
                    None,
                    tile_prompt(s.prompt, self.resolved.tile_prompts.get(i) or captions.get(i, "")),
                )
                for i in redraw_tiles
            ]
            first_pass = _Pass("redraw", pb.JOB_STAGE_REDRAW, s.strength)
            redrawn, *region_images = await _all(
                [self.redraw(first_pass, items), *(self.redraw_region(r, working) for r in regions)]
            )

        # 6. Blend, paste the regions, colour-fix.
        async with emitter.stage(pb.JOB_STAGE_BLEND, f"{len(grid.tiles)} tiles"):
            if redrawn:
                every = {t.index: redrawn.get(t.index, _tile(working, t)) for t in grid.tiles}
                image = await tiling.blend(_grid_spec(grid), every, _FEATHER[s.feather], 3)
            else:
                image = working
            for region, redrawn_region in zip(regions, region_images, strict=True):
                image = await asyncio.to_thread(self.paste_region, image, region, redrawn_region)
        if s.color_fix in _COLOR_FIX:
            async with emitter.stage(pb.JOB_STAGE_COLOR_FIX, pb.ColorFixMode.Name(s.color_fix)):
                image = await tiling.color_fix(image, working, _COLOR_FIX[s.color_fix])
        await self._keep("redrawn", image)

        # 7. Seam fix: offset tiles over the seams next to re-drawn tiles, at the lower strength.
        if seam_tiles:
            assert s.seam_grid is not None
            async with emitter.stage(pb.JOB_STAGE_SEAM_FIX, f"{len(seam_tiles)} offset tiles"):
                items = [
                    _Item(
                        i, _tile(image, s.seam_grid.tiles[i]), _tile(working, s.seam_grid.tiles[i]), s.prompt
                    )
                    for i in seam_tiles
                ]
                fixed = await self.redraw(_Pass("seam_fix", pb.JOB_STAGE_SEAM_FIX, s.seam_strength), items)
                every = {t.index: fixed.get(t.index, _tile(image, t)) for t in s.seam_grid.tiles}
                image, _ = await tiling.blend_seams(
                    image, _grid_spec(grid), every, _FEATHER[s.feather], s.seam_band_width
                )
            await self._keep("seam_fixed", image)

        # 8. Down to the target with the alpha back on; encode and store.
        async with emitter.stage(pb.JOB_STAGE_DOWNSCALE, "x".join(map(str, geo.output_size))):
            final = await tiling.resize(join_alpha(np.ascontiguousarray(image), alpha), geo.output_size)
        return await store_result(
            ctx,
            final,
            intermediates=self.intermediates,
            tiles_redrawn=self.tiles_redrawn,
        )


async def store_result(ctx: PipelineContext, pixels: np.ndarray, **fields: object) -> pb.JobResult:
    """ENCODE: PNG, stored as the job's result and registered as an upload ("use result as input")."""
    async with ctx.emitter.stage(pb.JOB_STAGE_ENCODE, "png"):
        data = await asyncio.to_thread(encode_bytes, pixels, "png")
        await asyncio.to_thread(ctx.store.put_result, ctx.job_id, FINAL_RESULT, data)
        meta = ImageMeta(
            width=pixels.shape[1],
            height=pixels.shape[0],
            has_alpha=pixels.shape[2] == 4,
            encoding=common_pb2.IMAGE_ENCODING_PNG,
            filename=f"{ctx.job_id}.png",
        )
        record = await asyncio.to_thread(ctx.store.put_image, data, meta)
    return pb.JobResult(
        size=common_pb2.Size(width=pixels.shape[1], height=pixels.shape[0]),
        has_alpha=pixels.shape[2] == 4,
        encoding=common_pb2.IMAGE_ENCODING_PNG,
        size_bytes=len(data),
        image_id=record.image_id,
        stage_timings=ctx.emitter.stage_timings(),
        **fields,
    )


async def run_upscale(ctx: PipelineContext, spec: pb.UpscaleSpec) -> pb.JobResult:
    """An UPSCALE job from its stored (validated) spec."""
    resolved = await asyncio.to_thread(resolve_upscale, spec, ctx.spec_context)
    async with ctx.emitter.stage(pb.JOB_STAGE_DECODE, resolved.image_id):
        data = await asyncio.to_thread(ctx.store.read_image, resolved.image_id)
        source = await asyncio.to_thread(
            decode_bytes, data, ctx.settings.max_pixels, field="upscale.image_id"
        )
    return await _Run(ctx, resolved).enhance(source)


async def run_generate(ctx: PipelineContext, spec: pb.GenerateSpec) -> pb.JobResult:
    """A GENERATE job: Txt2Img at the base size (checkpointed), then the enhancement."""
    resolved = await asyncio.to_thread(resolve_generate, spec, ctx.spec_context)
    run = _Run(ctx, resolved.upscale)
    s = resolved.upscale.settings
    width, height = resolved.base_size
    saved = await asyncio.to_thread(ctx.store.checkpointed_tiles, ctx.job_id, "base")
    if 0 in saved:
        base = np.frombuffer(saved[0], dtype=np.uint8).reshape(height, width, 3)
    else:
        async with ctx.emitter.stage(pb.JOB_STAGE_GENERATE, f"{width}x{height}, {resolved.base_steps} steps"):
            sampling = await run._sampling()
            sampling.steps = resolved.base_steps
            sampling.cfg_scale = resolved.base_cfg_scale
            request = diffusion_pb2.Txt2ImgRequest(
                prompt=resolved.prompt,
                negative_prompt=resolved.negative_prompt,
                size=common_pb2.Size(width=width, height=height),
                seed=derive_seed(s.seed, "base", 0),
                sampling=sampling,
            )
            base, _model = await ctx.backends.diffusion.txt2img(
                request, on_step=lambda step, total: ctx.emitter.step(pb.JOB_STAGE_GENERATE, step, total, [])
            )
            base = np.ascontiguousarray(base)
            await asyncio.to_thread(ctx.store.checkpoint_tile, ctx.job_id, "base", 0, base.tobytes())
    await run._keep("base", base)
    return await run.enhance(base)
