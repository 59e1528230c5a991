from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.tiling.colorfix import adain_color_fix, wavelet_color_fix

FIXES = [adain_color_fix, wavelet_color_fix]


def noisy(rng, shape, low, high) -> np.ndarray:
    return rng.integers(low, high, shape, dtype=np.uint8)


@pytest.mark.parametrize("fix", FIXES)
def test_colour_fix_moves_the_mean_colour_to_the_reference(rng, fix) -> None:
    target = noisy(rng, (64, 80, 3), 0, 100)
    target[:, :, 2] //= 2  # a blue cast that the reference does not have
    reference = noisy(rng, (32, 40, 3), 120, 250)  # smaller: resized to the target first

    out = fix(target, reference)

    assert out.shape == target.shape
    assert out.dtype == np.uint8
    before = np.abs(target.mean((0, 1)) - reference.mean((0, 1)))
    after = np.abs(out.mean((0, 1)) - reference.mean((0, 1)))
    assert (after < before / 10).all()


def test_adain_matches_mean_and_spread(rng) -> None:
    target = noisy(rng, (50, 50, 3), 0, 50)
    reference = noisy(rng, (50, 50, 3), 100, 200)

    out = adain_color_fix(target, reference).astype(float)

    np.testing.assert_allclose(out.mean((0, 1)), reference.mean((0, 1)), atol=1.5)
    np.testing.assert_allclose(out.std((0, 1)), reference.std((0, 1)), rtol=0.05)


def test_wavelet_keeps_the_targets_detail(rng) -> None:
    target = noisy(rng, (64, 64, 3), 60, 200)
    flat = np.full((64, 64, 3), 128, np.uint8)

    out = wavelet_color_fix(target, flat).astype(float)

    # High frequencies come from the target: the fine noise is still there.
    residual = out - target
    assert np.abs(np.diff(out, axis=1)).mean() > 0.8 * np.abs(np.diff(target.astype(float), axis=1)).mean()
    assert np.abs(residual).mean() < 20


@pytest.mark.parametrize("fix", FIXES)
def test_fixing_against_itself_changes_nothing(rng, fix) -> None:
    image = noisy(rng, (40, 30, 3), 0, 256)
    assert np.abs(fix(image, image).astype(int) - image).max() <= 1


@pytest.mark.parametrize("fix", FIXES)
def test_alpha_is_kept_from_the_target(rng, fix) -> None:
    target = noisy(rng, (20, 24, 4), 0, 256)
    reference = noisy(rng, (10, 12, 4), 0, 256)

    out = fix(target, reference)

    np.testing.assert_array_equal(out[:, :, 3], target[:, :, 3])


def test_adain_ignores_transparent_pixels(rng) -> None:
    reference = np.zeros((20, 20, 4), np.uint8)
    reference[:, :10] = (200, 200, 200, 255)
    reference[:, 10:] = (0, 0, 0, 0)  # transparent black does not darken the statistics
    target = noisy(rng, (20, 20, 3), 0, 60)

    out = adain_color_fix(target, reference)

    assert out.mean() > 150


def test_wavelet_levels_are_checked(rng) -> None:
    image = noisy(rng, (8, 8, 3), 0, 256)
    with pytest.raises(InvalidArgument, match="levels: must be >= 1 and <= 12, got 0"):
        wavelet_color_fix(image, image, levels=0)


def test_wavelet_on_an_image_smaller_than_the_blur(rng) -> None:
    target = noisy(rng, (3, 2, 3), 0, 256)
    assert wavelet_color_fix(target, target[:1, :1], levels=6).shape == (3, 2, 3)


def test_images_are_checked() -> None:
    with pytest.raises(InvalidArgument) as raised:
        adain_color_fix(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8))
    assert raised.value.field == "reference"
