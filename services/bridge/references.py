"""Reference images: validated, then kept under unique names in a folder that is cleaned of old files."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.errors import ImageError
from tilesmith import images
from tilesmith.v1 import common_pb2

__all__ = ["ReferenceStore", "UploadedImage", "decode_upload"]

log = logging.getLogger(__name__)

_MIME = {
    common_pb2.IMAGE_ENCODING_PNG: ("image/png", ".png"),
    common_pb2.IMAGE_ENCODING_JPEG: ("image/jpeg", ".jpg"),
    common_pb2.IMAGE_ENCODING_WEBP: ("image/webp", ".webp"),
}


@dataclass(frozen=True)
class UploadedImage:
    """An image from a request, checked: its file bytes (PNG / JPEG / WebP) and its size."""

    data: bytes
    mime: str
    suffix: str
    width: int
    height: int


def decode_upload(
    message: common_pb2.Image, *, field: str, max_pixels: int, max_bytes: int, allow_raw: bool
) -> UploadedImage:
    """Validate an uploaded image by decoding it (tilesmith.images), and keep a file form of it.

    Encoded files are kept as sent; raw pixels (when `allow_raw`) are encoded as PNG.

    Raises:
        ImageError: Not PNG / JPEG / WebP (or raw, where allowed), or unreadable; names `field`.
        ImageTooLarge: Over `max_bytes` or `max_pixels`.
    """
    if message.encoding == common_pb2.IMAGE_ENCODING_RAW and not allow_raw:
        raise ImageError(f"{field}.encoding", "must be a PNG, JPEG or WebP file, got raw pixels")
    pixels: np.ndarray = images.to_array(message, max_pixels=max_pixels, max_bytes=max_bytes, field=field)
    height, width = pixels.shape[:2]
    if message.encoding == common_pb2.IMAGE_ENCODING_RAW:
        return UploadedImage(images.encode_bytes(pixels, "png"), "image/png", ".png", width, height)
    mime, suffix = _MIME[message.encoding]
    return UploadedImage(bytes(message.data), mime, suffix, width, height)


class ReferenceStore:
    """A folder of reference images under unique names; files older than `max_age` seconds are deleted."""

    def __init__(self, folder: Path, max_age: float) -> None:
        self.folder = folder
        self.max_age = max_age

    def save(self, image: UploadedImage) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"ref-{uuid.uuid4().hex}{image.suffix}"
        path.write_bytes(image.data)
        return path

    def clean(self, now: float | None = None) -> int:
        """Delete files older than `max_age`; returns how many were deleted."""
        if not self.folder.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - self.max_age
        deleted = 0
        for path in self.folder.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted += 1
            except FileNotFoundError:  # removed by the call that stored it
                continue
        if deleted:
            log.info("old reference images deleted", extra={"deleted": deleted})
        return deleted
