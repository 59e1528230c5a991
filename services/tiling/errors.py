"""The errors the tiling code raises, and the input checks shared by its modules.

The tiling modules raise only classes of the one Tilesmith tree (`services.common.errors`):

    TilesmithError
     ├── InvalidArgument          a bad argument: names the field, shows the value, says what is allowed
     └── ResourceExhausted
          └── ImageTooLarge       a requested image above the caller's pixel cap

Nothing here clamps or repairs input: a value out of range is refused.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from services.common.errors import ImageTooLarge, InvalidArgument

__all__ = [
    "ImageTooLarge",
    "InvalidArgument",
    "check_image",
    "check_image_size",
    "check_indices",
    "describe_array",
]


def describe_array(value: object) -> str:
    """A short description of `value` for error messages: shape and dtype of an array, else its type."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def check_image(field: str, image: object, channels: Collection[int] = (3, 4)) -> np.ndarray:
    """Check that `image` is a non-empty uint8 array of shape (height, width, channels); return it.

    Args:
        field: the name the error reports (e.g. `"image"`, `"tiles[3]"`).
        image: the value to check.
        channels: the allowed channel counts (3 = RGB8, 4 = RGBA8).
    """
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] not in channels
        or image.shape[0] == 0
        or image.shape[1] == 0
    ):
        allowed = " or ".join(str(c) for c in channels)
        shape = f"(height >= 1, width >= 1, {allowed})"
        raise InvalidArgument(field, f"must be a uint8 array of shape {shape}, got {describe_array(image)}")
    return image


def check_image_size(field: str, image: object, width: int, height: int) -> np.ndarray:
    """`check_image`, and check that the image is `width` x `height` pixels (a grid's image size)."""
    check_image(field, image)
    if image.shape[:2] != (height, width):
        raise InvalidArgument(
            field,
            f"is {image.shape[1]}x{image.shape[0]} but the grid is for {width}x{height} (width x height)",
        )
    return image


def check_indices(field: str, indices: Collection[int], count: int) -> None:
    """Check that every tile index in `indices` lies in 0..count-1."""
    bad = sorted(i for i in indices if not 0 <= i < count)
    if bad:
        raise InvalidArgument(field, f"tile indices must lie in 0..{count - 1}, got {bad}")
