"""The tiling service through a real in-process gRPC server on port 0."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest
from PIL import Image

from services.common import grid
from tilesmith import images
from tilesmith.v1 import common_pb2, tiling_pb2, tiling_pb2_grpc

from .conftest import TEST_MAX_PIXELS
from .helpers import rpc_error, scrape, stream

pytestmark = pytest.mark.asyncio(loop_scope="session")

RGB = common_pb2.PIXEL_FORMAT_RGB8
RGBA = common_pb2.PIXEL_FORMAT_RGBA8


def _params(tile: int, overlap: int, offset: bool = False) -> tiling_pb2.GridParams:
    return tiling_pb2.GridParams(
        tile_size=common_pb2.Size(width=tile, height=tile), overlap=overlap, offset=offset
    )


def _size(width: int, height: int) -> common_pb2.Size:
    return common_pb2.Size(width=width, height=height)


def _chunks(
    image: np.ndarray | common_pb2.Image, chunk_bytes: int = 256 * 1024
) -> list[common_pb2.ImageChunk]:
    message = image if isinstance(image, common_pb2.Image) else images.to_proto(image)
    return list(images.iter_chunks(message, chunk_bytes=chunk_bytes))


async def _split(stub, image, params: tiling_pb2.GridParams) -> list[tiling_pb2.TileImage]:
    requests = [tiling_pb2.SplitRequest(params=params)] + [
        tiling_pb2.SplitRequest(image=c) for c in _chunks(image)
    ]
    return [tile async for tile in stub.Split(stream(*requests))]


async def _collect_image(call) -> tuple[np.ndarray, list]:
    """The image a call streams back as chunks, and its other messages (summaries, thumbnails)."""
    chunks, others = [], []
    async for reply in call:
        if isinstance(reply, common_pb2.ImageChunk):
            chunks.append(reply)
            continue
        which = reply.WhichOneof("part")
        if which in ("image", "overview"):
            chunks.append(getattr(reply, which))
        else:
            others.append(getattr(reply, which))
    return images.to_array(images.assemble(chunks)), others


@pytest.fixture
def stub(tiling_channel) -> tiling_pb2_grpc.TilingStub:
    return tiling_pb2_grpc.TilingStub(tiling_channel)


# --- PlanGrid ----------------------------------------------------------------------------------------


async def test_plan_grid_matches_the_domain_plan(stub) -> None:
    reply = await stub.PlanGrid(
        tiling_pb2.PlanGridRequest(image_size=_size(1000, 700), tile_size=_size(256, 256), overlap=64)
    )
    plan = grid.plan_grid(1000, 700, 256, 256, 64)
    assert (reply.rows, reply.cols) == (plan.rows, plan.cols)
    assert [(t.rect.x, t.rect.y, t.rect.width, t.rect.height) for t in reply.tiles] == [
        (t.x, t.y, t.width, t.height) for t in plan.tiles
    ]
    assert [t.index for t in reply.tiles] == list(range(len(plan.tiles)))


async def test_plan_grid_offset_straddles_the_seams(stub) -> None:
    reply = await stub.PlanGrid(
        tiling_pb2.PlanGridRequest(
            image_size=_size(1000, 700), tile_size=_size(256, 256), overlap=64, offset=True
        )
    )
    assert reply.offset
    xs, ys = grid.seams(grid.plan_grid(1000, 700, 256, 256, 64))
    for x in xs:
        assert any(t.rect.x < x < t.rect.x + t.rect.width for t in reply.tiles)
    for y in ys:
        assert any(t.rect.y < y < t.rect.y + t.rect.height for t in reply.tiles)


async def test_plan_grid_for_an_image_smaller_than_a_tile(stub) -> None:
    reply = await stub.PlanGrid(
        tiling_pb2.PlanGridRequest(image_size=_size(50, 30), tile_size=_size(512, 512), overlap=64)
    )
    assert len(reply.tiles) == 1
    assert (reply.tiles[0].rect.width, reply.tiles[0].rect.height) == (50, 30)


@pytest.mark.parametrize(
    ("image_size", "tile_size", "overlap", "field"),
    [
        ((0, 100), (256, 256), 32, "image_size.width"),
        ((100, 100), (10, 256), 0, "tile_size.width"),
        ((100, 100), (256, 9000), 0, "tile_size.height"),
        ((100, 100), (256, 256), 200, "overlap"),
    ],
)
async def test_plan_grid_bad_input_names_the_field(stub, image_size, tile_size, overlap, field) -> None:
    request = tiling_pb2.PlanGridRequest(
        image_size=_size(*image_size), tile_size=_size(*tile_size), overlap=overlap
    )
    error = await rpc_error(stub.PlanGrid(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:")
    assert dict(error.trailing_metadata())["tilesmith-field"] == field


async def test_oversize_image_is_refused(stub) -> None:
    side = int(TEST_MAX_PIXELS**0.5) + 1
    error = await rpc_error(
        stub.PlanGrid(tiling_pb2.PlanGridRequest(image_size=_size(side, side), tile_size=_size(256, 256)))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "image_size" in error.details()


# --- Split and Blend ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("feather", [tiling_pb2.FEATHER_MODE_LINEAR, tiling_pb2.FEATHER_MODE_COSINE])
async def test_split_then_blend_reproduces_the_input_exactly(stub, rng, channels, feather) -> None:
    image = rng.integers(0, 256, size=(333, 517, channels), dtype=np.uint8)
    params = _params(128, 40)
    tiles = await _split(stub, image, params)
    plan = grid.plan_grid(517, 333, 128, 128, 40)
    assert len(tiles) == len(plan.tiles)
    for tile, rect in zip(tiles, plan.tiles, strict=True):
        assert images.to_array(tile.image).shape == (rect.height, rect.width, channels)
    blend_params = tiling_pb2.BlendParams(
        image_size=_size(517, 333), grid=params, format=RGB if channels == 3 else RGBA, feather=feather
    )
    shuffled = [tiles[i] for i in rng.permutation(len(tiles))]
    requests = [tiling_pb2.BlendRequest(params=blend_params)] + [
        tiling_pb2.BlendRequest(tile=t) for t in shuffled
    ]
    result, (summary,) = await _collect_image(stub.Blend(stream(*requests)))
    assert np.array_equal(result, image)
    assert summary.tiles == len(plan.tiles)


async def test_blend_refuses_a_missing_tile(stub, rng) -> None:
    image = rng.integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    params = _params(128, 32)
    tiles = await _split(stub, image, params)
    blend_params = tiling_pb2.BlendParams(image_size=_size(300, 300), grid=params, format=RGB)
    requests = [tiling_pb2.BlendRequest(params=blend_params)] + [
        tiling_pb2.BlendRequest(tile=t) for t in tiles[1:]
    ]
    error = await rpc_error(stub.Blend(stream(*requests)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("tile:")
    assert "were not sent: 0" in error.details()


async def test_blend_refuses_a_tile_of_the_wrong_size(stub) -> None:
    blend_params = tiling_pb2.BlendParams(image_size=_size(300, 300), grid=_params(128, 32), format=RGB)
    wrong = tiling_pb2.TileImage(
        tile=common_pb2.Tile(index=3), image=images.to_proto(np.zeros((64, 64, 3), np.uint8))
    )
    error = await rpc_error(
        stub.Blend(stream(tiling_pb2.BlendRequest(params=blend_params), tiling_pb2.BlendRequest(tile=wrong)))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("tile[3].image:")


async def test_blend_refuses_encoded_tiles_before_decoding(stub) -> None:
    blend_params = tiling_pb2.BlendParams(image_size=_size(300, 300), grid=_params(128, 32), format=RGB)
    png = images.to_proto(np.zeros((128, 128, 3), np.uint8), "png")
    tile = tiling_pb2.TileImage(tile=common_pb2.Tile(index=0), image=png)
    error = await rpc_error(
        stub.Blend(stream(tiling_pb2.BlendRequest(params=blend_params), tiling_pb2.BlendRequest(tile=tile)))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("tile[0].image.encoding:")


async def test_blend_needs_params_first(stub) -> None:
    tile = tiling_pb2.TileImage(
        tile=common_pb2.Tile(index=0), image=images.to_proto(np.zeros((8, 8, 3), np.uint8))
    )
    error = await rpc_error(stub.Blend(stream(tiling_pb2.BlendRequest(tile=tile))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("params:")


async def test_corrupt_image_is_invalid_argument_and_server_keeps_serving(stub) -> None:
    png = io.BytesIO()
    Image.new("RGB", (200, 200), (10, 200, 30)).save(png, format="PNG")
    corrupt = common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=png.getvalue()[:-40])
    requests = [tiling_pb2.SplitRequest(params=_params(128, 16))]
    requests += [tiling_pb2.SplitRequest(image=c) for c in _chunks(corrupt)]
    error = await rpc_error(stub.Split(stream(*requests)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("image")
    # The same call with the intact file works.
    intact = common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=png.getvalue())
    requests = [tiling_pb2.SplitRequest(params=_params(128, 16))]
    requests += [tiling_pb2.SplitRequest(image=c) for c in _chunks(intact)]
    assert len([t async for t in stub.Split(stream(*requests))]) == 4


async def test_oversize_chunked_image_is_refused_before_buffering(stub) -> None:
    side = int(TEST_MAX_PIXELS**0.5) + 16
    header = common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_RAW, format=RGBA, width=side, height=side)
    first = common_pb2.ImageChunk(header=header, total_bytes=side * side * 4, data=b"\0" * 1024)
    requests = [tiling_pb2.SplitRequest(params=_params(128, 16)), tiling_pb2.SplitRequest(image=first)]
    error = await rpc_error(stub.Split(stream(*requests)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- BlendSeams --------------------------------------------------------------------------------------


async def test_blend_seams_touches_only_bands_around_seams(stub, rng) -> None:
    width, height, tile, overlap = 700, 500, 256, 64
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    redrawn = 255 - base  # stands in for the offset pass's re-drawn tiles
    offset_tiles = await _split(stub, redrawn, _params(tile, overlap, offset=True))
    params = tiling_pb2.BlendSeamsParams(
        image_size=_size(width, height), first_grid=_params(tile, overlap), format=RGB, band_width=32
    )
    requests = (
        [tiling_pb2.BlendSeamsRequest(params=params)]
        + [tiling_pb2.BlendSeamsRequest(base=c) for c in _chunks(base)]
        + [tiling_pb2.BlendSeamsRequest(tile=t) for t in offset_tiles]
    )
    result, (summary,) = await _collect_image(stub.BlendSeams(stream(*requests)))
    changed = np.any(result != base, axis=-1)
    assert 0 < summary.touched_fraction < 0.5
    assert changed.mean() <= summary.touched_fraction + 1e-9
    xs, ys = grid.seams(grid.plan_grid(width, height, tile, tile, overlap))
    assert xs
    assert ys
    for x in xs:  # right on a seam the offset pass wins, along the seam's whole length
        assert np.array_equal(result[:, x], redrawn[:, x])
    for y in ys:
        assert np.array_equal(result[y, :], redrawn[y, :])
    far = np.ones((height, width), bool)
    for x in xs:
        far[:, max(0, x - 16) : x + 16] = False
    for y in ys:
        far[max(0, y - 16) : y + 16, :] = False
    assert np.array_equal(result[far], base[far])


async def test_blend_seams_refuses_a_base_of_the_wrong_size(stub, rng) -> None:
    params = tiling_pb2.BlendSeamsParams(image_size=_size(300, 300), first_grid=_params(128, 32), format=RGB)
    base = rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    offset_tiles = await _split(stub, np.zeros((300, 300, 3), np.uint8), _params(128, 32, offset=True))
    requests = (
        [tiling_pb2.BlendSeamsRequest(params=params)]
        + [tiling_pb2.BlendSeamsRequest(base=c) for c in _chunks(base)]
        + [tiling_pb2.BlendSeamsRequest(tile=t) for t in offset_tiles]
    )
    error = await rpc_error(stub.BlendSeams(stream(*requests)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("base:")


# --- Resize, ColorFix, RenderGrid --------------------------------------------------------------------


async def test_resize_up_and_down(stub, rng) -> None:
    image = rng.integers(0, 256, size=(90, 120, 4), dtype=np.uint8)
    for width, height in ((240, 180), (60, 45)):
        requests = [tiling_pb2.ResizeRequest(params=tiling_pb2.ResizeParams(size=_size(width, height)))]
        requests += [tiling_pb2.ResizeRequest(image=c) for c in _chunks(image)]
        result, _ = await _collect_image(stub.Resize(stream(*requests)))
        assert result.shape == (height, width, 4)


async def test_resize_refuses_a_zero_size(stub, rng) -> None:
    image = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    requests = [tiling_pb2.ResizeRequest(params=tiling_pb2.ResizeParams(size=_size(0, 10)))]
    requests += [tiling_pb2.ResizeRequest(image=c) for c in _chunks(image)]
    error = await rpc_error(stub.Resize(stream(*requests)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("params.size.width:")


async def test_color_fix_moves_colours_towards_the_reference(stub, rng) -> None:
    target = np.clip(rng.normal(60, 20, size=(128, 128, 3)), 0, 255).astype(np.uint8)
    reference = np.clip(rng.normal(180, 20, size=(64, 64, 3)), 0, 255).astype(np.uint8)
    for method in (tiling_pb2.COLOR_FIX_METHOD_WAVELET, tiling_pb2.COLOR_FIX_METHOD_ADAIN):
        requests = [tiling_pb2.ColorFixRequest(params=tiling_pb2.ColorFixParams(method=method))]
        requests += [tiling_pb2.ColorFixRequest(target=c) for c in _chunks(target)]
        requests += [tiling_pb2.ColorFixRequest(reference=c) for c in _chunks(reference)]
        result, _ = await _collect_image(stub.ColorFix(stream(*requests)))
        assert result.shape == target.shape
        assert abs(result.mean() - reference.mean()) < abs(target.mean() - reference.mean()) / 2


async def test_color_fix_needs_both_images(stub, rng) -> None:
    target = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    requests = [tiling_pb2.ColorFixRequest(params=tiling_pb2.ColorFixParams())]
    requests += [tiling_pb2.ColorFixRequest(target=c) for c in _chunks(target)]
    error = await rpc_error(stub.ColorFix(stream(*requests)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("reference")


async def test_render_grid_returns_overview_and_thumbnails(stub) -> None:
    image = np.full((400, 600, 3), 128, np.uint8)
    params = tiling_pb2.RenderGridParams(
        grid=_params(256, 64), selected=[0], processed=[1], max_side=300, thumbnail_size=64
    )
    requests = [tiling_pb2.RenderGridRequest(params=params)]
    requests += [tiling_pb2.RenderGridRequest(image=c) for c in _chunks(image)]
    overview, thumbnails = await _collect_image(stub.RenderGrid(stream(*requests)))
    assert max(overview.shape[:2]) == 300
    plan = grid.plan_grid(600, 400, 256, 256, 64)
    assert [t.tile.index for t in thumbnails] == list(range(len(plan.tiles)))
    assert max(images.to_array(thumbnails[0].image).shape[:2]) <= 64
    # Selected tile 0 (top-left) is drawn blue, processed tile 1 tinted green, over mid grey.
    scale = 300 / 600
    r0, g0, b0 = overview[int(40 * scale), int(40 * scale)].astype(int)
    assert b0 > r0 + 30
    assert b0 > g0 + 30
    t1 = plan.tiles[1]
    inner_x = int((t1.x + t1.width - 30) * scale)
    r1, g1, b1 = overview[int(40 * scale), inner_x].astype(int)
    assert g1 > r1 + 20
    assert g1 > b1 + 20


async def test_render_grid_refuses_unknown_tile_indices(stub) -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    params = tiling_pb2.RenderGridParams(grid=_params(256, 64), selected=[99])
    requests = [tiling_pb2.RenderGridRequest(params=params)]
    requests += [tiling_pb2.RenderGridRequest(image=c) for c in _chunks(image)]
    error = await rpc_error(stub.RenderGrid(stream(*requests)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("params.selected:")


# --- metrics -----------------------------------------------------------------------------------------


async def test_metrics_count_tiles(tiling_server, stub, rng) -> None:
    image = rng.integers(0, 256, size=(200, 200, 3), dtype=np.uint8)
    await _split(stub, image, _params(128, 32))
    text = await asyncio.to_thread(scrape, tiling_server.metrics_port)
    prefix = 'tiling_tiles_processed_total{operation="split"}'
    split = [line for line in text.splitlines() if line.startswith(prefix)]
    assert split
    assert float(split[0].split()[-1]) >= 4
    assert "tiling_queue_requests 0.0" in text
    assert "tiling_build_info" in text


async def test_an_idle_client_holds_no_worker_and_is_ended() -> None:
    from services.common.server import channel_options
    from services.tiling.app import build_server
    from services.tiling.settings import TilingSettings

    settings = TilingSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", workers=1, max_queue=0, upload_idle_seconds=1.0
    )
    server = build_server(settings, serve_metrics_http=False)
    await server.start()
    await server.set_serving()
    try:
        async with grpc.aio.insecure_channel(
            server.address, options=channel_options(64 * 1024 * 1024)
        ) as channel:
            stub = tiling_pb2_grpc.TilingStub(channel)
            never = asyncio.Event()

            async def idle_requests():
                yield tiling_pb2.SplitRequest(params=_params(128, 16))
                await never.wait()  # the client goes quiet after its params

            idle = stub.Split(idle_requests())
            # With its only worker free, the service still serves others while the idle stream waits.
            image = np.zeros((64, 64, 3), np.uint8)
            tiles = await _split(stub, image, _params(64, 0))
            assert len(tiles) == 1
            error = await rpc_error(idle)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "sent nothing for 1 s" in error.details()
            never.set()
    finally:
        await server.stop(0)
