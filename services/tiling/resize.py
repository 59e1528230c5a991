"""Resize RGB8 / RGBA8 images with Pillow's filters (Lanczos by default), up or down.

RGBA is resized with premultiplied alpha, in float32: each colour is weighted by its alpha before the
filter and divided by the resized alpha after it, so the colour of transparent pixels does not bleed into
their opaque neighbours (a transparent red pixel next to opaque blue leaves the blue blue). Float keeps the
colour of nearly transparent pixels, which 8-bit premultiplication would quantise away. `nearest` mixes no
pixels and resizes the channels as they are.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

from services.tiling.errors import ImageTooLarge, InvalidArgument, check_image

__all__ = ["DEFAULT_MAX_PIXELS", "ResizeMethod", "resize"]

ResizeMethod = Literal["lanczos", "bicubic", "bilinear", "nearest"]
_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

DEFAULT_MAX_PIXELS = 16384 * 16384
"""The largest output (width * height) `resize` makes unless the caller sets its own cap."""


def resize(
    image: np.ndarray,
    width: int,
    height: int,
    method: ResizeMethod = "lanczos",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Resize `image` (uint8, (height, width, 3 or 4)) to `width` x `height`.

    Args:
        image: the image; a fourth channel is alpha.
        width: output width in pixels, >= 1.
        height: output height in pixels, >= 1.
        method: the filter: `"lanczos"`, `"bicubic"`, `"bilinear"` or `"nearest"`.
        max_pixels: the largest `width * height` accepted.

    Raises:
        InvalidArgument: a bad image, size or method.
        ImageTooLarge: `width * height` above `max_pixels`.
    """
    # 1. Check inputs.
    check_image("image", image)
    for field, value in (("width", width), ("height", height)):
        if value < 1:
            raise InvalidArgument(field, f"must be >= 1, got {value}")
    if method not in _FILTERS:
        raise InvalidArgument("method", f"must be one of {', '.join(_FILTERS)}, got {method!r}")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} = {width * height} pixels is more than the cap of {max_pixels}"
        )
    if (image.shape[1], image.shape[0]) == (width, height):
        return image.copy()

    # 2. RGB, and anything resized with `nearest`: Pillow in 8 bits.
    size, resample = (width, height), _FILTERS[method]
    if image.shape[2] == 3 or method == "nearest":
        return np.array(Image.fromarray(image).resize(size, resample))

    # 3. RGBA: premultiply, resize every channel in float32, divide by the resized alpha.
    alpha = image[:, :, 3].astype(np.float32) / 255
    channels = [image[:, :, c] * alpha for c in range(3)] + [image[:, :, 3].astype(np.float32)]
    resized = np.stack([_resize_float(c, size, resample) for c in channels], axis=2)
    coverage = np.clip(resized[:, :, 3:], 0, 255) / 255
    out_alpha = np.rint(coverage * 255)
    # Divide by the unrounded alpha; pixels that end fully transparent get colour 0.
    colour = np.divide(resized[:, :, :3], coverage, out=np.zeros_like(resized[:, :, :3]), where=out_alpha > 0)
    out = np.concatenate([np.clip(np.rint(colour), 0, 255), out_alpha], axis=2)
    return out.astype(np.uint8)


def _resize_float(channel: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize one float32 channel with Pillow's 32-bit float mode."""
    return np.asarray(Image.fromarray(channel.astype(np.float32)).resize(size, resample))
