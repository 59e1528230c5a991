"""Chunk streams: an Image split by iter_chunks and put back together by the assembler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesmith import images
from tilesmith.errors import ImageTooLarge, InvalidArgument
from tilesmith.v1 import common_pb2


def _image(payload: bytes) -> common_pb2.Image:
    return common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_PNG,
        format=common_pb2.PIXEL_FORMAT_RGBA8,
        width=7,
        height=3,
        data=payload,
    )


def _header(total_bytes: int, **fields: object) -> common_pb2.ImageChunk:
    return common_pb2.ImageChunk(header=_image(b""), total_bytes=total_bytes, **fields)


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=3000), chunk_bytes=st.integers(1, 700))
def test_round_trip(payload: bytes, chunk_bytes: int) -> None:
    original = _image(payload)

    chunks = list(images.iter_chunks(original, chunk_bytes=chunk_bytes))

    assert len(chunks) == max(1, -(-len(payload) // chunk_bytes))
    assert chunks[0].HasField("header")
    assert chunks[0].total_bytes == len(payload)
    assert chunks[0].header.data == b""
    assert not any(chunk.HasField("header") for chunk in chunks[1:])
    assert all(len(chunk.data) <= chunk_bytes for chunk in chunks)
    assert images.assemble(chunks) == original


def test_empty_payload_is_still_one_chunk() -> None:
    chunks = list(images.iter_chunks(_image(b"")))

    assert len(chunks) == 1
    assert chunks[0].total_bytes == 0
    assert images.assemble(chunks) == _image(b"")


def test_default_chunks_fit_grpcs_default_message_limit() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    msg = images.to_proto(pixels)

    chunks = list(images.iter_chunks(msg))

    assert len(chunks) == 4
    assert max(chunk.ByteSize() for chunk in chunks) < 4 * 1024 * 1024
    np.testing.assert_array_equal(images.to_array(images.assemble(chunks)), pixels)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(InvalidArgument) as info:
        next(images.iter_chunks(_image(b"abc"), chunk_bytes=0))

    assert info.value.field == "chunk_bytes"


def test_announced_size_over_the_cap_is_refused_before_buffering() -> None:
    assembler = images.ChunkAssembler(max_bytes=10)
    images.ChunkAssembler(max_bytes=10).add(_header(10))  # at the cap: accepted

    with pytest.raises(ImageTooLarge, match="11 bytes"):
        assembler.add(_header(11))


def test_absurd_announced_size_never_reaches_an_allocation() -> None:
    # 4 EiB: allocating it would raise MemoryError (or worse) instead of the domain error.
    with pytest.raises(ImageTooLarge):
        images.assemble([_header(2**62)])


def test_stream_without_a_header_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="first chunk") as info:
        images.assemble([common_pb2.ImageChunk(data=b"abc")])

    assert info.value.field == "image.header"


def test_second_header_is_refused() -> None:
    chunks = [_header(6, data=b"abc"), _header(6, data=b"def")]

    with pytest.raises(InvalidArgument, match="only the first chunk") as info:
        images.assemble(chunks)

    assert info.value.field == "image.header"


def test_header_carrying_data_is_refused() -> None:
    chunk = common_pb2.ImageChunk(header=_image(b"xyz"), total_bytes=3)

    with pytest.raises(InvalidArgument) as info:
        images.assemble([chunk])

    assert info.value.field == "image.header.data"


def test_more_bytes_than_announced_are_refused() -> None:
    assembler = images.ChunkAssembler()
    assembler.add(_header(4, data=b"abc"))

    with pytest.raises(InvalidArgument, match="more than the 4 bytes") as info:
        assembler.add(common_pb2.ImageChunk(data=b"de"))

    assert info.value.field == "image.data"


def test_fewer_bytes_than_announced_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="after 3 of the 5 bytes") as info:
        images.assemble([_header(5, data=b"ab"), common_pb2.ImageChunk(data=b"c")])

    assert info.value.field == "image"


def test_empty_stream_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="empty") as info:
        images.assemble([])

    assert info.value.field == "image"


@pytest.mark.parametrize(
    ("chunks", "field"),
    [
        ([common_pb2.ImageChunk(data=b"a")], "reference.header"),
        ([_header(2, data=b"abc")], "reference.data"),
        ([_header(2, data=b"a")], "reference"),
    ],
)
def test_errors_name_the_field_the_chunks_arrive_in(
    chunks: Iterable[common_pb2.ImageChunk], field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        images.assemble(chunks, field="reference")

    assert info.value.field == field


def test_assembler_result_is_independent_of_later_changes_to_the_chunks() -> None:
    first = _header(3, data=b"abc")
    assembler = images.ChunkAssembler()
    assembler.add(first)
    first.header.width = 99

    assert assembler.result().width == 7


async def _aiter(chunks: Iterable[common_pb2.ImageChunk]) -> AsyncIterator[common_pb2.ImageChunk]:
    for chunk in chunks:
        yield chunk


async def test_assemble_async_round_trip() -> None:
    original = _image(bytes(range(256)) * 5)

    assembled = await images.assemble_async(_aiter(images.iter_chunks(original, chunk_bytes=100)))

    assert assembled == original


async def test_assemble_async_applies_the_cap() -> None:
    chunks = images.iter_chunks(_image(bytes(100)), chunk_bytes=10)

    with pytest.raises(ImageTooLarge, match="base"):
        await images.assemble_async(_aiter(chunks), max_bytes=99, field="base")


def test_memory_follows_what_arrived_not_what_was_announced() -> None:
    """A 12-byte message announcing 64 GiB must not make the receiver allocate it."""
    from tilesmith import images as _images
    from tilesmith.v1 import common_pb2 as _pb

    assembler = _images.ChunkAssembler(max_bytes=2**40)
    header = _pb.Image(
        encoding=_pb.IMAGE_ENCODING_RAW, format=_pb.PIXEL_FORMAT_RGBA8, width=2**17, height=2**17
    )
    assembler.add(_pb.ImageChunk(header=header, total_bytes=2**36, data=b"x" * 12))
    with pytest.raises(InvalidArgument, match="ended after 12 of the 68719476736 bytes"):
        assembler.check_complete()
