"""Colour correction of a re-drawn image against a reference: StableSR's AdaIN and wavelet colour fixes.

Both follow StableSR's `scripts/wavelet_color_fix.py`, in numpy and float32 on [0, 1] colour values. The
reference is first resized to the target's size (Lanczos). Only colour is corrected: a target's alpha
channel is returned untouched, and a reference's alpha only weights its statistics (AdaIN).

- AdaIN: per channel, the target is shifted and scaled to the reference's mean and standard deviation.
  Statistics are weighted by alpha where an image has one, so transparent pixels do not count.
- Wavelet: the image is split by repeated 3x3 blurs ([1, 2, 1] / 4 per axis, dilation 2**i at level i,
  edge padding) into high frequencies and a residual low frequency; the result is the target's high
  frequencies plus the reference's low frequency. The high-frequency levels sum to `image - low`, so the
  result is computed as `target - low(target) + low(reference)`.
"""

from __future__ import annotations

import numpy as np

from services.tiling.errors import InvalidArgument, check_image
from services.tiling.resize import resize

__all__ = ["MAX_WAVELET_LEVELS", "adain_color_fix", "wavelet_color_fix"]

_EPS = 1e-5
"""Added to the variance before the square root, as StableSR does."""

MAX_WAVELET_LEVELS = 12
"""The most blur levels `wavelet_color_fix` accepts (dilation 4096 at the last)."""


def adain_color_fix(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Match the per-channel mean and standard deviation of `target` to those of `reference`.

    Args:
        target: the image to correct, uint8 (height, width, 3 or 4).
        reference: the image with the right colours, uint8 (any height, width, 3 or 4).

    Returns:
        The corrected target, uint8, with the target's shape and alpha.
    """
    # 1. Check inputs and bring the reference to the target's size.
    target_rgb, target_weight, reference_rgb, reference_weight = _prepare(target, reference)

    # 2. Shift and scale each channel.
    t_mean, t_std = _mean_std(target_rgb, target_weight)
    r_mean, r_std = _mean_std(reference_rgb, reference_weight)
    fixed = (target_rgb - t_mean) / t_std * r_std + r_mean
    return _finish(fixed, target)


def wavelet_color_fix(target: np.ndarray, reference: np.ndarray, levels: int = 5) -> np.ndarray:
    """Keep the fine detail of `target` and take the low-frequency colour of `reference`.

    Args:
        target: the image to correct, uint8 (height, width, 3 or 4).
        reference: the image with the right colours, uint8 (any height, width, 3 or 4).
        levels: blur levels, 1..MAX_WAVELET_LEVELS; level i blurs with dilation 2**i, so the colour taken
            from the reference varies over about 2**(levels + 1) pixels.

    Returns:
        The corrected target, uint8, with the target's shape and alpha.
    """
    # 1. Check inputs and bring the reference to the target's size.
    if not 1 <= levels <= MAX_WAVELET_LEVELS:
        raise InvalidArgument("levels", f"must be >= 1 and <= {MAX_WAVELET_LEVELS}, got {levels}")
    target_rgb, _, reference_rgb, _ = _prepare(target, reference)

    # 2. Target's high frequencies plus reference's low frequency.
    fixed = target_rgb - _low_frequency(target_rgb, levels) + _low_frequency(reference_rgb, levels)
    return _finish(fixed, target)


def _prepare(
    target: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Check both images, resize the reference to the target, and split each into float32 RGB in [0, 1]
    and an alpha weight in [0, 1] (None without alpha)."""
    check_image("target", target)
    check_image("reference", reference)
    height, width = target.shape[:2]
    reference = resize(reference, width, height, "lanczos", max_pixels=width * height)
    return (*_split(target), *_split(reference))


def _split(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    rgb = image[:, :, :3].astype(np.float32)
    rgb /= 255
    alpha = image[:, :, 3].astype(np.float32) / 255 if image.shape[2] == 4 else None
    return rgb, alpha


def _mean_std(rgb: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (population, `+ _EPS` on the variance), alpha-weighted.

    A fully transparent image has no weight; its pixels then count equally.
    """
    pixels = rgb.reshape(-1, 3).astype(np.float64)
    weights = None if weight is None or not weight.any() else weight.reshape(-1).astype(np.float64)
    mean = np.average(pixels, axis=0, weights=weights)
    variance = np.average((pixels - mean) ** 2, axis=0, weights=weights)
    return mean.astype(np.float32), np.sqrt(variance + _EPS).astype(np.float32)


def _low_frequency(rgb: np.ndarray, levels: int) -> np.ndarray:
    """What is left after `levels` dilated 3x3 blurs (StableSR's `wavelet_decomposition` low frequency).

    Each level blurs along y into one buffer and along x back into the other; two buffers serve all levels.
    """
    along_y, low = np.empty_like(rgb), np.empty_like(rgb)
    _blur(rgb, 1, 0, out=along_y)
    _blur(along_y, 1, 1, out=low)
    for level in range(1, levels):
        _blur(low, 2**level, 0, out=along_y)
        _blur(along_y, 2**level, 1, out=low)
    return low


def _blur(image: np.ndarray, radius: int, axis: int, out: np.ndarray) -> None:
    """[1, 2, 1] / 4 along `axis` into `out`, taps `radius` pixels apart; beyond an edge the edge repeats."""
    x, y = np.moveaxis(image, axis, 0), np.moveaxis(out, axis, 0)
    np.multiply(x, 2, out=y)
    y[radius:] += x[:-radius]  # left tap inside the image
    y[:radius] += x[0]  # left tap in the padding
    y[:-radius] += x[radius:]  # right tap inside the image
    y[-radius:] += x[-1]  # right tap in the padding
    y *= 0.25


def _finish(rgb: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Back to uint8, with the target's alpha channel if it has one."""
    out = target.copy()
    out[:, :, :3] = np.clip(np.rint(rgb * 255), 0, 255)
    return out
