"""The Captioning gRPC servicer: validate at the door, queue for the GPU, caption, answer.

The work lives in captioner.py. This module turns a CaptionRequest into the captioner's arguments —
naming the proto field at fault — admits the call to a one-slot GPU queue (RESOURCE_EXHAUSTED when
full), and stops the work between batches when the client cancels or its deadline passes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import grpc
import numpy as np

from services.captioning import captioner as captioner_mod
from services.captioning.metrics import CaptioningMetrics
from services.captioning.settings import CaptioningSettings
from services.common.errors import InvalidArgument, Unavailable
from services.common.workers import BackgroundCall, WorkerPool
from tilesmith import images
from tilesmith.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

__all__ = ["CaptioningServicer"]

MAX_ITEMS = 64
MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 512
TILE_SIDES = (16, 4096)
OVERVIEW_SIDES = (16, 2048)
SOURCE_SIDES = (1, 65535)


def _rgb(field: str, message: common_pb2.Image, max_pixels: int, sides: tuple[int, int]) -> np.ndarray:
    """The image's RGB pixels (alpha ignored), with each side in `sides`."""
    pixels = images.to_array(message, max_pixels=max_pixels, field=field)
    low, high = sides
    for name, side in (("width", pixels.shape[1]), ("height", pixels.shape[0])):
        if not low <= side <= high:
            raise InvalidArgument(f"{field}.{name}", f"must be in [{low}, {high}] pixels, got {side}")
    return pixels[:, :, :3]


def _prompt(field: str, text: str, default: str) -> str:
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidArgument(field, f"must be at most {MAX_PROMPT_CHARS} characters, got {len(text)}")
    return text or default


def _context(request: captioning_pb2.CaptionRequest, max_pixels: int) -> captioner_mod.CaptionContext | None:
    if not request.HasField("context"):
        return None
    context = request.context
    # 1. The overview and the source size it stands for.
    if not context.HasField("overview"):
        raise InvalidArgument("context.overview", "is required when context is set")
    overview = _rgb("context.overview", context.overview, max_pixels, OVERVIEW_SIDES)
    if not context.HasField("source_size"):
        raise InvalidArgument("context.source_size", "is required when context is set")
    source = (context.source_size.width, context.source_size.height)
    for name, side in zip(("width", "height"), source, strict=True):
        low, high = SOURCE_SIDES
        if not low <= side <= high:
            raise InvalidArgument(f"context.source_size.{name}", f"must be in [{low}, {high}], got {side}")
    # 2. Every item's rect, inside the source image.
    rects = []
    for i, item in enumerate(request.items):
        field = f"items[{i}].rect"
        if not item.HasField("rect"):
            raise InvalidArgument(field, "is required when the request has context")
        rect = captioner_mod.Rect(item.rect.x, item.rect.y, item.rect.width, item.rect.height)
        if rect.width < 1 or rect.height < 1:
            raise InvalidArgument(field, f"must be at least 1x1, got {rect.width}x{rect.height}")
        if rect.x + rect.width > source[0] or rect.y + rect.height > source[1]:
            raise InvalidArgument(
                field,
                f"({rect.x}, {rect.y}, {rect.width}x{rect.height}) is not inside the source image "
                f"{source[0]}x{source[1]} (context.source_size)",
            )
        rects.append(rect)
    return captioner_mod.CaptionContext(overview=overview, source_size=source, rects=tuple(rects))


class CaptioningServicer(captioning_pb2_grpc.CaptioningServicer):
    def __init__(
        self, settings: CaptioningSettings, captioner: captioner_mod.Captioner, metrics: CaptioningMetrics
    ) -> None:
        self._settings = settings
        self._captioner = captioner
        self._metrics = metrics
        # One GPU batch at a time; the rest wait in a bounded queue.
        self._gpu = WorkerPool(
            1,
            settings.max_queue,
            name="captioning",
            queue_gauge=metrics.queue_requests,
            running_gauge=metrics.running_requests,
        )

    def close(self) -> None:
        self._gpu.close()

    def _arguments(self, request: captioning_pb2.CaptionRequest) -> dict[str, Any]:
        """The captioner's arguments, or InvalidArgument naming the request field at fault."""
        if not self._captioner.loaded:
            raise Unavailable("the captioning service is still loading its model; retry shortly")
        # 1. The images: 1..64. A rect without context is not used (the proto only requires it with one).
        if not request.items:
            raise InvalidArgument("items", "must hold at least one image")
        if len(request.items) > MAX_ITEMS:
            raise InvalidArgument(
                "items", f"at most {MAX_ITEMS} images per request, got {len(request.items)}"
            )
        tiles = [
            _rgb(f"items[{i}].image", item.image, self._settings.max_pixels, TILE_SIDES)
            for i, item in enumerate(request.items)
        ]
        # 2. Prompts and the token budget.
        max_new_tokens = (
            request.max_new_tokens
            if request.HasField("max_new_tokens")
            else captioner_mod.DEFAULT_MAX_NEW_TOKENS
        )
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise InvalidArgument("max_new_tokens", f"must be in [1, {MAX_NEW_TOKENS}], got {max_new_tokens}")
        return {
            "images": tiles,
            "system_prompt": _prompt(
                "system_prompt", request.system_prompt, captioner_mod.DEFAULT_SYSTEM_PROMPT
            ),
            "instruction": _prompt("instruction", request.instruction, captioner_mod.DEFAULT_INSTRUCTION),
            "max_new_tokens": max_new_tokens,
            "context": _context(request, self._settings.max_pixels),
        }

    async def Caption(
        self, request: captioning_pb2.CaptionRequest, context: grpc.aio.ServicerContext
    ) -> captioning_pb2.CaptionResponse:
        arguments = await asyncio.to_thread(self._arguments, request)

        def work(_emit: Any, cancel: threading.Event) -> list[captioner_mod.CaptionResult]:
            return self._captioner.caption(**arguments, cancelled=cancel.is_set)

        async with self._gpu.slot():
            started = time.perf_counter()
            async with BackgroundCall(self._gpu, work) as call:
                results = await call.result()
            seconds = time.perf_counter() - started
        self._metrics.inference_seconds.observe(seconds)
        self._metrics.captions.inc(len(results))
        self._metrics.cache_hits.inc(sum(result.cached for result in results))
        return captioning_pb2.CaptionResponse(
            captions=[
                captioning_pb2.CaptionResult(
                    text=result.text, cached=result.cached, generated_tokens=result.generated_tokens
                )
                for result in results
            ],
            model=self._captioner.model_name,
            system_prompt=arguments["system_prompt"],
            instruction=arguments["instruction"],
            inference_seconds=0.0 if all(result.cached for result in results) else seconds,
        )
