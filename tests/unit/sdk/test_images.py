"""The image codec: round trips, safe decoding of untrusted files, pixel modes, EXIF, alpha."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, WebPImagePlugin

from tilesmith import images
from tilesmith.errors import ImageError, ImageTooLarge, InvalidArgument
from tilesmith.v1 import common_pb2

# --------------------------------------------------------------------------------------------------
# Helpers: images and files made here, by Pillow or by hand


def _encode(img: Image.Image | np.ndarray, file_format: str, **options: object) -> bytes:
    """Bytes of `img` saved by Pillow, independently of the codec under test."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buffer = io.BytesIO()
    img.save(buffer, file_format, **options)
    return buffer.getvalue()


def _blocks(height: int = 16, width: int = 24, channels: int = 3) -> np.ndarray:
    """8x8 blocks of distinct flat colours: survives JPEG almost exactly, and shows any rotation."""
    rng = np.random.default_rng(5)
    grid = rng.integers(0, 256, (height // 8, width // 8, channels), dtype=np.uint8)
    return np.repeat(np.repeat(grid, 8, axis=0), 8, axis=1)


def _smooth(height: int, width: int, channels: int) -> np.ndarray:
    """A gradient with a little noise: typical of what lossy codecs are meant for."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // width), (y * 255 // height), ((x + y) * 255 // (width + height)), 200 + 0 * x]
    noise = np.random.default_rng(3).integers(0, 4, (height, width, channels))
    return np.clip(np.dstack(planes[:channels]) + noise, 0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes, extra: bytes = b"") -> bytes:
    """A PNG written chunk by chunk, for what Pillow cannot write (16-bit RGB, bombs, bad CRCs)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + extra
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _rows(samples: np.ndarray) -> bytes:
    """Scanlines of big-endian samples, each behind filter byte 0, compressed."""
    rows = samples.reshape(samples.shape[0], -1).astype(">u2" if samples.dtype == np.uint16 else np.uint8)
    return zlib.compress(b"".join(b"\x00" + row.tobytes() for row in rows))


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.fixture
def rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.fixture
def rgba(rng: np.random.Generator) -> np.ndarray:
    pixels = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    pixels[:5, :, 3] = 0  # fully transparent rows, whose RGB lossless WebP must keep too
    return pixels


def test_public_names_are_pinned() -> None:
    assert sorted(images.__all__) == sorted(
        [
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
    )


# --------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize(
    ("encoding", "options", "expected_encoding"),
    [
        ("raw", {}, common_pb2.IMAGE_ENCODING_RAW),
        ("png", {}, common_pb2.IMAGE_ENCODING_PNG),
        ("webp", {"lossless": True}, common_pb2.IMAGE_ENCODING_WEBP),
    ],
)
def test_lossless_round_trip_is_exact(
    rgb: np.ndarray, rgba: np.ndarray, channels: int, encoding: str, options: dict, expected_encoding: int
) -> None:
    pixels = rgb if channels == 3 else rgba

    msg = images.to_proto(pixels, encoding, **options)

    assert msg.encoding == expected_encoding
    assert (msg.width, msg.height) == (53, 37)
    assert msg.format == (common_pb2.PIXEL_FORMAT_RGB8 if channels == 3 else common_pb2.PIXEL_FORMAT_RGBA8)
    np.testing.assert_array_equal(images.to_array(msg), pixels)
    assert images.to_pil(msg).mode == ("RGB" if channels == 3 else "RGBA")
    np.testing.assert_array_equal(np.asarray(images.to_pil(msg)), pixels)


def test_raw_message_holds_the_pixels_row_major(rgba: np.ndarray) -> None:
    msg = images.to_proto(rgba)

    assert msg.data == rgba.tobytes()


@pytest.mark.parametrize(
    ("encoding", "channels", "tolerance"), [("jpeg", 3, 3.0), ("webp", 3, 3.0), ("webp", 4, 3.0)]
)
def test_lossy_round_trip_is_close(encoding: str, channels: int, tolerance: float) -> None:
    pixels = _smooth(64, 96, channels)

    decoded = images.to_array(images.to_proto(pixels, encoding, quality=95))

    assert decoded.shape == pixels.shape
    assert np.abs(decoded.astype(int) - pixels).mean() < tolerance


def test_lower_quality_gives_a_smaller_jpeg() -> None:
    pixels = _smooth(64, 96, 3)

    assert len(images.encode_bytes(pixels, "jpeg", quality=30)) < len(images.encode_bytes(pixels, "jpeg"))


def test_encode_bytes_writes_files_pillow_reads(rgba: np.ndarray) -> None:
    for encoding, file_format in (("png", "PNG"), ("webp", "WEBP")):
        with Image.open(io.BytesIO(images.encode_bytes(rgba, encoding, lossless=True))) as img:
            assert img.format == file_format
            np.testing.assert_array_equal(np.asarray(img), rgba)


def test_rgba_is_not_silently_flattened_into_jpeg(rgba: np.ndarray) -> None:
    with pytest.raises(InvalidArgument, match="alpha") as info:
        images.to_proto(rgba, "jpeg")

    assert info.value.field == "encoding"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"encoding": "gif"}, "encoding"),
        ({"encoding": "jpeg", "quality": 101}, "quality"),
        ({"encoding": "png", "quality": -1}, "quality"),
        ({"encoding": "jpeg", "lossless": True}, "lossless"),
    ],
)
def test_bad_encoding_arguments_name_their_field(rgb: np.ndarray, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        images.to_proto(rgb, **kwargs)

    assert info.value.field == field


def test_encode_bytes_refuses_raw(rgb: np.ndarray) -> None:
    with pytest.raises(InvalidArgument, match="png, jpeg, webp"):
        images.encode_bytes(rgb, "raw")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
        [[1, 2, 3]],
    ],
)
def test_to_proto_refuses_what_is_not_rgb8_or_rgba8(value: object) -> None:
    with pytest.raises(InvalidArgument, match="uint8 array of shape") as info:
        images.to_proto(value)  # type: ignore[arg-type]

    assert info.value.field == "image"


def test_to_proto_accepts_non_contiguous_arrays(rgba: np.ndarray) -> None:
    view = rgba[::2, ::3, :3]

    np.testing.assert_array_equal(images.to_array(images.to_proto(view)), view)


# --------------------------------------------------------------------------------------------------
# Raw messages


def _raw(width: int = 4, height: int = 3, pixel_format: int = common_pb2.PIXEL_FORMAT_RGB8, data=None):
    channels = 4 if pixel_format == common_pb2.PIXEL_FORMAT_RGBA8 else 3
    return common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_RAW,
        format=pixel_format,
        width=width,
        height=height,
        data=bytes(width * height * channels) if data is None else data,
    )


def test_raw_payload_of_the_wrong_size_names_image_data() -> None:
    with pytest.raises(InvalidArgument) as info:
        images.to_array(_raw(data=bytes(35)))

    assert info.value.field == "image.data"
    assert "35" in str(info.value)
    assert "36" in str(info.value)


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (_raw(pixel_format=common_pb2.PIXEL_FORMAT_UNSPECIFIED, data=b""), "image.format"),
        (_raw(width=0, data=b""), "image.width"),
        (_raw(height=0, data=b""), "image.height"),
        (common_pb2.Image(data=b"\x00" * 12, width=2, height=2), "image.encoding"),
    ],
)
def test_bad_raw_headers_name_their_field(msg: common_pb2.Image, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        images.to_array(msg)

    assert info.value.field == field


def test_unknown_enum_numbers_are_reported_as_numbers() -> None:
    msg = _raw()
    msg.encoding = 99  # type: ignore[assignment]

    with pytest.raises(InvalidArgument, match="99"):
        images.to_array(msg)


def test_errors_use_the_given_field_prefix() -> None:
    with pytest.raises(InvalidArgument) as info:
        images.to_array(_raw(data=b"\x00"), field="reference")

    assert info.value.field == "reference.data"
    assert str(info.value).startswith("reference.data: ")


def test_raw_pixel_cap_is_checked_before_the_payload() -> None:
    # The header alone decides: no payload has to arrive for a huge header to be refused.
    with pytest.raises(ImageTooLarge, match="100000x100000"):
        images.to_array(_raw(width=100_000, height=100_000, data=b""))


def test_raw_array_shares_memory_with_the_message_and_is_read_only() -> None:
    pixels = images.to_array(_raw(pixel_format=common_pb2.PIXEL_FORMAT_RGBA8))

    assert pixels.shape == (3, 4, 4)
    assert not pixels.flags.writeable


# --------------------------------------------------------------------------------------------------
# Untrusted files: a corpus of bad ones, written here


def _bad_files() -> dict[str, bytes]:
    """Broken, truncated and unsupported files, keyed by the name the corpus gives them."""
    # Noise, so that the pixel data, not the headers, makes up most of each file.
    pixels = np.random.default_rng(6).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    png, jpeg = _encode(pixels, "PNG"), _encode(pixels, "JPEG", quality=90)
    webp = _encode(pixels, "WEBP", lossless=True)
    # IDAT's CRC sits just before the IEND chunk (12 bytes); flip one of its bits.
    bad_crc = bytearray(png)
    bad_crc[-13] ^= 0x01
    # A compressed stream that is not zlib, behind a correct CRC: only the decoder can notice.
    bad_idat = _png(48, 32, 8, 2, b"\x78\x9c" + bytes(range(200)))
    return {
        "empty.png": b"",
        "garbage.bin": np.random.default_rng(7).bytes(4096),
        "text.png": b"this is not an image at all, whatever its name says",
        "png-signature-only.png": png[:8],
        "png-header-only.png": png[:33],
        "png-half.png": png[: len(png) // 2],
        "png-without-iend.png": png[:-12],
        "png-last-byte-missing.png": png[:-1],
        "png-bad-crc.png": bytes(bad_crc),
        "png-bad-idat.png": bad_idat,
        "png-signature-then-garbage.png": png[:8] + np.random.default_rng(8).bytes(200),
        "jpeg-marker-only.jpg": jpeg[:4],
        "jpeg-headers-cut.jpg": jpeg[:100],
        "jpeg-half.jpg": jpeg[: len(jpeg) // 2],
        "jpeg-without-eoi.jpg": jpeg[:-2],
        "jpeg-last-byte-missing.jpg": jpeg[:-1],
        "webp-header-only.webp": webp[:16],
        "webp-half.webp": webp[: len(webp) // 2],
        "webp-last-byte-missing.webp": webp[:-1],
        "image.gif": _encode(pixels, "GIF"),
        "image.bmp": _encode(pixels, "BMP"),
        "image.tiff": _encode(pixels, "TIFF"),
    }


# What each file's error must say.
BAD_FILES = {
    "empty.png": "is empty",
    "garbage.bin": "not a recognised image file",
    "text.png": "not a recognised image file",
    "png-signature-only.png": "PNG",
    "png-header-only.png": "PNG",
    "png-half.png": "truncated or corrupt PNG",
    "png-without-iend.png": "truncated or corrupt PNG",
    "png-last-byte-missing.png": "truncated PNG",
    "png-bad-crc.png": "checksum",
    "png-bad-idat.png": "truncated or corrupt PNG",
    "png-signature-then-garbage.png": "PNG",
    "jpeg-marker-only.jpg": "JPEG",
    "jpeg-headers-cut.jpg": "JPEG",
    "jpeg-half.jpg": "truncated",
    "jpeg-without-eoi.jpg": "truncated",
    "jpeg-last-byte-missing.jpg": "truncated",
    "webp-header-only.webp": "WEBP",
    "webp-half.webp": "WEBP",
    "webp-last-byte-missing.webp": "WEBP",
    "image.gif": "is a GIF file; only PNG, JPEG and WebP",
    "image.bmp": "is a BMP file",
    "image.tiff": "is a TIFF file",
}
TRUNCATED = sorted(name for name in BAD_FILES if "-cut" in name or "-half" in name or "missing" in name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-images")
    files = _bad_files()
    assert set(files) == set(BAD_FILES)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_refused_with_an_error_that_says_why(corpus: Path, name: str) -> None:
    with pytest.raises(ImageError) as info:
        images.decode_bytes((corpus / name).read_bytes())

    assert BAD_FILES[name] in str(info.value)
    assert info.value.field == "image"


@pytest.mark.parametrize("name", [*TRUNCATED, "png-without-iend.png", "png-bad-crc.png"])
def test_truncated_files_are_refused_even_when_pillow_is_told_to_load_them(
    corpus: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some libraries set this process-wide; the codec must not depend on it being off.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)

    with pytest.raises(ImageError):
        images.decode_bytes((corpus / name).read_bytes())


def test_a_cut_keeping_every_pixel_is_still_refused(corpus: Path) -> None:
    # Pillow alone decodes a PNG without its IEND chunk; a file that does not end is not accepted.
    with Image.open(corpus / "png-without-iend.png") as img:
        img.load()

    with pytest.raises(ImageError):
        images.decode_bytes((corpus / "png-without-iend.png").read_bytes())


def test_decode_errors_keep_pillows_error_as_their_cause(corpus: Path) -> None:
    with pytest.raises(ImageError) as info:
        images.decode_bytes((corpus / "png-half.png").read_bytes())

    assert isinstance(info.value.__cause__, OSError)


def test_to_array_decodes_encoded_messages_and_names_the_data_field(corpus: Path) -> None:
    msg = common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_PNG, data=(corpus / "png-half.png").read_bytes()
    )

    with pytest.raises(ImageError) as info:
        images.to_array(msg, field="base")

    assert info.value.field == "base.data"


# --------------------------------------------------------------------------------------------------
# Caps: decompression bombs are refused before decoding


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A real 20000x20000 1-bit PNG (400 megapixels), all zeros: about 50 KB on disk."""
    width = height = 20_000
    row = bytes(1 + width // 8)  # filter byte + 1 bit per pixel
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000)) + compressor.flush()
    return _png(width, height, 1, 0, idat)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel data is decoded."""

    def load(self: Image.Image) -> None:
        raise AssertionError(f"decoded a {self.format} image of {self.size}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_decompression_bomb_is_refused_before_decoding(bomb: bytes, no_decoding: None) -> None:
    assert len(bomb) < 100_000

    with pytest.raises(ImageTooLarge, match="20000x20000"):
        images.decode_bytes(bomb)


def test_pixel_cap_is_the_callers_not_pillows(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's process-wide bomb limit neither refuses an image within max_pixels ...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    data = _encode(_blocks(16, 24), "PNG")

    assert images.decode_bytes(data, max_pixels=16 * 24).shape == (16, 24, 3)

    # ... nor lets through one over it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLarge):
        images.decode_bytes(data, max_pixels=16 * 24 - 1)


@pytest.mark.parametrize(
    ("file_format", "options"), [("PNG", {}), ("JPEG", {}), ("WEBP", {"lossless": True})]
)
def test_pixel_cap_boundary(file_format: str, options: dict) -> None:
    data = _encode(_blocks(16, 24), file_format, **options)

    assert images.decode_bytes(data, max_pixels=16 * 24).shape == (16, 24, 3)
    with pytest.raises(ImageTooLarge, match=r"24x16"):
        images.decode_bytes(data, max_pixels=16 * 24 - 1)


@pytest.fixture
def no_webp_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a WebP decoder is created: creating one allocates the whole canvas."""

    def decoder(data: bytes) -> None:
        raise AssertionError("created a WebP decoder")

    monkeypatch.setattr(WebPImagePlugin._webp, "WebPAnimDecoder", decoder)


def _claim_webp_canvas(data: bytes, width: int, height: int) -> bytes:
    """An extended (VP8X) WebP file whose header claims a canvas of width x height."""
    assert data[12:16] == b"VP8X"
    return data[:24] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + data[30:]


@pytest.mark.parametrize(
    "options",
    [{"lossless": True}, {"quality": 80}, {"lossless": True, "exif": _exif(3)}],
    ids=["lossless", "lossy", "extended"],
)
def test_webp_size_is_capped_before_the_decoder_allocates_its_canvas(
    options: dict, no_webp_decoder: None
) -> None:
    data = _encode(_blocks(16, 24), "WEBP", **options)

    with pytest.raises(ImageTooLarge, match="24x16"):
        images.decode_bytes(data, max_pixels=16 * 24 - 1)


def test_webp_bomb_is_refused_before_decoding(no_webp_decoder: None) -> None:
    data = _claim_webp_canvas(_encode(_blocks(16, 24), "WEBP", lossless=True, exif=_exif(1)), 20_000, 20_000)

    with pytest.raises(ImageTooLarge, match="20000x20000"):
        images.decode_bytes(data)


def test_webp_over_pillows_own_limit_is_too_large_not_an_internal_error(no_webp_decoder: None) -> None:
    # Pillow's WebP opener applies its process-wide limit too; that refusal is ImageTooLarge as well.
    data = _claim_webp_canvas(_encode(_blocks(16, 24), "WEBP", lossless=True, exif=_exif(1)), 16384, 16384)

    with pytest.raises(ImageTooLarge, match="exceeds limit"):
        images.decode_bytes(data, max_pixels=2**40)


def test_pixel_cap_refuses_without_decoding(no_decoding: None) -> None:
    with pytest.raises(ImageTooLarge):
        images.decode_bytes(_encode(_blocks(16, 24), "JPEG"), max_pixels=100)


def test_byte_cap_boundary() -> None:
    data = _encode(_blocks(16, 24), "PNG")

    assert images.decode_bytes(data, max_bytes=len(data)).shape == (16, 24, 3)
    with pytest.raises(ImageTooLarge, match=f"{len(data)} bytes"):
        images.decode_bytes(data, max_bytes=len(data) - 1)


def test_pixel_cap_applies_to_encoded_messages_too() -> None:
    msg = images.to_proto(_blocks(16, 24), "png")

    with pytest.raises(ImageTooLarge):
        images.to_array(msg, max_pixels=100)


# --------------------------------------------------------------------------------------------------
# Pixel modes


def test_16_bit_greyscale_png_is_scaled_not_clipped() -> None:
    levels = np.array([[0, 257, 32896, 65280, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(levels), "PNG")

    decoded = images.decode_bytes(data)

    assert decoded.shape == (1, 5, 3)
    np.testing.assert_array_equal(decoded[..., 0], [[0, 1, 128, 255, 255]])
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])


def test_16_bit_greyscale_png_with_a_transparent_level_gets_alpha() -> None:
    levels = np.array([[0, 257, 32896, 257]], dtype=np.uint16)
    data = _png(4, 1, 16, 0, _rows(levels), _png_chunk(b"tRNS", struct.pack(">H", 257)))

    decoded = images.decode_bytes(data)

    np.testing.assert_array_equal(decoded[0, :, 3], [255, 0, 255, 0])
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 1])


@pytest.mark.parametrize(("colour_type", "channels"), [(2, 3), (6, 4)])
def test_16_bit_rgb_and_rgba_pngs_keep_their_top_byte(colour_type: int, channels: int) -> None:
    levels = np.array([0, 257, 32896, 65535], dtype=np.uint16)
    samples = np.repeat(levels, channels).reshape(1, 4, channels)

    decoded = images.decode_bytes(_png(4, 1, 16, colour_type, _rows(samples)))

    assert decoded.shape == (1, 4, channels)
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(decoded[0, :, -1], [0, 1, 128, 255])


def test_palette_with_transparency_becomes_rgba() -> None:
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    img.putdata([0, 1, 2, 0, 1, 2, 0, 1])
    data = _encode(img, "PNG", transparency=1)

    decoded = images.decode_bytes(data)

    assert decoded.shape == (2, 4, 4)
    np.testing.assert_array_equal(decoded[..., 3], [[255, 0, 255, 255], [0, 255, 255, 0]])
    np.testing.assert_array_equal(decoded[0, 0], [255, 0, 0, 255])
    np.testing.assert_array_equal(decoded[0, 2], [0, 0, 255, 255])


def test_palette_without_transparency_becomes_rgb() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 40, 50, 60])
    img.putdata([1, 0])

    decoded = images.decode_bytes(_encode(img, "PNG"))

    np.testing.assert_array_equal(decoded, [[[40, 50, 60], [10, 20, 30]]])


def test_rgb_with_a_transparent_colour_key_becomes_rgba() -> None:
    pixels = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)

    decoded = images.decode_bytes(_encode(pixels, "PNG", transparency=(4, 5, 6)))

    np.testing.assert_array_equal(decoded, [[[1, 2, 3, 255], [4, 5, 6, 0]]])


def test_grey_alpha_becomes_rgba() -> None:
    grey = np.array([[0, 100, 255]], dtype=np.uint8)
    alpha = np.array([[255, 128, 0]], dtype=np.uint8)
    img = Image.merge("LA", (Image.fromarray(grey), Image.fromarray(alpha)))

    decoded = images.decode_bytes(_encode(img, "PNG"))

    np.testing.assert_array_equal(decoded[..., 0], grey)
    np.testing.assert_array_equal(decoded[..., 1], grey)
    np.testing.assert_array_equal(decoded[..., 3], alpha)


@pytest.mark.parametrize(("mode", "expected"), [("L", [0, 200]), ("1", [0, 255])])
def test_grey_and_bilevel_become_rgb(mode: str, expected: list[int]) -> None:
    img = Image.fromarray(np.array([[0, 200]], dtype=np.uint8)).convert(mode)

    decoded = images.decode_bytes(_encode(img, "PNG"))

    assert decoded.shape == (1, 2, 3)
    np.testing.assert_array_equal(decoded[0, :, 1], expected)


def test_cmyk_jpeg_becomes_rgb_with_sane_colours() -> None:
    # Pillow writes CMYK JPEGs the way Photoshop does: inverted, behind an Adobe marker.
    img = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan
    data = _encode(img, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "CMYK"
        assert "adobe" in opened.info

    decoded = images.decode_bytes(data)

    assert decoded.shape == (16, 16, 3)
    np.testing.assert_allclose(decoded.reshape(-1, 3).mean(axis=0), [0, 255, 255], atol=3)


def test_premultiplied_pil_images_are_unpremultiplied() -> None:
    pixels = np.zeros((2, 3, 4), np.uint8)
    pixels[..., :3] = [[[200, 100, 50]]]
    pixels[..., 3] = 200
    premultiplied = Image.fromarray(pixels).convert("RGBa")
    assert premultiplied.getpixel((0, 0))[0] < 200

    unpacked = images.to_array(images.to_proto(premultiplied))

    np.testing.assert_allclose(unpacked.astype(int), pixels, atol=1)


def test_premultiplied_grey_pil_image_becomes_rgba() -> None:
    img = Image.merge("LA", (Image.new("L", (2, 2), 120), Image.new("L", (2, 2), 255))).convert("La")

    unpacked = images.to_array(images.to_proto(img))

    np.testing.assert_array_equal(unpacked[0, 0], [120, 120, 120, 255])


@pytest.mark.parametrize("mode", ["I", "F", "LAB", "HSV"])
def test_ambiguous_pil_modes_are_refused(mode: str) -> None:
    with pytest.raises(ImageError, match=repr(mode)):
        images.to_proto(Image.new(mode, (2, 2)))


# --------------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)), (8, np.rot90)],
)
@pytest.mark.parametrize(
    ("file_format", "options", "tolerance"),
    [("PNG", {}, 0), ("WEBP", {"lossless": True}, 0), ("JPEG", {"quality": 95, "subsampling": 0}, 6)],
)
def test_exif_orientation_is_applied(
    orientation: int, upright, file_format: str, options: dict, tolerance: int
) -> None:
    stored = _blocks(16, 24)
    data = _encode(stored, file_format, exif=_exif(orientation), **options)

    decoded = images.decode_bytes(data)

    expected = upright(stored)
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected).max() <= tolerance


# --------------------------------------------------------------------------------------------------
# Alpha planes


def test_split_and_join_alpha_round_trip(rgba: np.ndarray) -> None:
    colour, alpha = images.split_alpha(rgba)

    assert colour.shape == (37, 53, 3)
    assert alpha is not None
    assert alpha.shape == (37, 53)
    assert np.shares_memory(colour, rgba)
    np.testing.assert_array_equal(images.join_alpha(colour, alpha), rgba)


def test_split_alpha_of_rgb_has_no_alpha(rgb: np.ndarray) -> None:
    colour, alpha = images.split_alpha(rgb)

    assert alpha is None
    assert colour is rgb
    assert images.join_alpha(colour, None) is rgb


@pytest.mark.parametrize("alpha", [np.zeros((36, 53), np.uint8), np.zeros((37, 53), np.float32)])
def test_join_alpha_refuses_a_plane_that_does_not_fit(rgb: np.ndarray, alpha: np.ndarray) -> None:
    with pytest.raises(InvalidArgument) as info:
        images.join_alpha(rgb, alpha)

    assert info.value.field == "alpha"


def test_join_alpha_wants_rgb(rgba: np.ndarray) -> None:
    with pytest.raises(InvalidArgument) as info:
        images.join_alpha(rgba, rgba[..., 3])

    assert info.value.field == "rgb"


# --------------------------------------------------------------------------------------------------
# Mangled files never escape the error tree


def _seed_files() -> dict[str, bytes]:
    pixels = _blocks(16, 24, channels=4)
    return {
        "png": _encode(pixels, "PNG"),
        "png-palette": _encode(Image.fromarray(pixels).quantize(16), "PNG"),
        "jpeg": _encode(pixels[..., :3], "JPEG", exif=_exif(6)),
        "webp": _encode(pixels, "WEBP", lossless=True),
        "webp-lossy": _encode(pixels, "WEBP", quality=80),
    }


SEED_FILES = _seed_files()


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Pillow warns about the corrupt EXIF it skips
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SEED_FILES)),
    edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
    keep=st.integers(0, 4000),
)
def test_mangled_files_decode_or_raise_an_image_error(name: str, edits: list, keep: int) -> None:
    data = bytearray(SEED_FILES[name])
    for position, value in edits:
        data[position % len(data)] = value
    data = data[: max(keep, 1)] if keep < len(data) else data

    try:
        decoded = images.decode_bytes(bytes(data), max_pixels=1_000_000)
    except (ImageError, ImageTooLarge):
        return
    assert decoded.dtype == np.uint8
    assert decoded.ndim == 3
    assert decoded.shape[2] in (3, 4)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("chunk_bytes", [1, 7, 1000, 10**6])
def test_array_chunks_round_trip_without_the_whole_image_copy(channels: int, chunk_bytes: int) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=(37, 53, channels), dtype=np.uint8)
    chunks = list(images.iter_array_chunks(pixels[:, :], chunk_bytes=chunk_bytes))
    # The same stream as the whole-message path.
    assert chunks == list(images.iter_chunks(images.to_proto(pixels), chunk_bytes=chunk_bytes))
    assembler = images.ChunkAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    restored = assembler.to_array()
    assert np.array_equal(restored, pixels)
    assert not restored.flags.writeable  # a view over the payload; copy before editing


def test_array_chunks_of_a_non_contiguous_view() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    view = pixels[5:25, 10:50]
    assembler = images.ChunkAssembler()
    for chunk in images.iter_array_chunks(view, chunk_bytes=100):
        assembler.add(chunk)
    assert np.array_equal(assembler.to_array(), view)


def test_assembler_to_array_refuses_an_incomplete_stream() -> None:
    pixels = np.zeros((10, 10, 3), np.uint8)
    first = next(images.iter_array_chunks(pixels, chunk_bytes=50))
    assembler = images.ChunkAssembler(field="base")
    assembler.add(first)
    with pytest.raises(InvalidArgument, match="base: the stream ended after 50 of the 300 bytes"):
        assembler.to_array()


def test_assembler_to_array_decodes_encoded_images() -> None:
    pixels = np.random.default_rng(5).integers(0, 256, size=(16, 16, 4), dtype=np.uint8)
    assembler = images.ChunkAssembler()
    for chunk in images.iter_chunks(images.to_proto(pixels, "png"), chunk_bytes=64):
        assembler.add(chunk)
    assert np.array_equal(assembler.to_array(), pixels)
