from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import ImageTooLarge, InvalidArgument
from services.tiling.resize import resize


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (13, 7), (64, 48), (200, 150), (31, 300)])
def test_resize_gives_the_asked_size_up_and_down(rng, channels, width, height) -> None:
    image = rng.integers(0, 256, (48, 64, channels), dtype=np.uint8)

    out = resize(image, width, height)

    assert out.shape == (height, width, channels)
    assert out.dtype == np.uint8
    assert out.flags.writeable


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("method", ["lanczos", "bicubic", "bilinear", "nearest"])
def test_a_flat_image_stays_flat(channels, method) -> None:
    color = (200, 40, 90, 255)[:channels]
    image = np.empty((10, 12, channels), np.uint8)
    image[:] = color

    out = resize(image, 37, 5, method=method)

    assert (out == np.array(color, np.uint8)).all()


def test_transparent_colour_does_not_bleed_into_opaque_neighbours() -> None:
    image = np.zeros((4, 4, 4), np.uint8)
    image[:, :2] = (255, 0, 0, 0)  # fully transparent red
    image[:, 2:] = (0, 0, 255, 255)  # opaque blue

    for width, height in ((16, 16), (3, 3), (8, 2)):
        out = resize(image, width, height)
        visible = out[:, :, 3] > 0
        assert visible.any()
        # Blue stays blue: no red from the transparent pixels, however faint the pixel.
        assert (out[visible][:, 0] == 0).all()
        assert (out[visible][:, 2] == 255).all()


def test_nearly_transparent_colour_survives() -> None:
    image = np.zeros((8, 8, 4), np.uint8)
    image[:] = (10, 200, 30, 3)

    out = resize(image, 20, 20)

    assert (out == (10, 200, 30, 3)).all()


def test_nearest_doubles_pixel_art_exactly(rng) -> None:
    image = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)

    out = resize(image, 14, 10, method="nearest")

    np.testing.assert_array_equal(out, image.repeat(2, axis=0).repeat(2, axis=1))


def test_same_size_is_a_copy(rng) -> None:
    image = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    out = resize(image, 7, 5)
    np.testing.assert_array_equal(out, image)
    assert out is not image


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"width": 0}, InvalidArgument, "width: must be >= 1, got 0"),
        ({"height": -2}, InvalidArgument, "height: must be >= 1, got -2"),
        (
            {"method": "box"},
            InvalidArgument,
            "method: must be one of lanczos, bicubic, bilinear, nearest, got 'box'",
        ),
        (
            {"width": 1000, "max_pixels": 999 * 10},
            ImageTooLarge,
            "1000x10 = 10000 pixels is more than the cap of 9990",
        ),
    ],
)
def test_resize_refuses_bad_arguments(kwargs, error, message) -> None:
    args = {"image": np.zeros((4, 4, 3), np.uint8), "width": 10, "height": 10} | kwargs
    with pytest.raises(error) as raised:
        resize(**args)
    assert str(raised.value) == message


def test_resize_refuses_what_is_not_an_image() -> None:
    with pytest.raises(
        InvalidArgument, match=r"image: must be a uint8 array of shape \(height >= 1, width >= 1, 3 or 4\)"
    ):
        resize(np.zeros((4, 4), np.uint8), 2, 2)
