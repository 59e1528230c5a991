"""The image codec: numpy / PIL <-> `tilesmith.v1.Image`, safe decoding, and chunk streams.

In memory an image is a numpy array of shape (height, width, channels) and dtype uint8, with 3
channels (RGB8) or 4 (RGBA8). On the wire it is a `common_pb2.Image`: raw pixels on the hot path,
PNG / JPEG / WebP at the edges, and a stream of `common_pb2.ImageChunk` when it may exceed a channel's
message limit.

    to_proto, encode_bytes          array or PIL image -> Image message, or file bytes
    to_array, to_pil, decode_bytes  Image message or file bytes -> array (or PIL image)
    split_alpha, join_alpha         RGBA <-> RGB plus an alpha plane
    iter_chunks                     Image -> ImageChunk stream
    ChunkAssembler, assemble,       ImageChunk stream -> Image, refusing oversized or malformed streams
    assemble_async

Decoding treats its input as untrusted: the byte count and the pixel count from the file's header are
capped before anything is decoded, only PNG, JPEG and WebP are opened at all, truncated or corrupt
files are refused, the EXIF orientation is applied, and every pixel mode becomes RGB8, or RGBA8 when
the file carries transparency. Errors are `tilesmith.errors` classes that name the field.

Arrays returned by `to_array` and `decode_bytes` are read-only: they share memory with the message or
with the decoder's output. Take `.copy()` of one to modify it.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import Literal

import numpy as np
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from PIL import Image, ImageOps, PngImagePlugin

from tilesmith.errors import ImageError, ImageTooLarge, InvalidArgument
from tilesmith.v1 import common_pb2

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "ChunkAssembler",
    "Encoding",
    "assemble",
    "assemble_async",
    "decode_bytes",
    "encode_bytes",
    "iter_array_chunks",
    "iter_chunks",
    "join_alpha",
    "split_alpha",
    "to_array",
    "to_pil",
    "to_proto",
]

DEFAULT_MAX_PIXELS = 16384 * 16384
"""Largest image decoded by default (268,435,456 pixels; 1 GiB as RGBA8)."""

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Largest encoded file or chunk stream accepted by default (256 MiB)."""

DEFAULT_CHUNK_BYTES = 1024 * 1024
"""Payload bytes per ImageChunk (1 MiB), well under gRPC's default 4 MiB message limit."""

Encoding = Literal["raw", "png", "jpeg", "webp"]

_ENCODINGS: dict[str, common_pb2.ImageEncoding.ValueType] = {
    "raw": common_pb2.IMAGE_ENCODING_RAW,
    "png": common_pb2.IMAGE_ENCODING_PNG,
    "jpeg": common_pb2.IMAGE_ENCODING_JPEG,
    "webp": common_pb2.IMAGE_ENCODING_WEBP,
}
# Encoding -> Pillow's format name, for the encodings that are files.
_FILE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_DECODABLE_FORMATS = ("PNG", "JPEG", "WEBP")
_PNG_IEND_CRC = zlib.crc32(b"IEND").to_bytes(4, "big")
_CHANNELS = {common_pb2.PIXEL_FORMAT_RGB8: 3, common_pb2.PIXEL_FORMAT_RGBA8: 4}
_PIXEL_FORMATS = {channels: pixel_format for pixel_format, channels in _CHANNELS.items()}

# 16-bit greyscale, as Pillow opens a 16-bit greyscale PNG.
_GREY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes Pillow converts to RGB / RGBA without losing meaning (unpremultiplying "RGBa", applying palettes).
# Absent on purpose: "I" and "F" (no fixed range to scale from), "LAB" and "HSV" (not RGB data).
_CONVERTIBLE_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr"}
)
# What Pillow raises for a file it cannot parse or decode; a few of its parsers let
# struct and zlib errors through unwrapped.
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


# ---------------------------------------------------------------------------------------------------
# Pixels -> message / file


def to_proto(
    img: Image.Image | np.ndarray,
    encoding: Encoding = "raw",
    quality: int = 95,
    lossless: bool = False,
) -> common_pb2.Image:
    """Pack an image into an Image message.

    Args:
        img: An array of shape (height, width, 3 or 4) and dtype uint8, or a PIL image in any mode
            `decode_bytes` handles (it is converted the same way: alpha kept, 16-bit scaled to 8-bit).
            Its EXIF orientation is not applied: decode files with `decode_bytes`.
        encoding: "raw" keeps the pixels as they are (RGB8 or RGBA8); "png", "jpeg" and "webp" encode
            them as a file. JPEG has no alpha channel, so an RGBA image is refused rather than
            flattened.
        quality: JPEG and lossy WebP quality, 0 to 100; ignored by raw and PNG.
        lossless: Encode WebP losslessly (RGB under fully transparent pixels is kept exactly).
            Raw and PNG are always lossless; JPEG refuses it.

    Returns:
        The message, with `width`, `height` and `format` describing the pixels.
    """
    # 1. Check the arguments
    if encoding not in _ENCODINGS:
        raise InvalidArgument("encoding", f"must be one of {', '.join(_ENCODINGS)}; got {encoding!r}")
    pixels = _as_pixels(img, "image")
    height, width, channels = pixels.shape

    # 2. Encode
    data = pixels.tobytes() if encoding == "raw" else encode_bytes(pixels, encoding, quality, lossless)
    return common_pb2.Image(
        encoding=_ENCODINGS[encoding],
        format=_PIXEL_FORMATS[channels],
        width=width,
        height=height,
        data=data,
    )


def encode_bytes(
    img: Image.Image | np.ndarray,
    encoding: Literal["png", "jpeg", "webp"],
    quality: int = 95,
    lossless: bool = False,
) -> bytes:
    """Encode an image as a PNG, JPEG or WebP file.

    The arguments are those of `to_proto`, whose file encodings this function writes.
    """
    # 1. Check the arguments
    file_format = _FILE_FORMATS.get(encoding)
    if file_format is None:
        raise InvalidArgument("encoding", f"must be one of {', '.join(_FILE_FORMATS)}; got {encoding!r}")
    if not 0 <= quality <= 100:
        raise InvalidArgument("quality", f"must be between 0 and 100, got {quality}")
    pixels = _as_pixels(img, "image")
    if file_format == "JPEG" and pixels.shape[2] == 4:
        raise InvalidArgument(
            "encoding",
            "JPEG has no alpha channel and this image is RGBA; encode it as png or webp, "
            "or drop the alpha first (split_alpha)",
        )
    if file_format == "JPEG" and lossless:
        raise InvalidArgument("lossless", "JPEG has no lossless mode; use png or webp")

    # 2. Encode
    options = {
        "PNG": {},
        # 4:4:4 chroma: the default 4:2:0 smears the hard colour edges of sprites and pixel art.
        "JPEG": {"quality": quality, "subsampling": 0},
        # exact: keep RGB under transparent pixels, which filtering and premultiplication later reveal.
        "WEBP": {"quality": quality, "lossless": lossless, "exact": True},
    }[file_format]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, file_format, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# Message / file -> pixels


def to_array(
    msg: common_pb2.Image,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str = "image",
) -> np.ndarray:
    """Unpack an Image message into a read-only array of shape (height, width, 3 or 4), dtype uint8.

    Args:
        msg: A raw image (width, height, format and exactly width * height * channels bytes), or an
            encoded one, whose file decides size and channels (see `decode_bytes`).
        max_pixels: Largest width * height accepted; a larger image raises ImageTooLarge before
            anything is decoded.
        max_bytes: Largest encoded file accepted.
        field: The request field the image came in, used in error messages (``image``, ``reference``).
    """
    # 1. Encoded files go through the safe decoder
    if msg.encoding in (
        common_pb2.IMAGE_ENCODING_PNG,
        common_pb2.IMAGE_ENCODING_JPEG,
        common_pb2.IMAGE_ENCODING_WEBP,
    ):
        return decode_bytes(msg.data, max_pixels=max_pixels, max_bytes=max_bytes, field=f"{field}.data")
    if msg.encoding != common_pb2.IMAGE_ENCODING_RAW:
        raise InvalidArgument(
            f"{field}.encoding",
            "must be IMAGE_ENCODING_RAW, _PNG, _JPEG or _WEBP, "
            f"got {_enum_name(common_pb2.ImageEncoding, msg.encoding)}",
        )

    # 2. Raw pixels: checked against the header and the caps, viewed without a copy
    return _raw_pixels(msg, msg.data, max_pixels, field)


def _raw_pixels(header: common_pb2.Image, data: bytes | bytearray, max_pixels: int, field: str) -> np.ndarray:
    """View the raw pixels `data` described by `header` (format, width, height) as an array."""
    channels = _CHANNELS.get(header.format)
    if channels is None:
        raise InvalidArgument(
            f"{field}.format",
            "must be PIXEL_FORMAT_RGB8 or PIXEL_FORMAT_RGBA8 for a raw image, "
            f"got {_enum_name(common_pb2.PixelFormat, header.format)}",
        )
    for name, value in (("width", header.width), ("height", header.height)):
        if value == 0:
            raise InvalidArgument(f"{field}.{name}", "must be at least 1 for a raw image, got 0")
    _check_pixel_count(header.width, header.height, max_pixels, field)
    expected = header.width * header.height * channels
    if len(data) != expected:
        raise InvalidArgument(
            f"{field}.data",
            f"holds {len(data)} bytes, but a {header.width}x{header.height} "
            f"{_enum_name(common_pb2.PixelFormat, header.format)} image needs exactly {expected}",
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(header.height, header.width, channels)


def to_pil(
    msg: common_pb2.Image,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str = "image",
) -> Image.Image:
    """Unpack an Image message into a PIL image in mode RGB or RGBA; the arguments are `to_array`'s."""
    return Image.fromarray(to_array(msg, max_pixels=max_pixels, max_bytes=max_bytes, field=field))


def decode_bytes(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    field: str = "image",
) -> np.ndarray:
    """Decode an untrusted PNG, JPEG or WebP file into a read-only RGB8 or RGBA8 array.

    Args:
        data: The file's bytes.
        max_pixels: Largest width * height accepted, checked against the file's header before any
            pixel is decoded (decompression bombs are refused with ImageTooLarge). WebP files are
            also held to Pillow's own limit, 2 * PIL.Image.MAX_IMAGE_PIXELS (179 MP by default).
        max_bytes: Largest file accepted, checked first.
        field: The request field the file came in, used in error messages.

    Returns:
        An array of shape (height, width, 3 or 4) and dtype uint8, upright (EXIF orientation applied).
        It has 4 channels when the file carries transparency (an alpha channel, a palette with alpha,
        or a transparent colour key), else 3. 16-bit samples keep their top 8 bits.

    Raises:
        ImageTooLarge: More bytes or pixels than allowed.
        ImageError: Empty, not PNG / JPEG / WebP, truncated, corrupt, or in an unsupported pixel mode.
    """
    # 1. Cap the bytes before looking at them
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{field}: the file has {len(data)} bytes, over the cap of {max_bytes}")
    if not data:
        raise ImageError(field, "is empty; expected a PNG, JPEG or WebP file")

    # 2. Identify the format by its signature; no other format's parser ever sees the bytes
    file_format = _sniff_format(data[:16])
    if file_format not in _DECODABLE_FORMATS:
        if file_format is None:
            found = f"not a recognised image file (it starts with {data[:8].hex(' ')})"
        else:
            found = f"a {file_format} file"
        raise ImageError(field, f"is {found}; only PNG, JPEG and WebP files are accepted")

    # 3. Read the header and cap the pixel count before decoding. Opening with the format's class
    # rather than Image.open skips Pillow's bomb check, which reads the process-wide
    # Image.MAX_IMAGE_PIXELS: max_pixels is the cap. WebP's decoder allocates its canvas as the file
    # is opened, so its size is read from the bitstream header first.
    if file_format == "WEBP":
        size = _webp_canvas_size(data[:30])
        if size is None:
            raise ImageError(field, "is not a readable WEBP file: it has no VP8, VP8L or VP8X header")
        _check_pixel_count(*size, max_pixels, field)
    opener, _ = Image.OPEN[file_format]
    try:
        img = opener(io.BytesIO(data), "")
    except Image.DecompressionBombError as exc:
        # WebP's opener also applies Pillow's own limit (2 * Image.MAX_IMAGE_PIXELS).
        raise ImageTooLarge(f"{field}: {exc}") from exc
    except _DECODER_ERRORS as exc:
        raise ImageError(field, f"is not a readable {file_format} file: {exc}") from exc
    _check_pixel_count(img.width, img.height, max_pixels, field)

    # 4. Decode, refusing truncated or corrupt files
    try:
        if file_format == "PNG":
            # load() checks neither chunk CRCs nor the end of the stream; verify() walks every chunk
            # to IEND checking both, and needs an image object of its own. It stops after IEND's
            # type, so read the chunk's (constant) CRC, the last four bytes of a complete file.
            stream = io.BytesIO(data)
            PngImagePlugin.PngImageFile(stream, "").verify()
            if stream.read(4) != _PNG_IEND_CRC:
                raise ImageError(field, "is a truncated PNG file: it ends inside its IEND chunk")
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
    except _DECODER_ERRORS as exc:
        raise ImageError(field, f"is a truncated or corrupt {file_format} file: {exc}") from exc
    # When other code in the process has set ImageFile.LOAD_TRUNCATED_IMAGES (training scripts often
    # do), Pillow pads a truncated JPEG with an end marker instead of failing, and records it here.
    if getattr(img, "_ended", False):
        raise ImageError(field, "is a truncated JPEG file: its data ends before the image does")

    # 5. Convert to RGB8 / RGBA8
    return _pil_to_pixels(img, field)


# ---------------------------------------------------------------------------------------------------
# Alpha


def split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an image into its RGB channels and its alpha plane.

    Args:
        arr: An array of shape (height, width, 3 or 4) and dtype uint8.

    Returns:
        ``(rgb, alpha)``: views of `arr` of shapes (height, width, 3) and (height, width); alpha is
        None when `arr` has no alpha channel.
    """
    pixels = _check_array(arr, "image")
    if pixels.shape[2] == 3:
        return pixels, None
    return pixels[..., :3], pixels[..., 3]


def join_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Put an alpha plane back on RGB pixels (the inverse of `split_alpha`).

    Args:
        rgb: An array of shape (height, width, 3) and dtype uint8.
        alpha: An array of shape (height, width) and dtype uint8, or None to return `rgb` as it is.

    Returns:
        A new array of shape (height, width, 4), or `rgb` itself when alpha is None.
    """
    pixels = _check_array(rgb, "rgb", channels=(3,))
    if alpha is None:
        return pixels
    if not isinstance(alpha, np.ndarray) or alpha.dtype != np.uint8 or alpha.shape != pixels.shape[:2]:
        raise InvalidArgument(
            "alpha", f"must be a uint8 array of shape {pixels.shape[:2]} (the RGB's), got {_describe(alpha)}"
        )
    return np.dstack((pixels, alpha))


# ---------------------------------------------------------------------------------------------------
# Chunk streams


def iter_chunks(
    msg: common_pb2.Image, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[common_pb2.ImageChunk]:
    """Split an Image into a stream of ImageChunk messages.

    The first chunk carries the header (the Image without its data) and `total_bytes`; every chunk
    carries the next run of at most `chunk_bytes` bytes. An empty payload still yields one chunk.

    Args:
        msg: The image to send.
        chunk_bytes: Payload bytes per chunk.
    """
    if chunk_bytes < 1:
        raise InvalidArgument("chunk_bytes", f"must be at least 1, got {chunk_bytes}")
    data = msg.data
    header = common_pb2.Image(encoding=msg.encoding, format=msg.format, width=msg.width, height=msg.height)
    yield common_pb2.ImageChunk(header=header, total_bytes=len(data), data=data[:chunk_bytes])
    for start in range(chunk_bytes, len(data), chunk_bytes):
        yield common_pb2.ImageChunk(data=data[start : start + chunk_bytes])


def iter_array_chunks(
    pixels: np.ndarray, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[common_pb2.ImageChunk]:
    """Stream an RGB8 / RGBA8 array as raw ImageChunk messages, without copying the whole image first.

    Equivalent to `iter_chunks(to_proto(pixels))`, but each chunk's bytes are read straight from the
    array, so a large image costs one copy per chunk rather than several whole-image copies.

    Args:
        pixels: An array of shape (height, width, 3 or 4) and dtype uint8.
        chunk_bytes: Payload bytes per chunk.
    """
    if chunk_bytes < 1:
        raise InvalidArgument("chunk_bytes", f"must be at least 1, got {chunk_bytes}")
    pixels = np.ascontiguousarray(_check_array(pixels, "image"))
    height, width, channels = pixels.shape
    header = common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_RAW,
        format=common_pb2.PIXEL_FORMAT_RGB8 if channels == 3 else common_pb2.PIXEL_FORMAT_RGBA8,
        width=width,
        height=height,
    )
    flat = memoryview(pixels).cast("B")
    yield common_pb2.ImageChunk(header=header, total_bytes=len(flat), data=bytes(flat[:chunk_bytes]))
    for start in range(chunk_bytes, len(flat), chunk_bytes):
        yield common_pb2.ImageChunk(data=bytes(flat[start : start + chunk_bytes]))


class ChunkAssembler:
    """Reassemble an Image from a stream of ImageChunk messages (see `iter_chunks`).

    Feed the chunks in order to `add`, then take the image from `result`. The size the first chunk
    announces is checked against `max_bytes` before anything is buffered; the pieces are kept as they
    arrive (memory follows what was sent, not what was announced) and joined once at the end.

    Args:
        max_bytes: Largest payload accepted; a larger announced size raises ImageTooLarge.
        field: The request field the chunks arrive in, used in error messages (``image``, ``reference``).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, field: str = "image") -> None:
        self._max_bytes = max_bytes
        self._field = field
        self._header: common_pb2.Image | None = None
        self._total = 0
        self._pieces: list[bytes] = []
        self._joined: bytes | None = None
        self._received = 0

    def add(self, chunk: common_pb2.ImageChunk) -> None:
        """Take the next chunk of the stream."""
        # 1. The first chunk opens the stream; only it carries a header
        if self._header is None:
            self._open(chunk)
        elif chunk.HasField("header"):
            raise InvalidArgument(
                f"{self._field}.header", "only the first chunk carries a header; this stream sent another"
            )

        # 2. Keep the bytes (read the field once: every access makes a copy). Memory follows what has
        #    arrived, never what a header announced: a 12-byte message cannot make the server commit 1 GiB.
        data = chunk.data
        end = self._received + len(data)
        if end > self._total:
            raise InvalidArgument(
                f"{self._field}.data",
                f"the stream carries more than the {self._total} bytes its header announced ({end} so far)",
            )
        self._pieces.append(data)
        self._received = end

    def result(self) -> common_pb2.Image:
        """The reassembled image, once every announced byte has arrived."""
        data = self._bytes()
        image = common_pb2.Image()
        image.CopyFrom(self._header)
        image.data = data
        return image

    def _bytes(self) -> bytes:
        """The payload, joined once (one copy) after the stream is complete."""
        self.check_complete()
        if self._joined is None:
            self._joined = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
            self._pieces = []
        return self._joined

    def to_array(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The reassembled image as pixels, like `to_array(self.result())` but without copying raw pixels.

        A raw image is viewed in place over the joined payload (read-only); an encoded one goes through
        the safe decoder.
        """
        data = self._bytes()
        assert self._header is not None
        if self._header.encoding == common_pb2.IMAGE_ENCODING_RAW:
            return _raw_pixels(self._header, data, max_pixels, self._field)
        return to_array(self.result(), max_pixels=max_pixels, max_bytes=self._max_bytes, field=self._field)

    def check_complete(self) -> None:
        """Raise InvalidArgument unless the stream opened and every announced byte arrived."""
        if self._header is None:
            raise InvalidArgument(self._field, "the stream is empty; its first chunk must carry the header")
        if self._received != self._total:
            raise InvalidArgument(
                self._field,
                f"the stream ended after {self._received} of the {self._total} bytes its header announced",
            )

    def _open(self, chunk: common_pb2.ImageChunk) -> None:
        if not chunk.HasField("header"):
            raise InvalidArgument(
                f"{self._field}.header",
                "the first chunk must carry the header (encoding, format, width, height) and total_bytes",
            )
        if chunk.header.data:
            raise InvalidArgument(
                f"{self._field}.header.data", "must be empty; the bytes travel in the chunks' data"
            )
        if chunk.total_bytes > self._max_bytes:
            raise ImageTooLarge(
                f"{self._field}: the stream announces {chunk.total_bytes} bytes, "
                f"over the cap of {self._max_bytes}"
            )
        self._header = common_pb2.Image()
        self._header.CopyFrom(chunk.header)
        self._total = chunk.total_bytes


def assemble(
    chunks: Iterable[common_pb2.ImageChunk], max_bytes: int = DEFAULT_MAX_BYTES, field: str = "image"
) -> common_pb2.Image:
    """Reassemble an Image from a whole chunk stream; the arguments are `ChunkAssembler`'s."""
    assembler = ChunkAssembler(max_bytes=max_bytes, field=field)
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.result()


async def assemble_async(
    chunks: AsyncIterable[common_pb2.ImageChunk], max_bytes: int = DEFAULT_MAX_BYTES, field: str = "image"
) -> common_pb2.Image:
    """Reassemble an Image from an async chunk stream (a grpc.aio request iterator, say)."""
    assembler = ChunkAssembler(max_bytes=max_bytes, field=field)
    async for chunk in chunks:
        assembler.add(chunk)
    return assembler.result()


# ---------------------------------------------------------------------------------------------------
# Helpers


def _as_pixels(img: Image.Image | np.ndarray, field: str) -> np.ndarray:
    """An RGB8 / RGBA8 array of `img`: an array is checked, a PIL image converted."""
    if isinstance(img, Image.Image):
        return _pil_to_pixels(img, field)
    return _check_array(img, field)


def _check_array(arr: object, field: str, channels: tuple[int, ...] = (3, 4)) -> np.ndarray:
    if (
        not isinstance(arr, np.ndarray)
        or arr.dtype != np.uint8
        or arr.ndim != 3
        or arr.shape[2] not in channels
        or arr.shape[0] == 0
        or arr.shape[1] == 0
    ):
        allowed = " or ".join(str(c) for c in channels)
        raise InvalidArgument(
            field, f"must be a uint8 array of shape (height, width, {allowed}), got {_describe(arr)}"
        )
    return arr


def _pil_to_pixels(img: Image.Image, field: str) -> np.ndarray:
    """Convert a PIL image to RGB8, or RGBA8 when it carries transparency."""
    # 1. 16-bit greyscale: Pillow's own conversion clips at 255, so keep the top byte here instead
    if img.mode in _GREY16_MODES:
        grey16 = np.asarray(img)
        grey = (grey16 >> 8).astype(np.uint8)
        rgb = np.dstack((grey, grey, grey))
        key = img.info.get("transparency")  # a PNG tRNS chunk: one 16-bit grey level is transparent
        if key is None:
            return rgb
        return np.dstack((rgb, np.where(grey16 == key, 0, 255).astype(np.uint8)))
    if img.mode not in _CONVERTIBLE_MODES:
        raise ImageError(
            field,
            f"has pixel mode {img.mode!r}, which has no unambiguous 8-bit RGB form; "
            f"supported modes: {', '.join(sorted(_CONVERTIBLE_MODES | _GREY16_MODES))}",
        )

    # 2. Premultiplied grey has no direct conversion to RGBA
    if img.mode == "La":
        img = img.convert("LA")

    # 3. Palette, grey, CMYK and YCbCr become RGB, or RGBA when they carry transparency
    target = "RGBA" if img.has_transparency_data else "RGB"
    if img.mode != target:
        img = img.convert(target)
    return np.asarray(img)


def _check_pixel_count(width: int, height: int, max_pixels: int, field: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{field}: {width}x{height} is {width * height} pixels, over the cap of {max_pixels}"
        )


def _sniff_format(prefix: bytes) -> str | None:
    """The format whose signature `prefix` starts with, by Pillow's registry; PNG, JPEG and WebP first."""
    Image.init()
    registry = dict(Image.OPEN)
    for name in (*_DECODABLE_FORMATS, *registry):
        _, accept = registry.get(name, (None, None))
        # Some signature checks read past the end of a short prefix.
        with contextlib.suppress(IndexError, struct.error):
            if accept is not None and accept(prefix) is True:
                return name
    return None


def _webp_canvas_size(header: bytes) -> tuple[int, int] | None:
    """Width and height from the first 30 bytes of a WebP file (RFC 9649), or None if absent."""
    kind = header[12:16]
    if kind == b"VP8 " and len(header) >= 30 and header[23:26] == b"\x9d\x01\x2a":  # lossy
        width, height = struct.unpack_from("<HH", header, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(header) >= 25 and header[20] == 0x2F:  # lossless
        bits = int.from_bytes(header[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(header) >= 30:  # extended: the canvas
        return int.from_bytes(header[24:27], "little") + 1, int.from_bytes(header[27:30], "little") + 1
    return None


def _enum_name(enum: EnumTypeWrapper, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:  # proto3 enums are open: an unknown number arrives as itself
        return str(value)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"
