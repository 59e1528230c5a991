"""Tile captions: the UPSCALE CAPTION stage and the CaptionTiles RPC share this module.

A tile is captioned from its area of the INPUT image — the plan rect mapped back to input pixels
(`Geometry.working_rect_to_input`) — not from the pre-upscaled working pixels, so the job and
CaptionTiles send the captioning service the very same pixels, prompts and context and share its
cache. With `use_context`, every call also carries a downscaled overview of the whole input (at most
`caption_overview_side` px on its longer side) and each tile's input rect; the service outlines the
rect on the overview for the model.

Batches are cut from sorted tile indices (`caption_batch_size` per Caption call), like the diffusion
batches, and answered in index order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gateway.clients import Backends, chunked
from gateway.specs import Geometry
from services.common.errors import InvalidArgument
from services.common.grid import Grid
from tilesmith.images import to_proto
from tilesmith.v1 import captioning_pb2, common_pb2
from tilesmith.v1 import gateway_pb2 as pb

__all__ = ["CaptionOptions", "TileCaption", "caption_tiles", "check_caption_settings"]

_MIN_SIDE = 16  # the captioning service takes 16..4096 px per tile and 16..2048 per overview
_MAX_TEXT = 4000


@dataclass(frozen=True)
class CaptionOptions:
    """What the captioning model is asked, as the spec's CaptionSettings resolve it.

    Attributes:
        instruction: Empty for the service's default.
        system_prompt: Empty for the service's default.
        use_context: Send the overview and each tile's rect.
        max_new_tokens: Most tokens per caption.
    """

    instruction: str = ""
    system_prompt: str = ""
    use_context: bool = True
    max_new_tokens: int = 96


@dataclass(frozen=True)
class TileCaption:
    """One tile's caption and where it came from."""

    index: int
    text: str
    cached: bool
    model: str


def check_caption_settings(caption: pb.CaptionSettings, field: str) -> CaptionOptions:
    """CaptionSettings checked and resolved (for CaptionTiles, whose other settings may be unfinished)."""
    for name in ("instruction", "system_prompt"):
        value = getattr(caption, name)
        if len(value) > _MAX_TEXT:
            raise InvalidArgument(f"{field}.{name}", f"at most {_MAX_TEXT} characters, got {len(value)}")
    tokens = caption.max_new_tokens if caption.HasField("max_new_tokens") else 96
    if not 1 <= tokens <= 512:
        raise InvalidArgument(f"{field}.max_new_tokens", f"1..512 (unset: 96), got {tokens}")
    return CaptionOptions(
        instruction=caption.instruction,
        system_prompt=caption.system_prompt,
        use_context=caption.use_context if caption.HasField("use_context") else True,
        max_new_tokens=tokens,
    )


def _at_least(pixels: np.ndarray, side: int) -> np.ndarray:
    """`pixels` enlarged (Lanczos, aspect kept) until both sides are at least `side`; else as is."""
    h, w = pixels.shape[:2]
    if min(h, w) >= side:
        return pixels
    factor = side / min(h, w)
    size = (max(side, round(w * factor)), max(side, round(h * factor)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def _overview(pixels: np.ndarray, max_side: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if factor < 1.0:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))
    return _at_least(pixels, _MIN_SIDE)


def _requests(
    source: np.ndarray,
    geo: Geometry,
    grid: Grid,
    indices: Sequence[int],
    options: CaptionOptions,
    batch_size: int,
    overview_side: int,
) -> list[tuple[list[int], captioning_pb2.CaptionRequest]]:
    """The Caption calls for `indices`, one per batch (CPU work: run it in a thread)."""
    rgb = np.ascontiguousarray(source[..., :3])
    context = None
    if options.use_context:
        context = captioning_pb2.CaptionContext(
            overview=to_proto(np.ascontiguousarray(_overview(rgb, overview_side)), "raw"),
            source_size=common_pb2.Size(width=geo.input_size[0], height=geo.input_size[1]),
        )
    calls = []
    for batch in chunked(indices, batch_size):
        request = captioning_pb2.CaptionRequest(
            system_prompt=options.system_prompt,
            instruction=options.instruction,
            max_new_tokens=options.max_new_tokens,
        )
        if context is not None:
            request.context.CopyFrom(context)
        for index in batch:
            t = grid.tiles[index]
            x, y, w, h = geo.working_rect_to_input(t.x, t.y, t.width, t.height)
            crop = np.ascontiguousarray(_at_least(rgb[y : y + h, x : x + w], _MIN_SIDE))
            item = captioning_pb2.CaptionItem(image=to_proto(crop, "raw"))
            if context is not None:
                item.rect.CopyFrom(common_pb2.Rect(x=x, y=y, width=w, height=h))
            request.items.append(item)
        calls.append((batch, request))
    return calls


async def caption_tiles(
    backends: Backends,
    source: np.ndarray,
    geo: Geometry,
    grid: Grid,
    indices: Sequence[int],
    options: CaptionOptions,
    *,
    batch_size: int = 8,
    overview_side: int = 1024,
    deadline: float | None = None,
) -> AsyncIterator[TileCaption]:
    """Caption first-pass tiles of `grid`, yielding each in index order as its batch is answered.

    Args:
        backends: The gateway's backends (a captioning pool is required: Unavailable otherwise).
        source: The input image (RGB8 / RGBA8; alpha is ignored), of `geo.input_size`.
        geo: The upscale's sizes; maps plan rects back to input pixels.
        grid: The first-pass grid.
        indices: Tile indices to caption (distinct, each < the tile count).
        options: Instruction, system prompt, context, max tokens.
        batch_size: Tiles per Caption call.
        overview_side: Longer side of the context overview.
        deadline: Seconds per Caption call; default the pool's.
    """
    stub = backends.captioning_stub()
    pool = backends.captioning_pool
    assert pool is not None  # captioning_stub() raised otherwise
    calls = await asyncio.to_thread(_requests, source, geo, grid, indices, options, batch_size, overview_side)
    for batch, request in calls:
        answer: captioning_pb2.CaptionResponse = await pool.call(
            lambda ch, md, t, request=request: stub(ch).Caption(request, metadata=md, timeout=t),
            deadline=deadline,
        )
        for index, caption in zip(batch, answer.captions, strict=True):
            yield TileCaption(index, caption.text, caption.cached, answer.model)
