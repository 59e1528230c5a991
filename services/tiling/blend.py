"""Split an image into tiles and blend tiles back with feathered weights; the seam-fix band blend.

Feather. Each tile is weighted by a separable ramp `w(y, x) = p_y(y) * p_x(x)`. Along an axis the profile
rises over `ramp` pixels at a side that has a neighbour (`ramp` = the real overlap with that neighbour,
larger where the last tile is snapped to the edge), falls the same way at the other side, and is 1 in
between and at image borders:

    rise(i) = f((i + 0.5) / ramp),  i = 0 .. ramp-1      f(t) = t                     (linear)
                                                          f(t) = (1 - cos(pi t)) / 2   (cosine)
    p(i)    = min(rise from the near side, fall towards the far side)

The half-pixel offset keeps every weight above 0, so every covered pixel has a weight; and where two tiles
share an overlap their rise and fall add up to 1 pixel by pixel. A pixel of the blend is the normalised
mean `sum(w_k * tile_k) / sum(w_k)` over the tiles that cover it. `p_x` depends only on a tile's column
(its overlaps with the neighbouring columns) and `p_y` only on its row.

Blend, by cells. The blend never works on whole tiles:

 1. Cut the image by every tile's left and right edge (x) and top and bottom edge (y). Each rectangle of
    that partition, a cell, is covered by one fixed set of tiles.
 2. A cell covered by one tile (about 2/3 of an 8K image with 1024 px tiles and 128 px overlap) is a plain
    uint8 copy of that tile: its normalised weight is exactly 1. A cell no tile covers (only image corners
    of an offset grid) is 0.
 3. In a cell covered by the tiles of columns C and rows R (every pairing present, as always in a first
    grid) the normalised weight separates: `w_rc(y, x) = u_c(x) * v_r(y)` with `u_c = p_x,c / sum_C p_x`
    and `v_r = p_y,r / sum_R p_y`. With one row of tiles it is 1-D along x, with one column 1-D along y;
    only the corners where overlaps cross need both. A cell whose tiles are not such a product (near the
    corners of an offset grid, where tiles are left out) gets 2-D weights, worked out as it is blended.
 4. Fixed point. The weights of a cell are quantised to whole numbers `q_i >= 0` that sum to exactly `2**k`
    at every pixel (largest remainder: every `|q_i - 2**k w_i| < 1`), and

        out = (sum_i q_i * t_i + 2**(k-1)) >> k        in unsigned integers.

    If every tile has the same value `v` at a pixel the sum is `2**k * v`, and `out = v` exactly: blending
    the unmodified tiles of any plan gives back the image bit for bit, by construction. An integer sum does
    not depend on the order of its terms, so neither does the result. 1-D cells use `k = 8` in uint16
    (`2**8 * 255 + 2**7 < 2**16`). Crossing cells first sum along x with `k = 8` in uint16, unrounded and
    so exact, `a_r = sum_C q_c t_rc`, then along y with `k = 16` in uint32: `(sum_R q_r a_r + 2**23) >> 24`
    (`2**24 * 255 + 2**23 < 2**32`; equal tiles give `a_r = 2**8 v` and `out = v`). 2-D cells use `k = 16`
    in uint32. The quantised weights still sum to 1, and `n` of them quantised to `2**-8` move a value by
    less than `255 * n / 1024` levels from the exact weighted mean (largest remainder: the units given or
    taken add up to at most `n / 4`). A first grid has at most 3 tiles over a pixel along an axis, so its
    blend is within 0.75 of the exact mean before the final rounding (half up), and within 1 level of the
    exact mean rounded.
 5. Cells are blended in bands of at most `_CHUNK_VALUES` values (pixels x channels), with a few integer
    buffers reused throughout, into one uint8 result allocated once, on the calling thread. (Threads over
    bands of rows were measured on 2 cores: anywhere from 1.3x faster to 1.5x slower depending on other
    load, numpy's many short calls handing the GIL back and forth, so they are not used.)

Seam band. The seam-fix pass blends the offset tiles among themselves in the same way, then mixes them over
the first pass with a mask that is > 0 only within `band_width` pixels around the first grid's seams. Along
an axis, a band of `band_width` pixels starts at `seam - band_width // 2` and is

    ramp = band_width // 4 pixels rising (the feather's `f`), a plateau of 1 over the middle
    (band_width - 2 * ramp, about half the band), ramp pixels falling

and the mask is the maximum of the vertical-seam profile (over x) and the horizontal-seam profile (over y).
Only the rectangles where the mask is > 0 are touched, and only there are the offset tiles blended; the mix
is in fixed point too, `m = rint(256 * mask)` and `out = (m * offset + (256 - m) * base + 128) >> 8`.
Outside the bands the first pass is kept bit for bit, and where the mask is 1 the offset blend is.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from services.common.grid import Grid, seams
from services.tiling.errors import InvalidArgument, check_image, check_image_size, describe_array

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
_CHUNK_VALUES = 1 << 19
"""Most values (pixels x channels) blended at a time: each integer buffer is 1 MiB (uint16) or 2 MiB (uint32)."""


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

    `add` only checks and keeps the tile (by reference: do not change it afterwards). `result` blends cell
    by cell (module docstring) with a few MiB of integer buffers, so the memory beyond the tiles
    themselves is the uint8 result, whatever the image size. The cells and their weights depend only on the
    grid, the mode and the channel count; those of the last few plans are kept.
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
        height, width = self.grid.image_height, self.grid.image_width
        return self._blend([((0, height), (0, width))])

    def _blend(self, regions: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> np.ndarray:
        """The blend inside `regions` (disjoint `((y0, y1), (x0, x1))`); the rest of the image is undefined."""
        # 1. Check that every tile is there.
        missing = self.missing
        if missing:
            raise InvalidArgument(
                "tiles", f"missing indices {_abbreviate(missing)} of {len(self.grid.tiles)}"
            )

        # 2. The cells and their weights.
        partition = _plan_cells(self.grid, self.mode, self.channels)

        # 3. Blend the cells inside the regions into one image.
        image = np.empty((self.grid.image_height, self.grid.image_width, self.channels), np.uint8)
        _blend_parts(
            partition.parts(regions), [self._tiles[i] for i in range(len(self.grid.tiles))], self.grid, image
        )
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
    return _blender(tiles, grid, mode, channels).result()


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
    blender = _blender(offset_tiles, offset_grid, mode, base.shape[2])

    # 2. The band mask: the larger of the horizontal-seam profile (over y) and the vertical-seam one (over x).
    height, width = base.shape[:2]
    profile_y = _band_profile(height, ys, band_width, mode)
    profile_x = _band_profile(width, xs, band_width, mode)
    mask = np.maximum(profile_y[:, None], profile_x[None, :])

    # 3. The bands as rectangles: whole rows in a horizontal band, and the vertical bands' columns in the
    #    rows between. Blend the offset tiles among themselves there only.
    rects = [(rows, (0, width)) for rows in _runs(profile_y > 0)]
    rects += [(rows, cols) for rows in _runs(profile_y == 0) for cols in _runs(profile_x > 0)]
    offset = blender._blend(rects)

    # 4. Mix in fixed point (module docstring), a band of rows at a time; the rest stays `base` bit for bit.
    #    rint is monotonic, so `rint(256 * mask)` is the larger of the two profiles' rint(256 * profile).
    channels = base.shape[2]
    m_y = np.rint(profile_y * 256).astype(np.uint16)[:, None, None]
    m_x = np.repeat(np.rint(profile_x * 256).astype(np.uint16)[:, None], channels, axis=1)
    image = base.copy()
    mixed_buffer, m_buffer = np.empty(_CHUNK_VALUES, np.uint16), np.empty(_CHUNK_VALUES, np.uint16)
    for (y0, y1), (x0, x1) in rects:
        step = max(1, _CHUNK_VALUES // ((x1 - x0) * channels))
        for r0 in range(y0, y1, step):
            rows, cols = slice(r0, min(r0 + step, y1)), slice(x0, x1)
            out = image[rows, cols]
            mixed, m = _view(mixed_buffer, out.shape), _view(m_buffer, out.shape)
            np.maximum(m_y[rows], m_x[cols], out=m)
            np.multiply(offset[rows, cols], m, out=mixed)
            np.subtract(256, m, out=m)
            np.multiply(base[rows, cols], m, out=m)
            mixed += m
            mixed += 1 << 7
            np.right_shift(mixed, 8, out=out, casting="unsafe")
    touched = sum((y1 - y0) * (x1 - x0) for (y0, y1), (x0, x1) in rects)
    return SeamBlendResult(image=image, touched_fraction=touched / (height * width), mask=mask)


# --- cells ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    """One rectangle of the partition (module docstring, steps 1 to 3) and its quantised weights.

    `kind` and what the other fields hold:
        "empty"  no tile covers the cell, which is 0;
        "copy"   `tiles` is the one tile over it;
        "x"      one row of tiles, one per column: `qx` their uint16 weights (w, channels), summing to 2**8;
        "y"      one column of tiles, one per row: `qy` their uint16 weights (h, 1, 1), summing to 2**8;
        "xy"     every pairing of some columns and rows: `tiles` row by row, `qx` as for "x" (one per
                 column), `qy` uint32 (h, 1, 1) summing to 2**16 (one per row);
        "any"    any other set of tiles: `feather` holds each tile's float64 `(p_y, p_x)` over the cell, and
                 `_blend_parts` works out the 2-D weights band by band (only offset grids have these).
    """

    ys: tuple[int, int]
    xs: tuple[int, int]
    kind: str
    tiles: tuple[int, ...] = ()
    qx: tuple[np.ndarray, ...] = ()
    qy: tuple[np.ndarray, ...] = ()
    feather: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


@dataclass(frozen=True)
class _Partition:
    """The cells of a grid: `cells[i][j]` spans rows `ys[i]:ys[i + 1]` and columns `xs[j]:xs[j + 1]`."""

    ys: list[int]
    xs: list[int]
    cells: list[list[_Cell]]

    def parts(
        self, regions: Sequence[tuple[tuple[int, int], tuple[int, int]]]
    ) -> list[tuple[_Cell, tuple[int, int], tuple[int, int]]]:
        """`(cell, rows, columns)` for every part of a cell inside one of `regions` (`((y0, y1), (x0, x1))`)."""
        parts = []
        for (y0, y1), (x0, x1) in regions:
            rows = slice(bisect.bisect_right(self.ys, y0) - 1, bisect.bisect_left(self.ys, y1))
            cols = slice(bisect.bisect_right(self.xs, x0) - 1, bisect.bisect_left(self.xs, x1))
            parts += [
                (cell, (max(cell.ys[0], y0), min(cell.ys[1], y1)), (max(cell.xs[0], x0), min(cell.xs[1], x1)))
                for row in self.cells[rows]
                for cell in row[cols]
            ]
        return parts


@functools.lru_cache(maxsize=8)
def _plan_cells(grid: Grid, mode: str, channels: int) -> _Partition:
    """The cells of `grid` with their quantised weights (module docstring, steps 1 to 4).

    They depend only on the geometry, so the last few are kept: a service blends many images of one plan.
    Every array in them is read-only.
    """
    # 1. The feather along x of every column and along y of every row.
    col_spans, row_spans = grid.col_spans, grid.row_spans
    px, py = _axis_profiles(col_spans, mode), _axis_profiles(row_spans, mode)
    by_place = {(t.row, t.col): t.index for t in grid.tiles}

    # 2. 1-D weights of the columns (rows) `lines` over pixels a..b-1 along x (y); many cells cut the same
    #    stretch of the same profiles, and share the arrays.
    cache: dict[tuple, tuple[np.ndarray, ...]] = {}

    def weights(along_x: bool, lines: list[int], a: int, b: int, bits: int) -> tuple[np.ndarray, ...]:
        profiles, spans = (px, col_spans) if along_x else (py, row_spans)
        key = (along_x, bits, *((profiles[i][0], a - spans[i][0], b - spans[i][0]) for i in lines))
        if key not in cache:
            q = _quantise(np.stack([profiles[i][1][a - spans[i][0] : b - spans[i][0]] for i in lines]), bits)
            if along_x:
                q = np.repeat(q[:, :, None], channels, axis=2).astype(np.uint16)
            else:
                q = q[:, :, None, None].astype(np.uint16 if bits <= 8 else np.uint32)
            q.flags.writeable = False
            cache[key] = tuple(q)
        return cache[key]

    # 3. Cut the image by every tile edge; find the tiles over each cell and how to weight them.
    y_cuts, x_cuts = _intervals(row_spans, grid.image_height), _intervals(col_spans, grid.image_width)
    cells = []
    for y0, y1, rows in y_cuts:
        cells.append([])
        for x0, x1, cols in x_cuts:
            places = [(r, c) for r in rows for c in cols if (r, c) in by_place]
            used_rows = sorted({r for r, _ in places})
            used_cols = sorted({c for _, c in places})
            cell: dict = {"ys": (y0, y1), "xs": (x0, x1), "tiles": tuple(by_place[p] for p in places)}
            if len(places) <= 1:
                how = {"kind": "copy" if places else "empty"}
            elif len(places) != len(used_rows) * len(used_cols):
                feather = tuple(
                    (
                        py[r][1][y0 - row_spans[r][0] : y1 - row_spans[r][0]],
                        px[c][1][x0 - col_spans[c][0] : x1 - col_spans[c][0]],
                    )
                    for r, c in places
                )
                how = {"kind": "any", "feather": feather}
            elif len(used_rows) == 1:
                how = {"kind": "x", "qx": weights(True, used_cols, x0, x1, 8)}
            elif len(used_cols) == 1:
                how = {"kind": "y", "qy": weights(False, used_rows, y0, y1, 8)}
            else:
                qx, qy = weights(True, used_cols, x0, x1, 8), weights(False, used_rows, y0, y1, 16)
                how = {"kind": "xy", "qx": qx, "qy": qy}
            cells[-1].append(_Cell(**cell, **how))
    return _Partition(
        [y0 for y0, _, _ in y_cuts] + [grid.image_height],
        [x0 for x0, _, _ in x_cuts] + [grid.image_width],
        cells,
    )


def _intervals(spans: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int, list[int]]]:
    """The intervals between consecutive tile edges along an axis, each with the columns (rows) over it."""
    edges = sorted({0, size} | {s for s, _ in spans} | {s + n for s, n in spans})
    return [
        (a, b, [i for i, (s, n) in enumerate(spans) if s <= a and b <= s + n])
        for a, b in itertools.pairwise(edges)
    ]


def _axis_profiles(
    spans: Sequence[tuple[int, int]], mode: str
) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """The feather of every column (row), float64, with its `(length, ramp before, ramp after)`.

    Each ramp is as long as the overlap with the neighbouring column (row) on that side.
    """
    profiles = []
    for i, (_, length) in enumerate(spans):
        before = _overlap(spans[i - 1], spans[i]) if i > 0 else 0
        after = _overlap(spans[i], spans[i + 1]) if i < len(spans) - 1 else 0
        profile = _profile(length, before, after, mode).astype(np.float64)
        profile.flags.writeable = False
        profiles.append(((length, before, after), profile))
    return profiles


def _quantise(weights: np.ndarray, bits: int) -> np.ndarray:
    """Whole numbers >= 0 that sum to exactly `2**bits` along axis 0, proportional to `weights` (all > 0).

    Largest remainder: floor every scaled weight, then give the units still missing (0 to n for n weights,
    n only through float rounding) one each to the largest fractional parts, ties to the lower index.
    Every result is less than 1 away from its scaled weight. Returned as floats of `weights`' type.
    """
    total = 1 << bits
    scaled = weights * (total / weights.sum(axis=0))
    q = np.floor(scaled)
    fraction = scaled - q
    missing = total - q.sum(axis=0)
    for i in range(len(q)):
        # The rank of fraction i among all of them, largest first.
        rank = np.zeros(q.shape[1:], np.int16)
        for j in range(len(q)):
            if j != i:
                rank += (fraction[j] > fraction[i]) if j > i else (fraction[j] >= fraction[i])
        q[i] += rank < missing
    return q


def _blend_parts(
    parts: Sequence[tuple[_Cell, tuple[int, int], tuple[int, int]]],
    tiles: Sequence[np.ndarray],
    grid: Grid,
    image: np.ndarray,
) -> None:
    """Blend `(cell, rows, columns)` parts (a cell, or its part in a region) into `image` (module docstring)."""
    channels = image.shape[2]
    # Accumulator and product buffers; np.empty does not touch memory, so unused ones cost nothing.
    small = np.empty(_CHUNK_VALUES, np.uint16), np.empty(_CHUNK_VALUES, np.uint16)
    large = np.empty(_CHUNK_VALUES, np.uint32), np.empty(_CHUNK_VALUES, np.uint32)
    for cell, (y0, y1), (x0, x1) in parts:
        # Copies need no buffer: one band. Weighted cells: bands that fit the buffers.
        step = y1 - y0 if cell.kind in ("copy", "empty") else max(1, _CHUNK_VALUES // ((x1 - x0) * channels))
        for r0 in range(y0, y1, step):
            # A band of rows of the part: the output, the tiles' pixels and the cell's weights there.
            r1 = min(r0 + step, y1)
            out = image[r0:r1, x0:x1]
            wy, wx = slice(r0 - cell.ys[0], r1 - cell.ys[0]), slice(x0 - cell.xs[0], x1 - cell.xs[0])
            pixels = [
                tiles[t][r0 - rect.y : r1 - rect.y, x0 - rect.x : x1 - rect.x]
                for t in cell.tiles
                for rect in [grid.tiles[t]]
            ]
            if cell.kind == "empty":
                out.fill(0)
            elif cell.kind == "copy":
                out[...] = pixels[0]
            elif cell.kind in ("x", "y"):
                weights = [q[wx] for q in cell.qx] if cell.kind == "x" else [q[wy] for q in cell.qy]
                acc, tmp = _view(small[0], out.shape), _view(small[1], out.shape)
                _weighted_sum(pixels, weights, acc, tmp)
                _round_shift(acc, 8, out)
            elif cell.kind == "xy":
                # Along x within each row of tiles (exact uint16 sums), then along y in uint32.
                acc, tmp = _view(small[0], out.shape), _view(small[1], out.shape)
                total, part = _view(large[0], out.shape), _view(large[1], out.shape)
                qx = [q[wx] for q in cell.qx]
                for i, q_row in enumerate(cell.qy):
                    _weighted_sum(pixels[i * len(qx) : (i + 1) * len(qx)], qx, acc, tmp)
                    row_sum = part if i else total
                    np.copyto(row_sum, acc)  # widening a contiguous buffer, then a same-type product: faster
                    row_sum *= q_row[wy]
                    if i:
                        total += part
                _round_shift(total, 24, out)
            else:
                raw = np.stack([np.multiply.outer(p_y[wy], p_x[wx]) for p_y, p_x in cell.feather])
                q = _quantise(raw, 16).astype(np.uint32)
                weights = [np.repeat(qi, channels, axis=1).reshape(out.shape) for qi in q]
                total, part = _view(large[0], out.shape), _view(large[1], out.shape)
                _weighted_sum(pixels, weights, total, part)
                _round_shift(total, 16, out)


def _weighted_sum(
    pixels: Sequence[np.ndarray], weights: Sequence[np.ndarray], acc: np.ndarray, tmp: np.ndarray
) -> None:
    """`acc = sum(pixels[i] * weights[i])` in `acc`'s integer type (`tmp`: a buffer like `acc`)."""
    np.multiply(pixels[0], weights[0], out=acc)
    for p, q in zip(pixels[1:], weights[1:], strict=True):
        np.multiply(p, q, out=tmp)
        acc += tmp


def _round_shift(acc: np.ndarray, bits: int, out: np.ndarray) -> None:
    """`out = (acc + 2**(bits - 1)) >> bits`: the sum of `2**bits`-scaled values, rounded, into uint8 `out`."""
    acc += 1 << (bits - 1)
    np.right_shift(acc, bits, out=out, casting="unsafe")


def _view(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The first values of a flat buffer as an array of `shape`."""
    return buffer[: math.prod(shape)].reshape(shape)


def _blender(tiles: Sequence[np.ndarray], grid: Grid, mode: str, channels: int | None) -> Blender:
    """A Blender holding `tiles` (in index order), after checking their count."""
    if len(tiles) > len(grid.tiles):
        raise InvalidArgument("tiles", f"the grid has {len(grid.tiles)} tiles, got {len(tiles)}")
    if channels is None:
        channels = check_image("tiles[0]", tiles[0]).shape[2] if tiles else 3
    blender = Blender(grid, mode=mode, channels=channels)
    for index, tile in enumerate(tiles):
        blender.add(index, tile)
    return blender


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise InvalidArgument("mode", f"must be 'linear' or 'cosine', got {mode!r}")


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
