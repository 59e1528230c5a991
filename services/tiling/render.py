"""Pictures of a grid for the operator UI: an annotated overview of the whole image, and tile thumbnails.

Colours say a tile's state: selected tiles get a translucent blue fill and a thick blue border, processed
tiles a green tint (the overview) or a green border (thumbnails). Every tile is outlined and labelled with
its index at its top-left corner. Images with alpha are shown over a grey checkerboard.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from services.common.grid import Grid, TileRect
from services.tiling.errors import InvalidArgument, check_image_size, check_indices
from services.tiling.resize import resize

__all__ = ["MIN_RENDER_SIZE", "PROCESSED_COLOR", "SELECTED_COLOR", "render_grid", "render_tile_thumbnails"]

SELECTED_COLOR = (30, 110, 255)
PROCESSED_COLOR = (40, 200, 70)
_TINT = 0.35
"""Opacity of the selected fill and the processed tint."""
_IDLE_BORDER = (150, 150, 150)
_CHECKER = (204, 153)
"""Grey levels of the checkerboard behind transparent pixels."""
MIN_RENDER_SIZE = 16
"""The smallest `max_side` / thumbnail `size` accepted."""


def render_grid(
    image: np.ndarray,
    grid: Grid,
    selected: Collection[int] = frozenset(),
    processed: Collection[int] = frozenset(),
    max_side: int = 1024,
) -> np.ndarray:
    """The annotated overview of `grid` over `image`, RGB uint8, downscaled so its longer side <= max_side.

    Args:
        image: the image the grid was planned for, uint8 (height, width, 3 or 4).
        grid: the plan to draw.
        selected: indices of the selected tiles (blue fill and border).
        processed: indices of the processed tiles (green tint).
        max_side: the longest side of the picture, >= MIN_RENDER_SIZE; smaller images keep their size.
    """
    # 1. Check inputs.
    check_image_size("image", image, grid.image_width, grid.image_height)
    check_indices("selected", selected, len(grid.tiles))
    check_indices("processed", processed, len(grid.tiles))
    if max_side < MIN_RENDER_SIZE:
        raise InvalidArgument("max_side", f"must be >= {MIN_RENDER_SIZE}, got {max_side}")

    # 2. Downscale, and show transparency on a checkerboard.
    scale = min(1.0, max_side / max(grid.image_width, grid.image_height))
    width, height = max(1, round(grid.image_width * scale)), max(1, round(grid.image_height * scale))
    canvas = _flatten(resize(image, width, height))
    rects = {t.index: _scaled(t, scale, width, height) for t in grid.tiles}

    # 3. Tint processed tiles green and fill selected ones blue; overlaps are tinted once.
    for indices, color in ((processed, PROCESSED_COLOR), (selected, SELECTED_COLOR)):
        covered = np.zeros((height, width), bool)
        for i in indices:
            x0, y0, x1, y1 = rects[i]
            covered[y0:y1, x0:x1] = True
        canvas[covered] = np.rint(canvas[covered] * (1 - _TINT) + np.array(color) * _TINT).astype(np.uint8)

    # 4. Outline every tile, then the selected ones thickly, then label them all.
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for x0, y0, x1, y1 in rects.values():
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(0, 0, 0))
        draw.rectangle((x0 + 1, y0 + 1, x1 - 2, y1 - 2), outline=(255, 255, 255))
    for i in selected:
        x0, y0, x1, y1 = rects[i]
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=SELECTED_COLOR, width=3)
    side = min(min(x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects.values())
    font = ImageFont.load_default(size=max(10, min(32, side // 6)))
    for i, (x0, y0, _, _) in rects.items():
        _label(draw, (x0 + 3, y0 + 3), str(i), font)
    return np.array(picture)


def render_tile_thumbnails(
    image: np.ndarray,
    grid: Grid,
    size: int = 128,
    selected: Collection[int] = frozenset(),
    processed: Collection[int] = frozenset(),
) -> list[np.ndarray]:
    """One labelled RGB uint8 thumbnail per tile, in index order, its longer side `size` pixels.

    The border says the state: blue if selected, green if processed (both: blue outside, green inside),
    grey otherwise.

    Args:
        image: the image the grid was planned for, uint8 (height, width, 3 or 4).
        grid: the plan whose tiles to show.
        size: the longer side of each thumbnail, >= MIN_RENDER_SIZE.
        selected: indices of the selected tiles.
        processed: indices of the processed tiles.
    """
    # 1. Check inputs.
    check_image_size("image", image, grid.image_width, grid.image_height)
    check_indices("selected", selected, len(grid.tiles))
    check_indices("processed", processed, len(grid.tiles))
    if size < MIN_RENDER_SIZE:
        raise InvalidArgument("size", f"must be >= {MIN_RENDER_SIZE}, got {size}")

    # 2. Shrink (or enlarge) every tile, flatten it on the checkerboard, frame and label it.
    border = max(2, size // 40)
    font = ImageFont.load_default(size=max(10, size // 8))
    thumbnails = []
    for t in grid.tiles:
        scale = size / max(t.width, t.height)
        width, height = max(1, round(t.width * scale)), max(1, round(t.height * scale))
        picture = Image.fromarray(_flatten(resize(image[t.slices], width, height)))
        draw = ImageDraw.Draw(picture)
        outer = (
            SELECTED_COLOR
            if t.index in selected
            else PROCESSED_COLOR
            if t.index in processed
            else _IDLE_BORDER
        )
        draw.rectangle((0, 0, width - 1, height - 1), outline=outer, width=border)
        if t.index in selected and t.index in processed:
            draw.rectangle(
                (border, border, width - 1 - border, height - 1 - border),
                outline=PROCESSED_COLOR,
                width=border,
            )
        _label(draw, (2 * border + 1, 2 * border + 1), str(t.index), font)
        thumbnails.append(np.array(picture))
    return thumbnails


def _scaled(tile: TileRect, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """`(x0, y0, x1, y1)` of `tile` in the scaled picture, at least one pixel each way."""
    x0, y0 = min(math.floor(tile.x * scale), width - 1), min(math.floor(tile.y * scale), height - 1)
    x1 = min(max(x0 + 1, math.ceil((tile.x + tile.width) * scale)), width)
    y1 = min(max(y0 + 1, math.ceil((tile.y + tile.height) * scale)), height)
    return x0, y0, x1, y1


def _flatten(image: np.ndarray) -> np.ndarray:
    """RGB uint8: an RGB image as is (copied), an RGBA one composited over an 8-pixel checkerboard."""
    if image.shape[2] == 3:
        return image.copy()
    height, width = image.shape[:2]
    ys, xs = np.indices((height, width))
    checker = np.where(((ys // 8 + xs // 8) % 2 == 0)[:, :, None], _CHECKER[0], _CHECKER[1])
    alpha = image[:, :, 3:].astype(np.float32) / 255
    return np.rint(image[:, :, :3] * alpha + checker * (1 - alpha)).astype(np.uint8)


def _label(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """White `text` on a black box with its top-left corner at `at`."""
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text(at, text, fill=(255, 255, 255), font=font)
