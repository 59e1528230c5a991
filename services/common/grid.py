"""Tile grids (shared by the tiling service and the gateway, which plans the same grids without a call):
the first-pass grid that covers an image, and the offset grid of the seam-fix pass.

First grid, along one axis of `size` pixels with tiles of `tile` pixels and `overlap` pixels of overlap:

    stride = tile - overlap
    n      = 1                                   if size <= tile (one tile of `size` pixels)
             ceil((size - overlap) / stride)     otherwise
    starts = 0, stride, 2*stride, ..., (n-2)*stride, size - tile

The last tile is snapped flush with the far edge, so every tile is full size and inside the image; the
last pair of tiles therefore overlaps by at least `overlap` (often more). The grid is the product of the
column starts (x) and the row starts (y); tiles are numbered row-major.

A seam of the first grid is the middle of the overlap between two neighbouring tiles along an axis:
`(end of tile i + start of tile i+1) // 2`.

Offset grid (seam-fix pass), with tiles of the same size. Along an axis with seams its positions are

    centred = seam - tile // 2       one tile centred on every seam of that axis
    edges   = 0 and size - tile      one tile flush with each image edge, added only when the other axis
                                     has seams too (to carry those seams' bands from edge to edge)

An axis without seams (one first-grid tile) has one position, spanning the same pixels. An offset tile is
kept where its column or its row is centred on a seam; a tile at an edge along both axes would hold no seam
and is left out (where neither axis has seams the grid is the one tile that covers the image). So an offset
grid need not cover every pixel (image corners stay uncovered) and `len(tiles)` may be smaller than
`rows * cols`; but it covers every pixel less than tile / 2 from a seam, along the seam's whole length: each
vertical seam is straddled by a column of tiles from the top edge to the bottom edge, each horizontal seam
by a row of tiles from the left edge to the right edge. It is meant for `blend.blend_seam_band`, which uses
it only inside bands around the seams.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from services.common.errors import InvalidArgument

__all__ = ["MIN_TILE_SIZE", "Grid", "TileRect", "plan_grid", "seams"]

MIN_TILE_SIZE = 16
"""The smallest tile width or height a plan accepts (smaller images still get one tile of their size)."""


@dataclass(frozen=True)
class TileRect:
    """One tile: its index (row-major), its row and column in the grid, and its rectangle in pixels."""

    index: int
    row: int
    col: int
    x: int
    y: int
    width: int
    height: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """`(rows, columns)` slices that cut this tile out of a (height, width, ...) array."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


@dataclass(frozen=True)
class Grid:
    """A tile plan for one image.

    `tile_width`, `tile_height` and `overlap` are the requested values; a tile is smaller only along an
    axis where the image itself is smaller. `rows` and `cols` count the distinct tile positions along each
    axis; for an offset grid some (row, col) pairs have no tile (see the module docstring).
    """

    image_width: int
    image_height: int
    tile_width: int
    tile_height: int
    overlap: int
    rows: int
    cols: int
    offset: bool
    tiles: tuple[TileRect, ...]

    @cached_property
    def col_spans(self) -> tuple[tuple[int, int], ...]:
        """`(x, width)` of every column, left to right."""
        spans = {t.col: (t.x, t.width) for t in self.tiles}
        return tuple(spans[c] for c in range(self.cols))

    @cached_property
    def row_spans(self) -> tuple[tuple[int, int], ...]:
        """`(y, height)` of every row, top to bottom."""
        spans = {t.row: (t.y, t.height) for t in self.tiles}
        return tuple(spans[r] for r in range(self.rows))


def plan_grid(
    image_width: int,
    image_height: int,
    tile_width: int,
    tile_height: int,
    overlap: int,
    offset: bool = False,
) -> Grid:
    """Plan the tiles of an image: the first-pass grid, or with `offset=True` the seam-fix offset grid.

    Args:
        image_width: image width in pixels, >= 1.
        image_height: image height in pixels, >= 1.
        tile_width: tile width in pixels, >= MIN_TILE_SIZE.
        tile_height: tile height in pixels, >= MIN_TILE_SIZE.
        overlap: pixels shared by neighbouring tiles, 0 <= overlap <= min(tile_width, tile_height) // 2, so
            that a tile's feathers towards two opposite neighbours do not cross (the snapped last tile may
            overlap more; `blend` handles that).
        offset: plan the offset grid of the seam-fix pass instead (see the module docstring).

    Raises:
        InvalidArgument: a value out of range; the error names it and the allowed range.
    """
    # 1. Check inputs.
    for field, value in (("image_width", image_width), ("image_height", image_height)):
        if value < 1:
            raise InvalidArgument(field, f"must be >= 1, got {value}")
    for field, value in (("tile_width", tile_width), ("tile_height", tile_height)):
        if value < MIN_TILE_SIZE:
            raise InvalidArgument(field, f"must be >= {MIN_TILE_SIZE}, got {value}")
    max_overlap = min(tile_width, tile_height) // 2
    if not 0 <= overlap <= max_overlap:
        raise InvalidArgument(
            "overlap", f"must be >= 0 and <= min(tile_width, tile_height) // 2 ({max_overlap}), got {overlap}"
        )

    # 2. Tile positions along each axis; a tile is never larger than the image.
    tw, th = min(tile_width, image_width), min(tile_height, image_height)
    xs = _axis_starts(image_width, tile_width, overlap)
    ys = _axis_starts(image_height, tile_height, overlap)

    # 3. The offset grid moves the tiles onto the first grid's seams.
    if offset:
        x_seams, y_seams = _axis_seams([(x, tw) for x in xs]), _axis_seams([(y, th) for y in ys])
        xs, x_centred = _offset_axis(image_width, tw, x_seams, edges=bool(y_seams))
        ys, y_centred = _offset_axis(image_height, th, y_seams, edges=bool(x_seams))
        keep = [(r, c) for r in range(len(ys)) for c in range(len(xs)) if y_centred[r] or x_centred[c]] or [
            (0, 0)
        ]
    else:
        keep = [(r, c) for r in range(len(ys)) for c in range(len(xs))]

    # 4. Number the tiles row-major.
    tiles = tuple(
        TileRect(index=i, row=r, col=c, x=xs[c], y=ys[r], width=tw, height=th)
        for i, (r, c) in enumerate(keep)
    )
    return Grid(
        image_width=image_width,
        image_height=image_height,
        tile_width=tile_width,
        tile_height=tile_height,
        overlap=overlap,
        rows=len(ys),
        cols=len(xs),
        offset=offset,
        tiles=tiles,
    )


def seams(grid: Grid) -> tuple[list[int], list[int]]:
    """The internal seams of a grid: x of every vertical seam and y of every horizontal seam.

    A seam is the middle of the overlap between two neighbouring columns (rows); a grid with one column
    (row) has no vertical (horizontal) seams. Meant for first-pass grids.
    """
    return _axis_seams(grid.col_spans), _axis_seams(grid.row_spans)


def _axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    """First-grid tile starts along one axis (module docstring); the last tile is flush with the edge."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    n = -(-(size - overlap) // stride)
    return [i * stride for i in range(n - 1)] + [size - tile]


def _axis_seams(spans: Sequence[tuple[int, int]]) -> list[int]:
    """Middle of the overlap of each pair of neighbouring `(start, length)` spans."""
    return [(a + length + b) // 2 for (a, length), (b, _) in itertools.pairwise(spans)]


def _offset_axis(size: int, tile: int, axis_seams: list[int], edges: bool) -> tuple[list[int], list[bool]]:
    """Offset-grid starts along one axis and, for each, whether that tile is centred on a seam.

    `edges` adds a tile flush with each end of the axis, needed to carry the other axis's seams from
    edge to edge. An axis without seams keeps its one spanning tile.
    """
    if not axis_seams:
        return [0], [False]
    # The clamp never binds on a first grid from `plan_grid`; it states that tiles stay inside the image.
    centred = {min(max(s - tile // 2, 0), size - tile) for s in axis_seams}
    positions = sorted(centred | ({0, size - tile} if edges else set()))
    return positions, [p in centred for p in positions]
