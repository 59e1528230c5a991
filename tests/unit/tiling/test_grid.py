from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.common.grid import Grid, plan_grid, seams
from tests.unit.tiling.strategies import grids, plan_args

FAST = settings(max_examples=80, deadline=None)


def coverage(grid: Grid) -> np.ndarray:
    """How many tiles cover each pixel."""
    count = np.zeros((grid.image_height, grid.image_width), np.int32)
    for t in grid.tiles:
        count[t.slices] += 1
    return count


def expected_count(size: int, tile: int, overlap: int) -> int:
    return 1 if size <= tile else math.ceil((size - overlap) / (tile - overlap))


@FAST
@given(plan_args())
def test_first_grid_covers_every_pixel_with_full_size_tiles_inside_the_image(args) -> None:
    width, height, tile_w, tile_h, overlap = args
    grid = plan_grid(width, height, tile_w, tile_h, overlap)

    assert coverage(grid).min() >= 1
    for t in grid.tiles:
        assert (t.width, t.height) == (min(tile_w, width), min(tile_h, height))
        assert t.x >= 0
        assert t.x + t.width <= width
        assert t.y >= 0
        assert t.y + t.height <= height


@FAST
@given(plan_args())
def test_first_grid_counts_and_row_major_numbering(args) -> None:
    width, height, tile_w, tile_h, overlap = args
    grid = plan_grid(width, height, tile_w, tile_h, overlap)

    assert grid.cols == expected_count(width, tile_w, overlap)
    assert grid.rows == expected_count(height, tile_h, overlap)
    assert len(grid.tiles) == grid.rows * grid.cols
    for i, t in enumerate(grid.tiles):
        assert (t.index, t.row, t.col) == (i, i // grid.cols, i % grid.cols)


@FAST
@given(plan_args())
def test_tiles_step_by_the_stride_and_the_last_one_is_flush_with_the_edge(args) -> None:
    width, height, tile_w, tile_h, overlap = args
    grid = plan_grid(width, height, tile_w, tile_h, overlap)

    for spans, size, tile in ((grid.col_spans, width, tile_w), (grid.row_spans, height, tile_h)):
        starts = [start for start, _ in spans]
        if len(starts) == 1:
            assert spans == ((0, min(size, tile)),)
            continue
        assert starts[:-1] == [i * (tile - overlap) for i in range(len(starts) - 1)]
        assert starts[-1] == size - tile
        # Every neighbouring pair overlaps by at least `overlap`, the snapped last pair by more.
        assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
        assert starts[-1] > starts[-2]


@FAST
@given(plan_args())
def test_seams_lie_inside_the_overlap_of_neighbouring_tiles(args) -> None:
    grid = plan_grid(*args)
    xs, ys = seams(grid)

    assert len(xs) == grid.cols - 1
    assert len(ys) == grid.rows - 1
    for positions, spans in ((xs, grid.col_spans), (ys, grid.row_spans)):
        for s, (a, length), (b, _) in zip(positions, spans, spans[1:], strict=False):
            assert b <= s <= a + length


@FAST
@given(plan_args())
def test_offset_tiles_are_full_size_inside_the_image_and_centred_on_seams(args) -> None:
    width, height, tile_w, tile_h, _ = args
    first = plan_grid(*args)
    offset = plan_grid(*args, offset=True)
    xs, ys = seams(first)

    assert offset.offset
    assert len({(t.row, t.col) for t in offset.tiles}) == len(offset.tiles) <= offset.rows * offset.cols
    centres_x = {t.x + t.width // 2 for t in offset.tiles}
    centres_y = {t.y + t.height // 2 for t in offset.tiles}
    assert set(xs) <= centres_x
    assert set(ys) <= centres_y
    for t in offset.tiles:
        assert (t.width, t.height) == (min(tile_w, width), min(tile_h, height))
        assert t.x >= 0
        assert t.x + t.width <= width
        assert t.y >= 0
        assert t.y + t.height <= height
        # Each offset tile sits on a seam along at least one axis (or is the one tile of a seamless grid).
        assert t.x + t.width // 2 in xs or t.y + t.height // 2 in ys or len(offset.tiles) == 1


@FAST
@given(plan_args())
def test_offset_tiles_straddle_every_seam_along_its_whole_length(args) -> None:
    first = plan_grid(*args)
    offset = plan_grid(*args, offset=True)
    xs, ys = seams(first)
    covered = coverage(offset) > 0

    for s in xs:
        band = first.tile_width // 4
        # One offset column holds the whole band [s - band, s + band] ...
        assert any(x <= s - band and s + band < x + w for x, w in offset.col_spans)
        # ... and the band is covered from the top edge to the bottom edge.
        assert covered[:, s - band : s + band + 1].all()
    for s in ys:
        band = first.tile_height // 4
        assert any(y <= s - band and s + band < y + h for y, h in offset.row_spans)
        assert covered[s - band : s + band + 1, :].all()


@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 30), (48, 48), (20, 200)])
def test_an_image_smaller_than_a_tile_gets_one_tile_of_its_own_size_along_that_axis(width, height) -> None:
    first = plan_grid(width, height, 48, 48, 8)
    offset = plan_grid(width, height, 48, 48, 8, offset=True)

    assert all(t.width == min(48, width) and t.height == min(48, height) for t in first.tiles)
    assert coverage(first).min() >= 1
    if height <= 48:
        assert first.tiles == offset.tiles == ((first.tiles[0]),)
        assert seams(first) == ([], [])
    else:
        assert first.cols == offset.cols == 1
        assert all(t.width == width for t in offset.tiles)


def test_a_4k_plan_by_hand() -> None:
    first = plan_grid(7680, 4320, 1024, 1024, 128)
    offset = plan_grid(7680, 4320, 1024, 1024, 128, offset=True)

    assert (first.cols, first.rows) == (9, 5)
    assert [x for x, _ in first.col_spans] == [0, 896, 1792, 2688, 3584, 4480, 5376, 6272, 6656]
    assert [y for y, _ in first.row_spans] == [0, 896, 1792, 2688, 3296]
    assert seams(first) == ([960, 1856, 2752, 3648, 4544, 5440, 6336, 6976], [960, 1856, 2752, 3504])
    # 8 seam-centred columns plus the two edge columns, 4 seam-centred rows plus the two edge rows; the
    # four corner tiles hold no seam.
    assert (offset.cols, offset.rows) == (10, 6)
    assert len(offset.tiles) == 10 * 6 - 4
    assert [x for x, _ in offset.col_spans] == [0, 448, 1344, 2240, 3136, 4032, 4928, 5824, 6464, 6656]


def test_offset_grid_of_one_row() -> None:
    offset = plan_grid(1000, 300, 512, 512, 64, offset=True)

    assert [(t.x, t.y, t.width, t.height) for t in offset.tiles] == [(224, 0, 512, 300), (468, 0, 512, 300)]


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"image_width": 0}, "image_width", "got 0"),
        ({"image_height": -3}, "image_height", "got -3"),
        ({"tile_width": 15}, "tile_width", ">= 16, got 15"),
        ({"tile_height": 8}, "tile_height", ">= 16, got 8"),
        ({"overlap": 33}, "overlap", "(32), got 33"),
        ({"overlap": -1}, "overlap", "got -1"),
        ({"tile_height": 40, "overlap": 21}, "overlap", "(20), got 21"),
    ],
)
def test_invalid_plans_name_the_field_the_value_and_the_range(kwargs, field, shown) -> None:
    args = {"image_width": 100, "image_height": 100, "tile_width": 64, "tile_height": 64, "overlap": 8}
    with pytest.raises(InvalidArgument) as raised:
        plan_grid(**(args | kwargs))
    assert raised.value.field == field
    assert shown in str(raised.value)


def test_overlap_of_half_a_tile_is_allowed() -> None:
    grid = plan_grid(100, 100, 32, 32, 16)
    assert coverage(grid).min() >= 1


@FAST
@given(grids(offset=True))
def test_spans_agree_with_the_tiles(grid) -> None:
    for t in grid.tiles:
        assert grid.col_spans[t.col] == (t.x, t.width)
        assert grid.row_spans[t.row] == (t.y, t.height)


@given(st.integers(17, 2000), st.integers(16, 1024))
@settings(max_examples=60, deadline=None)
def test_one_axis_long_plans(size, tile) -> None:
    overlap = tile // 4
    grid = plan_grid(size, 8, tile, tile, overlap)
    assert coverage(grid).min() >= 1
    assert grid.cols == expected_count(size, tile, overlap)
