"""Tile captions from a vision-language model (Qwen3-VL): the work of the captioning service.

`Captioner.load()` reads a transformers folder (`AutoProcessor` + `AutoModelForImageTextToText`);
`Captioner.caption()` writes one caption per image, in order, in batches of `max_batch`:

- **Greedy decoding** (`do_sample=False`, whatever the folder's generation config says), so the same
  image with the same prompts gives the same caption. Batches are left-padded (a decoder-only model
  continues from the last position of every row), which gives the same tokens as one image at a time.
- **Context**: with a `CaptionContext`, each message holds two images — the overview with the tile's
  rectangle outlined in red, then the tile — and `CONTEXT_SENTENCE` before the instruction. Qwen3-VL's
  processor takes any number of images per message, so nothing is pasted or tiled by hand.
- **Cache**: an LRU of captions keyed by sha256 of the tile's pixels, the context (overview pixels,
  source size, rect), the prompts, max_new_tokens and the model; a hit skips the model
  (`cached=True`). Identical images within one call are generated once.
- **Cleaning**: the prompt tokens and special tokens are dropped, control characters and line breaks
  become spaces; a caption that hits max_new_tokens is cut at its last comma.

Thread-safe: one generation at a time (a lock), the cache behind its own lock. `cancelled` is checked
between batches.

Errors (services.common.errors; the server's interceptor maps them to status codes):

    TilesmithError
    ├── InvalidArgument      context.rects does not hold one rect per image
    ├── FailedPrecondition   weights missing (naming the command that makes them) or unreadable;
    │                        CUDA asked for but absent; caption() before load()
    ├── ResourceExhausted    a batch that does not fit in device memory
    ├── Cancelled            `cancelled()` turned true between batches
    └── Internal             the model wrote an empty caption
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor

from services.common.devices import resolve_device
from services.common.errors import Cancelled, FailedPrecondition, Internal, InvalidArgument, ResourceExhausted

__all__ = [
    "CONTEXT_SENTENCE",
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_SYSTEM_PROMPT",
    "CaptionContext",
    "CaptionResult",
    "Captioner",
    "CaptionerConfig",
    "Rect",
    "mark_rect",
]

log = logging.getLogger(__name__)

# The texts of protos/tilesmith/v1/captioning.proto (CaptionRequest.system_prompt / .instruction).
DEFAULT_SYSTEM_PROMPT = "You write prompts for Stable Diffusion XL."
DEFAULT_INSTRUCTION = (
    "Describe what is visible in this image as a concise Stable Diffusion XL prompt: comma-separated "
    "tags and short phrases naming the subject, materials, colours, lighting and style. Describe only "
    "what is visible. Do not mention tiles, crops, borders or that the image is part of a larger one."
)
CONTEXT_SENTENCE = (
    "The first image shows the whole picture; the red rectangle marks where the second image sits "
    "in it. Use the whole picture only to recognise what the second image shows."
)
DEFAULT_MAX_NEW_TOKENS = 96

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class Rect(NamedTuple):
    """A rectangle in pixels of the source image."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class CaptionContext:
    """The whole picture the images come from.

    Attributes:
        overview: A downscaled view of the whole picture, (height, width, 3) uint8.
        source_size: (width, height) of the full-resolution picture that `rects` refer to.
        rects: Where each image sits in the source picture, one per image, in order.
    """

    overview: np.ndarray
    source_size: tuple[int, int]
    rects: tuple[Rect, ...]


@dataclass(frozen=True)
class CaptionResult:
    text: str
    cached: bool
    generated_tokens: int


@dataclass(frozen=True)
class CaptionerConfig:
    """What `Captioner` loads and how.

    Attributes:
        model_dir: The transformers folder of the vision-language model.
        model_name: The name answers report ("Qwen/Qwen3-VL-8B-Instruct", "tiny-qwen3-vl").
        missing_hint: What to run when the folder is missing (said in the FailedPrecondition).
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
        dtype: "auto" (bfloat16 on CUDA, float32 on CPU), "float16", "bfloat16" or "float32".
        max_batch: Images generated together.
        cache_size: Captions kept in the LRU cache; 0 turns the cache off.
    """

    model_dir: Path
    model_name: str
    missing_hint: str
    device: str = "auto"
    dtype: str = "auto"
    max_batch: int = 16
    cache_size: int = 4096


class _Job(NamedTuple):
    """One distinct caption to generate: the images the model sees and the rows of the call it serves."""

    key: str
    images: list[Image.Image]
    indices: list[int]


class _LruCache:
    """A thread-safe LRU of CaptionResults by key (size 0: stores nothing)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, CaptionResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> CaptionResult | None:
        with self._lock:
            result = self._items.get(key)
            if result is not None:
                self._items.move_to_end(key)
            return result

    def put(self, key: str, result: CaptionResult) -> None:
        if not self._size:
            return
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class Captioner:
    """A vision-language model that writes SDXL-style captions. `load()` first."""

    def __init__(self, config: CaptionerConfig) -> None:
        self._config = config
        self._device = resolve_device(config.device)
        self._dtype = _resolve_dtype(config.dtype, self._device)
        self._processor: Any = None
        self._model: Any = None
        self._cache = _LruCache(config.cache_size)
        self._model_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._config.model_name

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the processor and the model onto the device; idempotent.

        Raises:
            FailedPrecondition: the folder is missing (naming the command that makes it) or unreadable;
                CUDA asked for but not available.
        """
        if self.loaded:
            return
        config, started = self._config, time.perf_counter()
        # 1. Check the device and the folder before loading anything.
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise FailedPrecondition(
                f"device {config.device!r} asks for CUDA, but no CUDA device is available"
            )
        if not (config.model_dir / "config.json").is_file():
            raise FailedPrecondition(
                f"the captioning model is missing: {config.model_dir / 'config.json'}; {config.missing_hint}"
            )
        # 2. Processor (left padding: generation continues every row from its last position) and model.
        try:
            processor = AutoProcessor.from_pretrained(config.model_dir)
            model = AutoModelForImageTextToText.from_pretrained(config.model_dir, dtype=self._dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise FailedPrecondition(
                f"cannot load the captioning model in {config.model_dir}: {exc}"
            ) from exc
        processor.tokenizer.padding_side = "left"
        self._processor, self._model = processor, model.to(self._device).eval()
        log.info(
            "loaded %s from %s on %s in %s in %.1f s",
            config.model_name,
            config.model_dir,
            self._device,
            str(self._dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )

    def prompt(self, system_prompt: str, instruction: str, *, with_context: bool = False) -> str:
        """The chat text the model is given for one image (image placeholders included)."""
        return self._require_processor().apply_chat_template(
            _messages(system_prompt, instruction, with_context), tokenize=False, add_generation_prompt=True
        )

    def caption(
        self,
        images: Sequence[np.ndarray],
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        instruction: str = DEFAULT_INSTRUCTION,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        context: CaptionContext | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[CaptionResult]:
        """One caption per image, in order.

        Args:
            images: The images, each (height, width, 3) uint8.
            system_prompt: The system message.
            instruction: What to ask about each image (with `context`, `CONTEXT_SENTENCE` goes before it).
            max_new_tokens: Most tokens generated per caption.
            context: The whole picture and each image's rect in it; None captions each image on its own.
            cancelled: Checked between batches; when it turns true, Cancelled is raised.

        Raises:
            See the module docstring.
        """
        self._require_processor()
        if context is not None and len(context.rects) != len(images):
            raise InvalidArgument(
                "context.rects", f"must hold one rect per image ({len(images)}), got {len(context.rects)}"
            )
        # 1. Cache look-ups; the misses become jobs, one per distinct key.
        results: list[CaptionResult | None] = [None] * len(images)
        jobs: dict[str, _Job] = {}
        overview_digest = _digest(context.overview) if context is not None else ""
        for index, pixels in enumerate(images):
            rect = context.rects[index] if context is not None else None
            key = self._key(
                pixels, system_prompt, instruction, max_new_tokens, context, overview_digest, rect
            )
            if key in jobs:
                jobs[key].indices.append(index)
            elif (hit := self._cache.get(key)) is not None:
                results[index] = CaptionResult(hit.text, cached=True, generated_tokens=0)
            else:
                shown = [Image.fromarray(np.ascontiguousarray(pixels))]
                if context is not None:
                    shown.insert(0, mark_rect(context.overview, context.source_size, rect))
                jobs[key] = _Job(key, shown, [index])
        # 2. Generate the misses batch by batch.
        pending = list(jobs.values())
        text = self.prompt(system_prompt, instruction, with_context=context is not None)
        for start in range(0, len(pending), self._config.max_batch):
            if cancelled():
                raise Cancelled("the Caption call was cancelled")
            batch = pending[start : start + self._config.max_batch]
            for job, (caption, tokens) in zip(
                batch, self._generate(text, batch, max_new_tokens), strict=True
            ):
                if not caption:
                    raise Internal(f"the model wrote an empty caption for items[{job.indices[0]}]")
                result = CaptionResult(caption, cached=False, generated_tokens=tokens)
                self._cache.put(job.key, result)
                for index in job.indices:
                    results[index] = result
        return [result for result in results if result is not None]

    # ------------------------------------------------------------------------------------------------

    def _require_processor(self) -> Any:
        if self._processor is None:
            raise FailedPrecondition("the captioning model is not loaded yet")
        return self._processor

    def _key(
        self,
        pixels: np.ndarray,
        system_prompt: str,
        instruction: str,
        max_new_tokens: int,
        context: CaptionContext | None,
        overview_digest: str,
        rect: Rect | None,
    ) -> str:
        parts = [self.model_name, system_prompt, instruction, str(max_new_tokens), _digest(pixels)]
        if context is not None:
            parts += [overview_digest, repr(tuple(context.source_size)), repr(tuple(rect))]
        # Length-prefixed, so no two different part lists hash the same text.
        return hashlib.sha256("".join(f"{len(part)}:{part}" for part in parts).encode()).hexdigest()

    def _generate(self, text: str, batch: Sequence[_Job], max_new_tokens: int) -> list[tuple[str, int]]:
        """(caption, generated tokens) of each job, generated together."""
        processor = self._processor
        inputs = processor(
            text=[text] * len(batch), images=[job.images for job in batch], padding=True, return_tensors="pt"
        ).to(self._device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._dtype)
        try:
            with self._model_lock, torch.inference_mode():
                output = self._model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
                )
        except torch.OutOfMemoryError as exc:
            if self._device.type == "cuda":
                torch.cuda.empty_cache()
            raise ResourceExhausted(
                f"a batch of {len(batch)} captions does not fit in device memory; send fewer items "
                "or lower TILESMITH_CAPTIONING_MAX_BATCH"
            ) from exc
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        stop = set(_as_list(self._model.generation_config.eos_token_id))
        captions = []
        for row in new_tokens:
            ends = next((i for i, token in enumerate(row) if token in stop), None)
            generated = row if ends is None else row[: ends + 1]
            caption = _clean(processor.decode(generated, skip_special_tokens=True))
            if ends is None and len(row) >= max_new_tokens and "," in caption:
                caption = caption[: caption.rindex(",")].rstrip(" ,")
            captions.append((caption, len(generated)))
        return captions


def mark_rect(overview: np.ndarray, source_size: tuple[int, int], rect: Rect) -> Image.Image:
    """The overview with `rect` (source-image pixels) outlined in red, scaled onto the overview."""
    image = Image.fromarray(np.ascontiguousarray(overview)).convert("RGB")
    scale_x, scale_y = image.width / source_size[0], image.height / source_size[1]
    left, top = math.floor(rect.x * scale_x), math.floor(rect.y * scale_y)
    right = max(left, math.ceil((rect.x + rect.width) * scale_x) - 1)
    bottom = max(top, math.ceil((rect.y + rect.height) * scale_y) - 1)
    line = max(2, round(max(image.size) / 256))
    ImageDraw.Draw(image).rectangle((left, top, right, bottom), outline=(255, 0, 0), width=line)
    return image


def _messages(system_prompt: str, instruction: str, with_context: bool) -> list[dict[str, Any]]:
    images = [{"type": "image"}] * (2 if with_context else 1)
    text = f"{CONTEXT_SENTENCE} {instruction}" if with_context else instruction
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": [*images, {"type": "text", "text": text}]},
    ]


def _clean(text: str) -> str:
    """One trimmed line: control characters and line breaks become spaces, runs of spaces one."""
    spaced = "".join(" " if unicodedata.category(char).startswith("C") else char for char in text)
    return " ".join(spaced.split()).strip(" ,")


def _digest(pixels: np.ndarray) -> str:
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]
