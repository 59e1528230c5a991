"""Split an image into tiles and blend tiles back with feathered weights; the seam-fix band blend.

Feather. Each tile is weighted by a separable ramp `w(y, x) = p_y(y) * p_x(x)`. Along an axis the profile
rises over `ramp` pixels at a side that has a neighbour (`ramp` = the real overlap with that neighbour,
larger where the last tile is snapped to the edge), falls the same way at the other side, and is 1 in
between and at image borders:

    rise(i) = f((i + 0.5) / ramp),  i = 0 .. ramp-1      f(t) = t                     (linear)
                                                          f(t) = (1 - cos(pi t)) / 2   (cosine)
    p(i)    = min(rise from the near side, fall towards the far side)

The half-pixel offset keeps every weight above 0, so every covered pixel has a weight; and where two tiles
share an overlap their rise and fall add up to 1 pixel by pixel. The blend is `sum(w_k * tile_k) / sum(w_k)`
in float32, rounded with `rint`: a weighted mean of equal values, so blending the unmodified tiles of any
plan gives back the image bit for bit.

Seam band. The seam-fix pass blends the offset tiles among themselves in the same way, then mixes them over
the first pass with a mask that is > 0 only within `band_width` pixels around the first grid's seams. Along
an axis, a band of `band_width` pixels starts at `seam - band_width // 2` and is

    ramp = band_width // 4 pixels rising (the feather's `f`), a plateau of 1 over the middle
    (band_width - 2 * ramp, about half the band), ramp pixels falling

and the mask is the maximum of the vertical-seam profile (over x) and the horizontal-seam profile (over y).
Outside the bands the first pass is kept bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from services.tiling.errors import InvalidArgument, check_image, check_image_size, describe_array
from services.tiling.grid import Grid, TileRect, seams

__all__ = [
    "Blender",
    "FeatherMode",
    "SeamBlendResult",
    "blend_seam_band",
    "blend_tiles",
    "feather_weights",
    "split_tiles",
]

FeatherMode = Literal["linear", "cosine"]
_MODES = ("linear", "cosine")
_BLOCK_VALUES = 1 << 18
"""Float32 values in the band of rows that `Blender.result` works on at a time (1 MiB, stays in cache)."""


@dataclass(frozen=True)
class SeamBlendResult:
    """The seam-fix blend: the image, the share of pixels it changed, and the mask it used.

    `mask` is float32 (height, width) in [0, 1]; `touched_fraction` is the fraction of pixels where it is > 0.
    """

    image: np.ndarray
    touched_fraction: float
    mask: np.ndarray


def split_tiles(image: np.ndarray, grid: Grid) -> list[np.ndarray]:
    """Cut `image` (uint8, (height, width, 3 or 4)) into the tiles of `grid`, in index order.

    The tiles are views into `image`: copy one before changing it in place.
    """
    check_image_size("image", image, grid.image_width, grid.image_height)
    return [image[t.slices] for t in grid.tiles]


def feather_weights(
    tile_h: int,
    tile_w: int,
    ramp_left: int,
    ramp_top: int,
    ramp_right: int,
    ramp_bottom: int,
    mode: FeatherMode = "cosine",
) -> np.ndarray:
    """The float32 (tile_h, tile_w) feather of one tile (module docstring); every value is in (0, 1].

    Args:
        tile_h: tile height in pixels.
        tile_w: tile width in pixels.
        ramp_left: pixels over which the weight rises from the left edge; 0 for flat (image border).
        ramp_top: the same from the top edge.
        ramp_right: the same from the right edge.
        ramp_bottom: the same from the bottom edge.
        mode: the ramp's shape, `"linear"` or `"cosine"`.
    """
    _check_mode(mode)
    for field, ramp, size in (
        ("ramp_left", ramp_left, tile_w),
        ("ramp_right", ramp_right, tile_w),
        ("ramp_top", ramp_top, tile_h),
        ("ramp_bottom", ramp_bottom, tile_h),
    ):
        if not 0 <= ramp <= size:
            raise InvalidArgument(field, f"must be >= 0 and <= the tile side ({size}), got {ramp}")
    return np.multiply.outer(
        _profile(tile_h, ramp_top, ramp_bottom, mode), _profile(tile_w, ramp_left, ramp_right, mode)
    )


class Blender:
    """Collects the tiles of one grid as they arrive, in any order, and blends them into one image.

    >>> blender = Blender(grid, mode="cosine", channels=3)
    >>> for index, tile in arriving_tiles:
    ...     blender.add(index, tile)
    >>> image = blender.result()

    `add` only checks and keeps the tile (by reference: do not change it afterwards). `result` blends a band
    of rows at a time into a float32 accumulator of about 1 MiB that stays in cache, so the memory beyond
    the tiles themselves is the uint8 result, whatever the image size.
    """

    def __init__(self, grid: Grid, mode: FeatherMode = "cosine", channels: int = 3) -> None:
        """Args:
        grid: the plan the tiles come from.
        mode: the feather's shape, `"linear"` or `"cosine"`.
        channels: 3 (RGB8) or 4 (RGBA8); alpha is blended like the colour channels.
        """
        _check_mode(mode)
        if channels not in (3, 4):
            raise InvalidArgument("channels", f"must be 3 (RGB) or 4 (RGBA), got {channels}")
        self.grid = grid
        self.mode: FeatherMode = mode
        self.channels = channels
        self._tiles: dict[int, np.ndarray] = {}

    @property
    def missing(self) -> list[int]:
        """Indices of the tiles not added yet, ascending."""
        return [t.index for t in self.grid.tiles if t.index not in self._tiles]

    def add(self, index: int, tile: np.ndarray) -> None:
        """Add the tile with grid index `index`: uint8 (tile height, tile width, channels)."""
        field = f"tiles[{index}]"
        if not 0 <= index < len(self.grid.tiles):
            raise InvalidArgument(field, f"tile index must lie in 0..{len(self.grid.tiles) - 1}")
        if index in self._tiles:
            raise InvalidArgument(field, f"tile index {index} was given twice")
        rect = self.grid.tiles[index]
        expected = (rect.height, rect.width, self.channels)
        if not isinstance(tile, np.ndarray) or tile.dtype != np.uint8 or tile.shape != expected:
            raise InvalidArgument(
                field, f"must be a uint8 array of shape {expected}, got {describe_array(tile)}"
            )
        self._tiles[index] = tile

    def result(self) -> np.ndarray:
        """The blended uint8 (height, width, channels) image, once every tile was added.

        Pixels no tile covers (only image corners of an offset grid) are 0.
        """
        # 1. Check that every tile is there.
        missing = self.missing
        if missing:
            raise InvalidArgument(
                "tiles", f"missing indices {_abbreviate(missing)} of {len(self.grid.tiles)}"
            )

        # 2. Buffers for one band of rows, reused for every band.
        height, width, channels = self.grid.image_height, self.grid.image_width, self.channels
        step = max(1, _BLOCK_VALUES // (width * channels))
        acc = np.empty((step, width, channels), np.float32)
        weight = np.empty((step, width), np.float32)
        tile_part = np.empty((step, self.grid.tile_width, channels), np.float32)
        weight_part = np.empty((step, self.grid.tile_width), np.float32)
        profiles = _tile_profiles(self.grid, self.mode, channels)
        tiles_by_row: list[list[TileRect]] = [[] for _ in range(self.grid.rows)]
        for rect in self.grid.tiles:
            tiles_by_row[rect.row].append(rect)
        image = np.empty((height, width, channels), np.uint8)

        # 3. For each band: accumulate the feathered part of every tile that reaches into it, normalise.
        #    The feather is applied as its two 1-D profiles, x (repeated per channel) then y: numpy
        #    broadcasts those fast, unlike a 2-D weight broadcast over the channel axis.
        for y0 in range(0, height, step):
            y1 = min(y0 + step, height)
            band_acc, band_weight = acc[: y1 - y0], weight[: y1 - y0]
            band_acc.fill(0)
            band_weight.fill(0)
            for (row_y, row_height), row_tiles in zip(self.grid.row_spans, tiles_by_row, strict=True):
                top, bottom = max(y0, row_y), min(y1, row_y + row_height)
                if top >= bottom:
                    continue
                for rect in row_tiles:
                    src = slice(top - rect.y, bottom - rect.y)
                    dst = slice(top - y0, bottom - y0), slice(rect.x, rect.x + rect.width)
                    p_y, p_x, p_xc = profiles[rect.index]
                    part = tile_part[: bottom - top, : rect.width]
                    np.multiply(self._tiles[rect.index][src], p_xc, out=part)
                    np.multiply(part, p_y[src, None, None], out=part)
                    band_acc[dst] += part
                    part_weight = weight_part[: bottom - top, : rect.width]
                    np.multiply.outer(p_y[src], p_x, out=part_weight)
                    band_weight[dst] += part_weight
            # Uncovered pixels have acc 0 and weight 0: dividing by 1 keeps them 0.
            band_weight[band_weight == 0] = 1
            np.divide(
                band_acc, np.repeat(band_weight, channels, axis=1).reshape(band_acc.shape), out=band_acc
            )
            np.rint(band_acc, out=band_acc)
            np.clip(band_acc, 0, 255, out=band_acc)
            image[y0:y1] = band_acc
        return image


def blend_tiles(
    tiles: Sequence[np.ndarray], grid: Grid, mode: FeatherMode = "cosine", channels: int | None = None
) -> np.ndarray:
    """Blend the tiles of `grid` (in index order) into one uint8 (height, width, channels) image.

    Args:
        tiles: one uint8 (tile height, tile width, channels) array per grid tile, `tiles[i]` for index i.
        grid: the plan the tiles come from.
        mode: the feather's shape, `"linear"` or `"cosine"`.
        channels: 3 or 4; by default the channel count of the first tile.
    """
    # 1. Check inputs.
    if len(tiles) > len(grid.tiles):
        raise InvalidArgument("tiles", f"the grid has {len(grid.tiles)} tiles, got {len(tiles)}")
    if channels is None:
        channels = check_image("tiles[0]", tiles[0]).shape[2] if tiles else 3

    # 2. Accumulate every tile, then normalise.
    blender = Blender(grid, mode=mode, channels=channels)
    for index, tile in enumerate(tiles):
        blender.add(index, tile)
    return blender.result()


def blend_seam_band(
    base: np.ndarray,
    offset_tiles: Sequence[np.ndarray],
    offset_grid: Grid,
    first_grid: Grid,
    band_width: int,
    mode: FeatherMode = "cosine",
) -> SeamBlendResult:
    """Mix the re-drawn offset tiles over the first pass inside feathered bands around its seams.

    Args:
        base: the first pass, uint8 (height, width, 3 or 4).
        offset_tiles: one tile per offset-grid tile, in index order, with `base`'s channels.
        offset_grid: `plan_grid(..., offset=True)` for the same image and tile size as `first_grid`.
        first_grid: the grid of the first pass, whose seams are fixed.
        band_width: total width of the band around each seam, 2 <= band_width <= the offset tile size.
        mode: the shape of both the tile feathers and the band's ramps, `"linear"` or `"cosine"`.

    Returns:
        The mixed image (equal to `base` outside the bands, to the offset blend where the mask is 1), the
        fraction of pixels inside a band, and the mask.
    """
    # 1. Check inputs.
    _check_mode(mode)
    check_image_size("base", base, first_grid.image_width, first_grid.image_height)
    same_plan = (
        offset_grid.image_width,
        offset_grid.image_height,
        offset_grid.tile_width,
        offset_grid.tile_height,
    )
    if not offset_grid.offset or same_plan != (
        first_grid.image_width,
        first_grid.image_height,
        first_grid.tile_width,
        first_grid.tile_height,
    ):
        raise InvalidArgument(
            "offset_grid",
            "must be the offset grid (offset=True) of the same image and tile size as first_grid",
        )
    if first_grid.offset:
        raise InvalidArgument("first_grid", "must be a first-pass grid (offset=False)")
    max_band = min(offset_grid.tile_width, offset_grid.tile_height)
    if not 2 <= band_width <= max_band:
        raise InvalidArgument(
            "band_width", f"must be >= 2 and <= the offset tile size ({max_band}), got {band_width}"
        )
    xs, ys = seams(first_grid)
    if not xs and not ys:
        return SeamBlendResult(
            image=base.copy(), touched_fraction=0.0, mask=np.zeros(base.shape[:2], np.float32)
        )

    # 2. Blend the offset tiles among themselves.
    offset = blend_tiles(offset_tiles, offset_grid, mode=mode, channels=base.shape[2])

    # 3. The band mask: the larger of the horizontal-seam profile (over y) and the vertical-seam one (over x).
    height, width = base.shape[:2]
    profile_y = _band_profile(height, ys, band_width, mode)
    profile_x = _band_profile(width, xs, band_width, mode)
    mask = np.maximum(profile_y[:, None], profile_x[None, :])

    # 4. Mix inside the bands only, a rectangle at a time: whole rows in a horizontal band, and the vertical
    #    bands' columns in the rows between. Everything else stays `base` bit for bit.
    image = base.copy()
    rects = [(rows, (0, width)) for rows in _runs(profile_y > 0)]
    rects += [(rows, cols) for rows in _runs(profile_y == 0) for cols in _runs(profile_x > 0)]
    for (y0, y1), (x0, x1) in rects:
        region = slice(y0, y1), slice(x0, x1)
        m = mask[region][:, :, None]
        mixed = offset[region] - base[region].astype(np.float32)
        mixed *= m
        mixed += base[region]
        np.rint(mixed, out=mixed)
        image[region] = np.clip(mixed, 0, 255, out=mixed)
    touched = sum((y1 - y0) * (x1 - x0) for (y0, y1), (x0, x1) in rects)
    return SeamBlendResult(image=image, touched_fraction=touched / (height * width), mask=mask)


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise InvalidArgument("mode", f"must be 'linear' or 'cosine', got {mode!r}")


def _tile_profiles(
    grid: Grid, mode: FeatherMode, channels: int
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The feather of every tile as 1-D profiles `(p_y, p_x, p_x repeated per channel)`, by index.

    Each ramp is as long as the tile's overlap with its neighbouring column or row on that side; tiles
    with the same sizes and ramps share their arrays.
    """
    cols, rows = grid.col_spans, grid.row_spans
    shared: dict[tuple[int, ...], np.ndarray] = {}

    def profile(size: int, ramp_start: int, ramp_end: int) -> np.ndarray:
        key = (size, ramp_start, ramp_end)
        if key not in shared:
            shared[key] = _profile(size, ramp_start, ramp_end, mode)
        return shared[key]

    profiles = {}
    for t in grid.tiles:
        left = _overlap(cols[t.col - 1], cols[t.col]) if t.col > 0 else 0
        right = _overlap(cols[t.col], cols[t.col + 1]) if t.col < grid.cols - 1 else 0
        top = _overlap(rows[t.row - 1], rows[t.row]) if t.row > 0 else 0
        bottom = _overlap(rows[t.row], rows[t.row + 1]) if t.row < grid.rows - 1 else 0
        p_x = profile(t.width, left, right)
        profiles[t.index] = (profile(t.height, top, bottom), p_x, np.repeat(p_x[:, None], channels, axis=1))
    return profiles


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Pixels shared by the spans `a` and `b` (`(start, length)`, `a` left of `b`)."""
    return max(0, a[0] + a[1] - b[0])


def _ramp(ramp: int, mode: str) -> np.ndarray:
    """`ramp` values rising from just above 0 to just below 1 (float64)."""
    t = (np.arange(ramp) + 0.5) / ramp
    return t if mode == "linear" else 0.5 - 0.5 * np.cos(np.pi * t)


def _profile(size: int, ramp_start: int, ramp_end: int, mode: str) -> np.ndarray:
    """1-D feather of `size` pixels: rise over `ramp_start`, fall over `ramp_end`, 1 between (float32)."""
    rise = np.ones(size)
    rise[:ramp_start] = _ramp(ramp_start, mode)
    fall = np.ones(size)
    if ramp_end:
        fall[-ramp_end:] = _ramp(ramp_end, mode)[::-1]
    return np.minimum(rise, fall).astype(np.float32)


def _band_profile(size: int, positions: list[int], band_width: int, mode: str) -> np.ndarray:
    """1-D seam-band mask of `size` pixels: the maximum of one band per seam position (float32)."""
    ramp = band_width // 4
    band = np.ones(band_width)
    band[:ramp] = _ramp(ramp, mode)
    band[band_width - ramp :] = _ramp(ramp, mode)[::-1]
    profile = np.zeros(size)
    for s in positions:
        start = s - band_width // 2
        view = profile[start : start + band_width]
        np.maximum(view, band, out=view)
    return profile.astype(np.float32)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """`(start, stop)` of every run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _abbreviate(indices: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"
