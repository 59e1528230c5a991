"""Super-resolution with any model spandrel loads: the files people share for chaiNNer (ESRGAN,
Real-ESRGAN, SwinIR, HAT, DAT, ...). spandrel reads the architecture and its hyper-parameters from the
weights; this module adds tiling, alpha, greyscale models and the service's errors.

Loading. `load_upscaler` takes `.pth` / `.pt` / `.ckpt` (read with spandrel's restricted unpickler, which
refuses arbitrary globals) and `.safetensors`. Only single-image models are kept: an inpainting model
(it needs a mask) and a face-restoration model (it needs aligned face crops) are refused. The dtype is the
service's setting; if the descriptor says the architecture does not support it (spandrel's
`supports_half` / `supports_bfloat16`), the model runs in float32 with a warning — the setting is chosen
for SDXL, and one shared upscaler without fp16 support should still load. `Upscaler.dtype` reports what
it runs in. Otherwise no fallback: a supported dtype is used as asked.

Tiling. With `tile_size` T and `tile_overlap` O (input pixels), each axis of n pixels is covered by
k = ceil((n - O) / (T - O)) tiles of T pixels, spread evenly from 0 to n - T (so neighbours overlap by
at least O); n <= T gives one tile; T = 0 runs the whole image. Each tile runs alone (batch 1) and is
weighted by a separable feather `v(y) * u(x)`: along an axis it rises linearly over the upscaled
overlap with the previous tile, `(i + 0.5) / ramp`, falls the same way towards the next one, and is 1
elsewhere; each axis's weights are divided by their sum over the tiles, so the weights of a pixel add
up to 1 (the sum over a full grid of `v_r(y) u_c(x)` is `sum_r v_r(y) * sum_c u_c(x)`). Tiles are
accumulated in float32 on the model's device (the host's numpy would be the bottleneck beside a GPU), in
a band one tile row high that is rounded to uint8 and copied to the host as soon as no later tile row
reaches it: the band takes 4 * channels * (tile_size * scale) * output width bytes (400 MB for RGB,
512 px tiles, x4, a 16384 px wide output), not the whole output.

Channels. The model's input channels decide the passes:

    image  model in   passes through the model
    RGB    3 / 1      the RGB (1: its BT.601 luma; the grey output is repeated to RGB)
    RGB    4          RGB plus an opaque alpha; the output's alpha is dropped
    RGBA   4          RGBA as it is
    RGBA   3 / 1      the RGB as above, then the alpha as a grey image (repeated to 3 channels for a
                      3-channel model; the output's luma is the alpha) — as chaiNNer does, so edges of
                      the alpha are sharpened like the colour. An alpha that is one value everywhere
                      (an opaque PNG) skips the model and stays that value exactly.

`progress(done, total)` counts every tile of every pass; `cancelled()` is asked before each tile.

Errors (`services.common.errors`):

    InvalidArgument      `path` not a weights file; `image`, `tile_size`, `tile_overlap` out of range
    FailedPrecondition   weights missing, unreadable, of an unknown architecture, or not an upscaler
    ResourceExhausted    out of memory while upscaling (retry with a smaller tile_size)
    Cancelled            `cancelled()` said so between tiles
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import spandrel
import torch
from safetensors import SafetensorError

from services.common.errors import Cancelled, FailedPrecondition, InvalidArgument, ResourceExhausted

__all__ = ["MAX_TILE_SIZE", "MIN_TILE_SIZE", "WEIGHT_SUFFIXES", "Upscaler", "load_upscaler"]

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
"""File name endings `load_upscaler` accepts (compared in lower case)."""
MIN_TILE_SIZE = 32
MAX_TILE_SIZE = 4096

# What spandrel raises for a file that is not readable weights: text or junk renamed .pth (pickle),
# a forbidden global (its restricted unpickler), a broken safetensors header, a broken zip archive.
_UNREADABLE = (pickle.UnpicklingError, SafetensorError, EOFError, OSError, RuntimeError, ValueError)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY (and so chaiNNer) weighs it


class Upscaler:
    """A super-resolution model, ready to run; made by `load_upscaler`.

    Attributes:
        name: the weights' file name without its suffix, e.g. "RealESRGAN_x4plus".
    """

    def __init__(self, name: str, model: spandrel.ImageModelDescriptor) -> None:
        self.name = name
        self._model = model

    @property
    def architecture(self) -> str:
        """spandrel's name for the architecture: "ESRGAN" (Real-ESRGAN included), "SwinIR", "HAT", ..."""
        return self._model.architecture.name

    @property
    def scale(self) -> int:
        """The model's fixed scale factor: outputs are `scale` times the input's width and height."""
        return self._model.scale

    @property
    def input_channels(self) -> int:
        """Channels the model takes: 3 (RGB), 1 (grey) or 4 (RGBA)."""
        return self._model.input_channels

    @property
    def output_channels(self) -> int:
        return self._model.output_channels

    @property
    def supports_half(self) -> bool:
        return self._model.supports_half

    @property
    def supports_bfloat16(self) -> bool:
        return self._model.supports_bfloat16

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def dtype(self) -> torch.dtype:
        """What the model runs in: the dtype asked for, or float32 where the architecture lacks it."""
        return self._model.dtype

    def __repr__(self) -> str:
        return (
            f"Upscaler({self.name!r}, {self.architecture} x{self.scale}, {self.input_channels} channels, "
            f"{self.device}, {self.dtype})"
        )

    def upscale(
        self,
        image: np.ndarray,
        *,
        tile_size: int = 512,
        tile_overlap: int = 32,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Upscale `image` by `self.scale`, in tiles (module docstring).

        Args:
            image: uint8 pixels, (height, width, 3) RGB or (height, width, 4) RGBA.
            tile_size: side of the square tiles the model runs on, in input pixels: 32..4096, or 0 to
                run the whole image at once. An image that fits in one tile runs whole.
            tile_overlap: overlap between neighbouring tiles, in input pixels, feathered away:
                0..tile_size // 4 (ignored when tile_size is 0).
            progress: called as `progress(done, total)` after each tile; `total` counts the tiles of
                every pass (the alpha's included).
            cancelled: asked before each tile; True stops the work with `Cancelled`.

        Returns:
            uint8 (height * scale, width * scale, channels), with the input's channels.

        Raises:
            InvalidArgument: a bad image, tile_size or tile_overlap (the field is named).
            ResourceExhausted: out of memory (on the model's device, or the host's for CPU).
            Cancelled: `cancelled()` returned True.
        """
        # 1. Check inputs.
        _check_inputs(image, tile_size, tile_overlap)
        height, width, channels = image.shape

        # 2. Plan the passes: (pixels fed to the model, channels kept from its output, where they go).
        passes: list[tuple[np.ndarray, int, slice]] = []
        result = np.empty((height * self.scale, width * self.scale, channels), np.uint8)
        if channels == 3 or self.input_channels == 4:
            passes.append((image, channels, slice(0, channels)))
        else:
            passes.append((image[..., :3], 3, slice(0, 3)))
            alpha = image[..., 3:]
            if alpha.min() == alpha.max():
                result[..., 3] = alpha[0, 0, 0]
            else:
                passes.append((alpha, 1, slice(3, 4)))

        # 3. Plan the tiles.
        rows = _spans(height, tile_size, tile_overlap)
        cols = _spans(width, tile_size, tile_overlap)
        total = len(rows) * len(cols) * len(passes)
        done = 0

        def next_tile() -> None:
            if cancelled is not None and cancelled():
                raise Cancelled(f"upscale cancelled after {done} of {total} tiles")

        def tile_done() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        # 4. Run every pass into its channels of the result.
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                for source, keep, target in passes:
                    self._run_pass(source, keep, rows, cols, result[..., target], next_tile, tile_done)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in str(exc):
                raise
            raise ResourceExhausted(
                f"out of memory on {self.device} upscaling {width}x{height} with {self.name}: retry with a "
                f"smaller tile_size (this request: {tile_size}; 0 = the whole image)"
            ) from exc
        elapsed = time.perf_counter() - started
        log.debug("%s upscaled %dx%d in %d tiles in %.2f s", self.name, width, height, total, elapsed)
        return result

    def _run_pass(
        self,
        source: np.ndarray,
        keep: int,
        rows: list[tuple[int, int]],
        cols: list[tuple[int, int]],
        out: np.ndarray,
        next_tile: Callable[[], None],
        tile_done: Callable[[], None],
    ) -> None:
        """Upscale `source` tile by tile into `out` (uint8, upscaled size, `keep` channels)."""
        s = self.scale
        weights_y = [torch.from_numpy(w).to(self.device) for w in _feather(rows, s)]
        weights_x = [torch.from_numpy(w).to(self.device) for w in _feather(cols, s)]
        # The band holds the output rows from the current tile row's top down, one tile row high: the
        # rows above it are final (no later tile row reaches them) and already rounded into `out`.
        band = torch.zeros(keep, (rows[0][1] - rows[0][0]) * s, out.shape[1], device=self.device)
        top = 0
        for (y0, y1), wy in zip(rows, weights_y, strict=True):
            shift = y0 * s - top
            if shift:
                out[top : top + shift] = _to_uint8(band[:, :shift])
                band = torch.cat([band[:, shift:], band.new_zeros(keep, shift, band.shape[2])], dim=1)
                top = y0 * s
            for (x0, x1), wx in zip(cols, weights_x, strict=True):
                next_tile()
                tile = self._run_tile(source[y0:y1, x0:x1], keep)
                band[:, :, x0 * s : x1 * s].addcmul_(tile, wy[:, None] * wx[None, :])
                tile_done()
        out[top:] = _to_uint8(band)

    def _run_tile(self, tile: np.ndarray, keep: int) -> torch.Tensor:
        """One tile through the model: uint8 (h, w, c) -> float32 (keep, h * scale, w * scale) in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(tile)).to(self.device)
        x = _to_channels(x.permute(2, 0, 1).unsqueeze(0).to(self.dtype).div_(255), self.input_channels)
        y = self._model(x)  # spandrel pads to the model's size requirements and clamps to [0, 1]
        return _to_channels(y, keep)[0].float()


def load_upscaler(
    path: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Upscaler:
    """Load super-resolution weights with spandrel, in eval mode without gradients.

    Args:
        path: the weights: `.pth`, `.pt`, `.ckpt` or `.safetensors`.
        device: where the model runs, e.g. "cuda:0".
        dtype: float32, float16 or bfloat16; float32 instead (logged) where the architecture does not
            support it.

    Raises:
        InvalidArgument: `path` does not end in a weights suffix (field "path").
        FailedPrecondition: the file is missing, unreadable, of an architecture spandrel does not know,
            or not an image-to-image model (inpainting, face restoration).
    """
    # 1. Check the file.
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise InvalidArgument(
            "path", f"{path.name!r} is not a weights file: expected {', '.join(WEIGHT_SUFFIXES)}"
        )
    if not path.is_file():
        raise FailedPrecondition(
            f"upscaler weights {path} are missing: `make models` fetches the production weights"
        )

    # 2. Load: spandrel detects the architecture and its hyper-parameters from the tensors.
    started = time.perf_counter()
    try:
        model = spandrel.ModelLoader(device).load_from_file(path)
    except spandrel.UnsupportedModelError as exc:
        raise FailedPrecondition(
            f"{path.name} is not a model architecture spandrel {spandrel.__version__} knows"
        ) from exc
    except _UNREADABLE as exc:
        raise FailedPrecondition(
            f"{path.name} cannot be read as model weights: {type(exc).__name__}: {exc}"
        ) from exc

    # 3. Keep single-image models only.
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise FailedPrecondition(
            f"{path.name} is a {model.architecture.name} {model.purpose} model, which takes a mask with "
            "the image; an upscaler takes the image alone"
        )
    if model.purpose == "FaceSR":
        raise FailedPrecondition(
            f"{path.name} is a {model.architecture.name} face-restoration model, which needs aligned face "
            "crops; an upscaler takes whole images"
        )

    # 4. Dtype, eval mode, no gradients.
    supported = {torch.float16: model.supports_half, torch.bfloat16: model.supports_bfloat16}.get(dtype, True)
    if not supported:
        log.warning(
            "%s (%s) does not support %s: it runs in float32", path.name, model.architecture.name, dtype
        )
        dtype = torch.float32
    model.to(dtype=dtype).eval()
    model.model.requires_grad_(False)
    upscaler = Upscaler(path.stem, model)
    log.info("loaded upscaler %r in %.2f s", upscaler, time.perf_counter() - started)
    return upscaler


def _check_inputs(image: np.ndarray, tile_size: int, tile_overlap: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidArgument("image", f"must be uint8 pixels, got {got}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidArgument(
            "image", f"must be (height, width, 3 or 4) RGB8 / RGBA8, got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidArgument("image", f"is empty (shape {image.shape})")
    if tile_size != 0 and not MIN_TILE_SIZE <= tile_size <= MAX_TILE_SIZE:
        raise InvalidArgument(
            "tile_size",
            f"must be {MIN_TILE_SIZE}..{MAX_TILE_SIZE} input pixels, or 0 for no tiling; got {tile_size}",
        )
    if tile_overlap < 0 or (tile_size and tile_overlap > tile_size // 4):
        raise InvalidArgument(
            "tile_overlap", f"must be 0..tile_size // 4 = {tile_size // 4} input pixels, got {tile_overlap}"
        )


def _spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of the tiles along an axis of `n` pixels: evenly spread, neighbours overlapping >= `overlap`."""
    if tile == 0 or n <= tile:
        return [(0, n)]
    count = math.ceil((n - overlap) / (tile - overlap))
    return [(start, start + tile) for start in (round(i * (n - tile) / (count - 1)) for i in range(count))]


def _feather(spans: list[tuple[int, int]], scale: int) -> list[np.ndarray]:
    """Per span, its float32 weights along the axis at output resolution, normalised across the spans."""
    profiles = []
    total = np.zeros(spans[-1][1] * scale, np.float32)
    for i, (start, end) in enumerate(spans):
        profile = np.ones((end - start) * scale, np.float32)
        rise = (spans[i - 1][1] - start) * scale if i > 0 else 0
        fall = (end - spans[i + 1][0]) * scale if i + 1 < len(spans) else 0
        if rise:
            profile[:rise] = (np.arange(rise) + 0.5) / rise
        if fall:
            profile[-fall:] = np.minimum(profile[-fall:], (np.arange(fall)[::-1] + 0.5) / fall)
        total[start * scale : end * scale] += profile
        profiles.append(profile)
    return [p / total[s * scale : e * scale] for p, (s, e) in zip(profiles, spans, strict=True)]


def _to_channels(x: torch.Tensor, n: int) -> torch.Tensor:
    """(1, c, h, w) in [0, 1] -> (1, n, h, w): colour to grey is BT.601 luma, grey to colour repeats,
    RGBA to RGB drops the alpha, RGB to RGBA adds an opaque one."""
    c = x.shape[1]
    if c == n:
        return x
    if n == 1:
        return (x[:, :3] * x.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    colour = x[:, :3] if c >= 3 else x.expand(-1, 3, -1, -1)
    return colour if n == 3 else torch.cat([colour, torch.ones_like(x[:, :1])], dim=1)


def _to_uint8(values: torch.Tensor) -> np.ndarray:
    """float (c, h, w) in [0, 1] -> uint8 (h, w, c) on the host, rounded half to even as np.rint."""
    # Each tile is clamped to [0, 1]; the normalised weights can overshoot that by a rounding error.
    return values.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
