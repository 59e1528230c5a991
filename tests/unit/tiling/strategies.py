"""Hypothesis strategies shared by the tiling tests: small plans and images, so the suite stays fast."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from services.common.grid import MIN_TILE_SIZE, Grid, plan_grid


@st.composite
def plan_args(draw: st.DrawFn, max_image: int = 120, max_tile: int = 48) -> tuple[int, int, int, int, int]:
    """`(image_width, image_height, tile_width, tile_height, overlap)` accepted by `plan_grid`."""
    tile_w = draw(st.integers(MIN_TILE_SIZE, max_tile))
    tile_h = draw(st.integers(MIN_TILE_SIZE, max_tile))
    overlap = draw(st.integers(0, min(tile_w, tile_h) // 2))
    return draw(st.integers(1, max_image)), draw(st.integers(1, max_image)), tile_w, tile_h, overlap


@st.composite
def grids(draw: st.DrawFn, offset: bool = False, max_image: int = 120) -> Grid:
    return plan_grid(*draw(plan_args(max_image=max_image)), offset=offset)


@st.composite
def grids_with_images(draw: st.DrawFn, max_image: int = 120) -> tuple[Grid, np.ndarray]:
    """A first-pass grid and a random RGB or RGBA uint8 image of its size."""
    grid = draw(grids(max_image=max_image))
    return grid, random_image(draw(st.integers(0, 2**32 - 1)), grid, draw(st.sampled_from([3, 4])))


def random_image(seed: int, grid: Grid, channels: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (grid.image_height, grid.image_width, channels), dtype=np.uint8
    )
