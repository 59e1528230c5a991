from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.common.grid import Grid, plan_grid, seams
from services.tiling.blend import Blender, blend_seam_band, blend_tiles, feather_weights, split_tiles
from tests.unit.tiling.strategies import grids_with_images, plan_args, random_image

FAST = settings(max_examples=60, deadline=None)
MODES = st.sampled_from(["linear", "cosine"])


# --- split and blend -----------------------------------------------------------------------------------


@FAST
@given(grids_with_images(), MODES)
def test_blending_the_unchanged_tiles_of_any_plan_gives_back_the_image_bit_for_bit(grid_image, mode) -> None:
    grid, image = grid_image
    out = blend_tiles(split_tiles(image, grid), grid, mode=mode)

    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, image)


@FAST
@given(plan_args(), MODES, st.sampled_from([3, 4]), st.integers(0, 2**32 - 1))
def test_blending_the_unchanged_tiles_of_an_offset_grid_gives_back_every_covered_pixel(
    args, mode, channels, seed
) -> None:
    grid = plan_grid(*args, offset=True)
    image = random_image(seed, grid, channels)
    covered = np.zeros(image.shape[:2], bool)
    for t in grid.tiles:
        covered[t.slices] = True

    out = blend_tiles(split_tiles(image, grid), grid, mode=mode)

    np.testing.assert_array_equal(out[covered], image[covered])
    assert not out[~covered].any()


@FAST
@given(grids_with_images(), MODES, st.randoms(use_true_random=False))
def test_blender_takes_tiles_in_any_order_and_gives_the_same_pixels(grid_image, mode, random) -> None:
    grid, image = grid_image
    rng = np.random.default_rng(random.getrandbits(32))
    # Re-drawn tiles differ from each other where they overlap.
    tiles = [rng.integers(0, 256, t.shape, dtype=np.uint8) for t in split_tiles(image, grid)]
    order = list(range(len(tiles)))
    random.shuffle(order)

    blender = Blender(grid, mode=mode, channels=image.shape[2])
    for i in order:
        blender.add(i, tiles[i])

    np.testing.assert_array_equal(blender.result(), blend_tiles(tiles, grid, mode=mode))


@FAST
@given(grids_with_images(), MODES)
def test_each_pixel_is_a_weighted_mean_of_the_tiles_over_it(grid_image, mode) -> None:
    grid, image = grid_image
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, t.shape, dtype=np.uint8) for t in split_tiles(image, grid)]
    low = np.full(image.shape, 255, np.uint8)
    high = np.zeros(image.shape, np.uint8)
    count = np.zeros(image.shape[:2], np.int32)
    for rect, tile in zip(grid.tiles, tiles, strict=True):
        np.minimum(low[rect.slices], tile, out=low[rect.slices])
        np.maximum(high[rect.slices], tile, out=high[rect.slices])
        count[rect.slices] += 1

    out = blend_tiles(tiles, grid, mode=mode)

    assert (low <= out).all()
    assert (out <= high).all()
    # Where a single tile covers a pixel, the pixel is that tile's.
    np.testing.assert_array_equal(out[count == 1], low[count == 1])


def reference_blend(tiles: list[np.ndarray], grid: Grid, mode: str) -> np.ndarray:
    """The blend by its definition, slow and simple, unrounded: the float64 mean of the tiles weighted by
    their full 2-D feathers (ramps as long as the real overlap with the neighbouring column or row); 0 where
    no tile is."""

    def overlap(spans: tuple[tuple[int, int], ...], a: int, b: int) -> int:
        if not (0 <= a < len(spans) and 0 <= b < len(spans)):
            return 0
        return max(0, spans[a][0] + spans[a][1] - spans[b][0])

    shape = (grid.image_height, grid.image_width)
    total = np.zeros((*shape, tiles[0].shape[2]))
    weight = np.zeros((*shape, 1))
    cols, rows = grid.col_spans, grid.row_spans
    for t, tile in zip(grid.tiles, tiles, strict=True):
        ramps = (
            overlap(cols, t.col - 1, t.col),  # left
            overlap(rows, t.row - 1, t.row),  # top
            overlap(cols, t.col, t.col + 1),  # right
            overlap(rows, t.row, t.row + 1),  # bottom
        )
        w = feather_weights(t.height, t.width, *ramps, mode=mode).astype(np.float64)[:, :, None]
        total[t.slices] += w * tile
        weight[t.slices] += w
    return total / np.where(weight == 0, 1, weight)


@FAST
@given(plan_args(), st.booleans(), MODES, st.sampled_from([3, 4]), st.integers(0, 2**32 - 1))
def test_blending_changed_tiles_matches_a_float_reference_within_one_level(
    args, offset, mode, channels, seed
) -> None:
    """The fixed-point blend is the normalised feathered mean, off by at most 1 of 255 from exact float."""
    grid = plan_grid(*args, offset=offset)
    rng = np.random.default_rng(seed)
    # Tiles that disagree wherever they overlap, like re-drawn ones.
    tiles = [rng.integers(0, 256, (t.height, t.width, channels), dtype=np.uint8) for t in grid.tiles]

    out = blend_tiles(tiles, grid, mode=mode)

    exact = reference_blend(tiles, grid, mode)
    assert np.abs(out - np.rint(exact)).max() <= 1
    # Rounded, not truncated: over many blended values the errors average out (ties, which round up, apart).
    fraction = exact - np.floor(exact)
    errors = (out - exact)[(fraction != 0) & (np.abs(fraction - 0.5) > 1e-9)]
    if errors.size >= 300:
        assert abs(errors.mean()) < 0.2


def test_a_large_overlap_blends_smoothly() -> None:
    """Two flat tiles meet in a ramp with no step larger than the colour difference spread over it."""
    grid = plan_grid(96, 16, 64, 64, 32)
    tiles = [np.zeros((16, 64, 3), np.uint8), np.full((16, 64, 3), 255, np.uint8)]

    row = blend_tiles(tiles, grid, mode="linear")[0, :, 0].astype(int)

    assert (row[:32] == 0).all()
    assert (row[64:] == 255).all()
    assert (np.diff(row) >= 0).all()
    assert np.diff(row).max() <= 255 / 32 + 1


# --- feather ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["linear", "cosine"])
def test_feather_is_positive_flat_at_borders_and_ramps_towards_neighbours(mode) -> None:
    w = feather_weights(32, 40, 0, 8, 10, 0, mode=mode)

    assert w.dtype == np.float32
    assert w.shape == (32, 40)
    assert (w > 0).all()
    assert (w <= 1).all()
    assert (w[8:, :30] == 1).all()  # no ramp on the left and at the bottom
    assert (np.diff(w[0, 30:]) < 0).all()  # falls towards the right neighbour
    assert (np.diff(w[:8, 0]) > 0).all()  # rises from the top neighbour
    if mode == "linear":
        np.testing.assert_allclose(w[:8, 0], (np.arange(8) + 0.5) / 8, rtol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "cosine"])
def test_rise_and_fall_over_the_same_overlap_add_up_to_one(mode) -> None:
    rise = feather_weights(1, 24, 24, 0, 0, 0, mode=mode)[0]
    fall = feather_weights(1, 24, 0, 0, 24, 0, mode=mode)[0]

    np.testing.assert_allclose(rise + fall, 1, rtol=1e-6)


def test_feather_rejects_a_ramp_longer_than_the_tile() -> None:
    with pytest.raises(
        InvalidArgument, match=r"ramp_right: must be >= 0 and <= the tile side \(40\), got 41"
    ):
        feather_weights(32, 40, 0, 0, 41, 0)


# --- validation ------------------------------------------------------------------------------------------


def test_blend_validation_names_the_tile() -> None:
    grid = plan_grid(100, 60, 32, 32, 8)
    image = random_image(1, grid, 3)
    tiles = split_tiles(image, grid)

    with pytest.raises(InvalidArgument) as raised:
        blend_tiles([*tiles[:3], tiles[3][:, :-1], *tiles[4:]], grid)
    assert raised.value.field == "tiles[3]"
    assert "shape (32, 32, 3)" in str(raised.value)

    with pytest.raises(InvalidArgument) as raised:
        blend_tiles(tiles[:-2], grid)
    assert raised.value.field == "tiles"
    assert f"missing indices [{len(tiles) - 2}, {len(tiles) - 1}]" in str(raised.value)

    with pytest.raises(InvalidArgument, match="tiles: the grid has"):
        blend_tiles([*tiles, tiles[0]], grid)

    with pytest.raises(InvalidArgument, match="mode: must be 'linear' or 'cosine', got 'gauss'"):
        blend_tiles(tiles, grid, mode="gauss")

    with pytest.raises(InvalidArgument, match=r"tiles\[0\]: must be a uint8 array"):
        blend_tiles([t.astype(np.float32) for t in tiles], grid)


def test_blender_refuses_duplicates_and_unknown_indices() -> None:
    grid = plan_grid(64, 64, 32, 32, 8)
    blender = Blender(grid, channels=4)
    tile = np.zeros((32, 32, 4), np.uint8)
    blender.add(2, tile)

    with pytest.raises(InvalidArgument, match=r"tiles\[2\]: tile index 2 was given twice"):
        blender.add(2, tile)
    with pytest.raises(InvalidArgument, match=r"tiles\[9\]: tile index must lie in 0..8"):
        blender.add(9, tile)
    with pytest.raises(InvalidArgument, match="channels: must be 3"):
        Blender(grid, channels=2)
    assert blender.missing == [0, 1, 3, 4, 5, 6, 7, 8]


def test_split_checks_the_image_against_the_grid() -> None:
    grid = plan_grid(64, 48, 32, 32, 8)
    with pytest.raises(InvalidArgument, match="image: is 48x64 but the grid is for 64x48"):
        split_tiles(np.zeros((64, 48, 3), np.uint8), grid)


# --- seam band -------------------------------------------------------------------------------------------


def seam_fix(args, band_width, mode="cosine", channels=3):
    """Seam-fix a random first pass with offset tiles cut from another random image."""
    first = plan_grid(*args)
    offset = plan_grid(*args, offset=True)
    base = random_image(1, first, channels)
    fresh = random_image(2, first, channels)
    result = blend_seam_band(base, split_tiles(fresh, offset), offset, first, band_width, mode)
    return first, base, fresh, result


@FAST
@given(plan_args(max_image=160), st.data())
def test_seam_band_keeps_the_base_outside_and_the_offset_pass_at_full_weight(args, data) -> None:
    band_width = data.draw(st.integers(2, min(args[2], args[3])))
    mode = data.draw(MODES)
    _, base, fresh, result = seam_fix(args, band_width, mode, channels=data.draw(st.sampled_from([3, 4])))
    mask = result.mask

    assert mask.shape == base.shape[:2]
    assert (mask >= 0).all()
    assert (mask <= 1).all()
    np.testing.assert_array_equal(result.image[mask == 0], base[mask == 0])
    # The offset tiles were cut from `fresh`, so their blend is `fresh` wherever they reach.
    np.testing.assert_array_equal(result.image[mask == 1], fresh[mask == 1])
    between = (mask > 0) & (mask < 1)
    low, high = np.minimum(base, fresh)[between], np.maximum(base, fresh)[between]
    assert ((low <= result.image[between]) & (result.image[between] <= high)).all()
    assert result.touched_fraction == pytest.approx(float((mask > 0).mean()))


def test_seam_band_follows_the_seams() -> None:
    args = (400, 300, 64, 64, 16)
    first, _, _, result = seam_fix(args, band_width=16)
    xs, ys = seams(first)

    assert 0 < result.touched_fraction < 0.6
    for x in xs:
        assert (result.mask[:, x] == 1).all()  # the plateau sits on the seam, top to bottom
        assert (result.mask[:, x - 8 : x + 8] > 0).all()
    for y in ys:
        assert (result.mask[y, :] == 1).all()
    # Away from every seam the mask is 0.
    far_x = [x for x in range(400) if min(abs(x - s) for s in xs) > 8]
    far_y = [y for y in range(300) if min(abs(y - s) for s in ys) > 8]
    assert (result.mask[np.ix_(far_y, far_x)] == 0).all()


def test_seam_band_profile_has_a_plateau_of_half_the_band() -> None:
    _, _, _, result = seam_fix((100, 20, 64, 64, 16), band_width=32, mode="linear")
    row = result.mask[0]
    seam = seams(plan_grid(100, 20, 64, 64, 16))[0][0]

    inside = np.flatnonzero(row > 0)
    assert (inside[0], inside[-1]) == (seam - 16, seam + 15)
    assert (row[seam - 8 : seam + 8] == 1).all()
    np.testing.assert_allclose(row[seam - 16 : seam - 8], (np.arange(8) + 0.5) / 8, rtol=1e-6)


def test_no_seams_leaves_the_base_alone() -> None:
    first, base, _, result = seam_fix((40, 30, 64, 64, 16), band_width=16)

    assert seams(first) == ([], [])
    np.testing.assert_array_equal(result.image, base)
    assert result.touched_fraction == 0.0
    assert not result.mask.any()


def test_seam_band_validation() -> None:
    args = (200, 100, 64, 64, 16)
    first, offset = plan_grid(*args), plan_grid(*args, offset=True)
    base = random_image(1, first, 3)
    tiles = split_tiles(base, offset)

    for band_width in (1, 65):
        with pytest.raises(InvalidArgument) as raised:
            blend_seam_band(base, tiles, offset, first, band_width)
        assert raised.value.field == "band_width"
        assert f"<= the offset tile size (64), got {band_width}" in str(raised.value)
    with pytest.raises(InvalidArgument, match="offset_grid: must be the offset grid"):
        blend_seam_band(base, split_tiles(base, first), first, first, 16)
    with pytest.raises(InvalidArgument, match="offset_grid: must be the offset grid"):
        blend_seam_band(base, tiles, plan_grid(200, 100, 48, 48, 16, offset=True), first, 16)
    with pytest.raises(InvalidArgument, match="tiles: missing indices"):
        blend_seam_band(base, tiles[:-1], offset, first, 16)
