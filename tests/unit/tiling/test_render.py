from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.common.grid import plan_grid
from services.tiling.render import PROCESSED_COLOR, SELECTED_COLOR, render_grid, render_tile_thumbnails

GREY = 128


def grey_image(width: int, height: int, channels: int = 3) -> np.ndarray:
    image = np.full((height, width, channels), GREY, np.uint8)
    if channels == 4:
        image[:, :, 3] = 255
    return image


def test_selected_tiles_are_blue_and_processed_tiles_green() -> None:
    grid = plan_grid(256, 256, 128, 128, 0)  # 2 x 2 tiles, no overlap
    out = render_grid(grey_image(256, 256), grid, selected={0}, processed={3})

    assert out.shape == (256, 256, 3)
    assert out.dtype == np.uint8
    r, g, b = out[64, 64].astype(int)  # middle of tile 0
    assert b > r + 40
    assert b > g + 20
    r, g, b = out[192, 192].astype(int)  # middle of tile 3
    assert g > r + 40
    assert g > b + 40
    assert tuple(out[64, 192]) == (GREY, GREY, GREY)  # tile 1: neither
    # Thick blue border around the selected tile.
    assert tuple(out[64, 1]) == SELECTED_COLOR
    assert tuple(out[126, 64]) == SELECTED_COLOR


def test_every_tile_is_outlined_and_labelled() -> None:
    grid = plan_grid(256, 256, 128, 128, 0)
    out = render_grid(grey_image(256, 256), grid)

    assert tuple(out[64, 128]) == (0, 0, 0)  # tile 1's left outline
    assert tuple(out[64, 129]) == (255, 255, 255)
    # A white-on-black label at each tile's top-left corner.
    for x, y in ((0, 0), (128, 0), (0, 128), (128, 128)):
        corner = out[y + 2 : y + 24, x + 2 : x + 30]
        assert (corner == 255).all(axis=2).any()
        assert (corner == 0).all(axis=2).any()


def test_large_images_are_downscaled_to_max_side() -> None:
    grid = plan_grid(2048, 1024, 512, 512, 64)
    out = render_grid(grey_image(2048, 1024), grid, selected={1}, processed={0, 2}, max_side=512)

    assert out.shape == (256, 512, 3)
    assert out.flags.writeable


def test_transparent_images_show_a_checkerboard() -> None:
    image = np.zeros((64, 64, 4), np.uint8)
    out = render_grid(image, plan_grid(64, 64, 64, 64, 0))

    inner = out[30:60, 30:60]
    assert len(np.unique(inner.reshape(-1, 3), axis=0)) == 2


def test_thumbnails_show_state_by_border_colour() -> None:
    grid = plan_grid(300, 200, 128, 128, 16)
    thumbs = render_tile_thumbnails(grey_image(300, 200, 4), grid, size=64, selected={0, 2}, processed={1, 2})

    assert len(thumbs) == len(grid.tiles)
    assert all(t.shape == (64, 64, 3) for t in thumbs)
    assert tuple(thumbs[0][32, 0]) == SELECTED_COLOR
    assert tuple(thumbs[1][32, 0]) == PROCESSED_COLOR
    assert tuple(thumbs[2][32, 0]) == SELECTED_COLOR
    assert tuple(thumbs[2][32, 3]) == PROCESSED_COLOR  # both: green inside the blue
    assert tuple(thumbs[3][32, 0]) not in (SELECTED_COLOR, PROCESSED_COLOR)
    assert tuple(thumbs[3][32, 32]) == (GREY, GREY, GREY)


def test_thumbnails_keep_the_tile_aspect() -> None:
    grid = plan_grid(40, 300, 64, 64, 8)  # tiles 40 wide, 64 high
    thumbs = render_tile_thumbnails(grey_image(40, 300), grid, size=128)
    assert {t.shape for t in thumbs} == {(128, 80, 3)}


@pytest.mark.parametrize("render", [render_grid, render_tile_thumbnails])
def test_unknown_tile_indices_are_refused(render) -> None:
    grid = plan_grid(64, 64, 32, 32, 0)
    with pytest.raises(InvalidArgument, match=r"selected: tile indices must lie in 0..3, got \[4, 9\]"):
        render(grey_image(64, 64), grid, selected={9, 4})
    with pytest.raises(InvalidArgument, match="processed: tile indices"):
        render(grey_image(64, 64), grid, processed={-1})


def test_render_sizes_are_checked() -> None:
    grid = plan_grid(64, 64, 32, 32, 0)
    with pytest.raises(InvalidArgument, match="max_side: must be >= 16, got 8"):
        render_grid(grey_image(64, 64), grid, max_side=8)
    with pytest.raises(InvalidArgument, match="size: must be >= 16, got 0"):
        render_tile_thumbnails(grey_image(64, 64), grid, size=0)
    with pytest.raises(InvalidArgument, match="image: is 32x64 but the grid is for 64x64"):
        render_grid(grey_image(32, 64), grid)
