"""The diffusion service through a real in-process gRPC server on port 0, with the tiny profile.

The tiny models are random weights with the real architectures: these tests prove the machinery
(shapes, determinism, every feature steering the output, errors, queueing, cancellation), not quality.
"""

from __future__ import annotations

import asyncio
import pickle
import shutil

import grpc
import numpy as np
import pytest
import pytest_asyncio

from services.common.server import channel_options
from services.diffusion.app import build_server
from services.diffusion.settings import DiffusionSettings
from services.diffusion.tiny import build_tiny_models, default_cache_dir
from tilesmith import images
from tilesmith.v1 import common_pb2, diffusion_pb2, diffusion_pb2_grpc

from .helpers import rpc_error, scrape

pytestmark = pytest.mark.asyncio(loop_scope="session")

TILE = 64
FAST = {"steps": 4}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def diffusion(tmp_path_factory):
    """One server for the module, on a private copy of the tiny models (LoRA tests write to it)."""
    cache = await asyncio.to_thread(build_tiny_models, default_cache_dir())
    models = tmp_path_factory.mktemp("models")
    await asyncio.to_thread(shutil.copytree, cache, models, dirs_exist_ok=True)
    settings = DiffusionSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        profile="tiny",
        models_dir=models,
        device="cpu",
        torch_threads=1,
        max_batch_size=4,
        max_queue=1,
        tune_malloc=False,
    )
    server, load = build_server(settings)
    await server.start()
    await load()
    await server.set_serving()
    async with grpc.aio.insecure_channel(
        server.address, options=channel_options(64 * 1024 * 1024)
    ) as channel:
        yield server, diffusion_pb2_grpc.DiffusionStub(channel), models
    await server.stop(0)


@pytest.fixture
def stub(diffusion):
    return diffusion[1]


def _tile(rng_seed: int, size: int = TILE, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(rng_seed).integers(0, 256, size=(size, size, channels), dtype=np.uint8)


def _request(tiles=None, *, strength=0.5, loras=(), controlnet=None, ip=None, steps=4, **extra):
    tiles = tiles if tiles is not None else [(0, _tile(0), "a castle", 7)]
    sampling = diffusion_pb2.SamplingParams(
        steps=steps,
        loras=[common_pb2.LoraRef(name=n, weight=w) for n, w in loras],
        scheduler=diffusion_pb2.SCHEDULER_EULER,
    )
    if ip is not None:
        sampling.ip_adapter.CopyFrom(diffusion_pb2.IpAdapterParams(image=images.to_proto(ip), scale=0.6))
    request = diffusion_pb2.Img2ImgRequest(
        tiles=[
            diffusion_pb2.Img2ImgTile(index=index, image=images.to_proto(pixels), prompt=prompt, seed=seed)
            for index, pixels, prompt, seed in tiles
        ],
        strength=strength,
        sampling=sampling,
        **extra,
    )
    if controlnet is not None:
        request.controlnet.CopyFrom(controlnet)
    return request


async def _img2img(stub, request):
    """(tiles by index, progress events, stats) of one call."""
    tiles, progress, stats, queued = {}, [], [], []
    async for reply in stub.Img2Img(request):
        which = reply.WhichOneof("part")
        if which == "tile":
            tiles[reply.tile.index] = images.to_array(reply.tile.image)
        elif which == "progress":
            progress.append((reply.progress.step, reply.progress.total_steps))
        elif which == "stats":
            stats.append(reply.stats)
        else:
            queued.append(reply.queued.ahead)
    return tiles, progress, stats


# --- Img2Img -----------------------------------------------------------------------------------------


async def test_img2img_streams_progress_then_tiles_then_stats(stub) -> None:
    tiles, progress, stats = await _img2img(stub, _request())
    assert tiles[0].shape == (TILE, TILE, 3)
    assert progress
    assert [step for step, _ in progress] == list(range(1, len(progress) + 1))
    assert progress[-1][0] == progress[-1][1]
    assert len(stats) == 1
    assert stats[0].model


async def test_same_request_is_bit_identical_and_seeds_matter(stub) -> None:
    first, _, _ = await _img2img(stub, _request())
    again, _, _ = await _img2img(stub, _request())
    assert np.array_equal(first[0], again[0])
    other, _, _ = await _img2img(stub, _request([(0, _tile(0), "a castle", 8)]))
    assert not np.array_equal(first[0], other[0])


async def test_batched_matches_one_by_one_within_float_rounding(stub) -> None:
    specs = [(i, _tile(i), f"tile {i}", 100 + i) for i in range(3)]
    batched, _, _ = await _img2img(stub, _request(specs))
    for spec in specs:
        single, _, _ = await _img2img(stub, _request([spec]))
        difference = np.abs(batched[spec[0]].astype(int) - single[spec[0]].astype(int))
        assert difference.max() <= 1
        assert (difference > 0).mean() < 0.01


async def test_controlnet_ip_adapter_and_loras_each_steer_the_output(stub) -> None:
    base, _, _ = await _img2img(stub, _request(controlnet=diffusion_pb2.ControlNetSettings(enabled=False)))
    with_controlnet, _, _ = await _img2img(
        stub, _request(controlnet=diffusion_pb2.ControlNetSettings(scale=1.5))
    )
    assert not np.array_equal(base[0], with_controlnet[0])
    with_style, _, _ = await _img2img(stub, _request(ip=_tile(9, 32)))
    default, _, _ = await _img2img(stub, _request())
    assert not np.array_equal(with_style[0], default[0])
    with_lora, _, _ = await _img2img(stub, _request(loras=[("tiny-style", 1.0)]))
    assert not np.array_equal(with_lora[0], default[0])
    back, _, _ = await _img2img(stub, _request())
    assert np.array_equal(back[0], default[0])


async def test_generation_size_keeps_the_tile_size(stub) -> None:
    tiles, _, _ = await _img2img(stub, _request(generation_size=96))
    assert tiles[0].shape == (TILE, TILE, 3)


@pytest.mark.parametrize(
    ("make_request", "code", "field"),
    [
        (lambda: _request([]), grpc.StatusCode.INVALID_ARGUMENT, "tiles"),
        (lambda: _request(strength=0.0), grpc.StatusCode.INVALID_ARGUMENT, "strength"),
        (lambda: _request(strength=1.5), grpc.StatusCode.INVALID_ARGUMENT, "strength"),
        (lambda: _request(steps=0), grpc.StatusCode.INVALID_ARGUMENT, "sampling.steps"),
        (
            lambda: _request([(0, _tile(0, channels=4), "", 1)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tiles[0].image",
        ),
        (
            lambda: _request([(0, _tile(0), "", 1), (1, _tile(1, size=TILE + 8), "", 2)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tiles[1].image",
        ),
        (
            lambda: _request([(i, _tile(i), "", i) for i in range(5)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tiles",
        ),
        (
            lambda: _request(loras=[("no-such-lora", 1.0)]),
            grpc.StatusCode.NOT_FOUND,
            "sampling.loras[0].name",
        ),
        (lambda: _request(loras=[("sd15-style", 1.0)]), grpc.StatusCode.FAILED_PRECONDITION, ""),
        (
            lambda: _request(loras=[("tiny-style", 9.0)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "sampling.loras[0].weight",
        ),
    ],
)
async def test_bad_requests_name_the_field_and_the_server_keeps_serving(
    stub, make_request, code, field
) -> None:
    error = await rpc_error(stub.Img2Img(make_request()))
    assert error.code() == code, error.details()
    assert error.details().startswith(field)
    tiles, _, _ = await _img2img(stub, _request())
    assert tiles[0].shape == (TILE, TILE, 3)


async def test_zero_size_tile_is_refused(stub) -> None:
    request = _request()
    request.tiles[0].image.CopyFrom(
        common_pb2.Image(
            encoding=common_pb2.IMAGE_ENCODING_RAW, format=common_pb2.PIXEL_FORMAT_RGB8, width=0, height=0
        )
    )
    error = await rpc_error(stub.Img2Img(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("tiles[0].image")


# --- cancellation and load ---------------------------------------------------------------------------


def _long_request() -> diffusion_pb2.Img2ImgRequest:
    return _request(strength=1.0, steps=150)


async def test_cancel_mid_run_frees_the_slot(diffusion, stub) -> None:
    server = diffusion[0]
    call = stub.Img2Img(_long_request())
    async for reply in call:
        if reply.WhichOneof("part") == "progress":
            break
    call.cancel()
    # The next request runs (it would wait behind 150 steps if the GPU were still busy).
    tiles, _, _ = await asyncio.wait_for(_img2img(stub, _request()), timeout=60)
    assert tiles[0].shape == (TILE, TILE, 3)
    text = await asyncio.to_thread(scrape, server.metrics_port)
    assert "diffusion_running_requests 0.0" in text


async def test_full_queue_is_resource_exhausted(stub) -> None:
    running = stub.Img2Img(_long_request())
    async for reply in running:  # holds the GPU
        if reply.WhichOneof("part") == "progress":
            break
    waiting = stub.Img2Img(_request())
    first = await waiting.read()
    assert first.WhichOneof("part") == "queued"
    assert first.queued.ahead == 1
    # Refused before anything was sent (the first read fails), so a client may retry on another replica.
    error = await rpc_error(stub.Img2Img(_request()).read())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue" in error.details()
    running.cancel()
    waiting.cancel()


# --- Txt2Img and Upscale -----------------------------------------------------------------------------


async def test_txt2img_returns_an_image(stub) -> None:
    request = diffusion_pb2.Txt2ImgRequest(
        prompt="a (red:1.3) dragon",
        size=common_pb2.Size(width=64, height=96),
        seed=3,
        sampling=diffusion_pb2.SamplingParams(steps=2),
        output_encoding=common_pb2.IMAGE_ENCODING_PNG,
    )
    chunks = [reply.image async for reply in stub.Txt2Img(request) if reply.WhichOneof("part") == "image"]
    pixels = images.to_array(images.assemble(chunks))
    assert pixels.shape == (96, 64, 3)


async def test_txt2img_size_must_be_a_multiple_of_8(stub) -> None:
    request = diffusion_pb2.Txt2ImgRequest(prompt="x", size=common_pb2.Size(width=65, height=64))
    error = await rpc_error(stub.Txt2Img(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("size.width")


async def _upscale(stub, pixels, **params):
    async def requests():
        yield diffusion_pb2.UpscaleRequest(params=diffusion_pb2.UpscaleParams(**params))
        for chunk in images.iter_array_chunks(pixels, chunk_bytes=4096):
            yield diffusion_pb2.UpscaleRequest(image=chunk)

    chunks, progress = [], []
    async for reply in stub.Upscale(requests()):
        if reply.WhichOneof("part") == "image":
            chunks.append(reply.image)
        elif reply.WhichOneof("part") == "progress":
            progress.append(reply.progress)
    return images.to_array(images.assemble(chunks)), progress


async def test_upscale_rgba_comes_back_rgba_at_the_model_scale(stub) -> None:
    # The tiny ESRGAN's random weights make no picture; tests/unit/diffusion/test_upscaler.py checks the
    # alpha handling exactly with identity weights. Here: the service path, tiling and progress.
    pixels = _tile(3, size=40, channels=4)
    pixels[:, :, 3] = 255
    result, progress = await _upscale(stub, pixels, tile_size=32, tile_overlap=4)
    assert result.shape == (160, 160, 4)
    assert (result[:, :, 3] == 255).all()
    assert progress
    assert progress[-1].tiles_done == progress[-1].tiles_total
    again, _ = await _upscale(stub, pixels, tile_size=32, tile_overlap=4)
    assert np.array_equal(result, again)


async def test_upscale_unknown_model_is_not_found(stub) -> None:
    async def requests():
        yield diffusion_pb2.UpscaleRequest(params=diffusion_pb2.UpscaleParams(model="nope"))
        for chunk in images.iter_array_chunks(_tile(1, 16)):
            yield diffusion_pb2.UpscaleRequest(image=chunk)

    error = await rpc_error(stub.Upscale(requests()))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith("params.model")


# --- models and LoRAs --------------------------------------------------------------------------------


async def test_list_models(stub) -> None:
    reply = await stub.ListModels(diffusion_pb2.ListModelsRequest())
    assert reply.profile == "tiny"
    kinds = {model.kind for model in reply.models}
    assert {
        diffusion_pb2.MODEL_KIND_CHECKPOINT,
        diffusion_pb2.MODEL_KIND_CONTROLNET,
        diffusion_pb2.MODEL_KIND_UPSCALER,
    } <= kinds
    assert reply.max_batch_size == 4


async def _upload(stub, name: str, data: bytes, **params):
    async def requests():
        yield diffusion_pb2.UploadLoraRequest(
            params=diffusion_pb2.UploadLoraParams(name=name, total_bytes=len(data), **params)
        )
        for start in range(0, len(data), 64 * 1024):
            yield diffusion_pb2.UploadLoraRequest(data=data[start : start + 64 * 1024])

    return await stub.UploadLora(requests())


async def test_lora_upload_list_update_delete(diffusion, stub) -> None:
    models = diffusion[2]
    data = (models / "loras" / "tiny-style.safetensors").read_bytes()
    info = await _upload(stub, "my-style", data)
    assert info.compatible
    assert info.base_architecture == common_pb2.BASE_ARCHITECTURE_SDXL
    listed = await stub.ListLoras(diffusion_pb2.ListLorasRequest())
    assert "my-style" in {lora.name for lora in listed.loras}
    assert listed.rules.max_loras == 5
    updated = await stub.UpdateLora(
        diffusion_pb2.UpdateLoraRequest(
            name="my-style",
            metadata=diffusion_pb2.LoraMetadata(type=diffusion_pb2.LORA_TYPE_STYLE, trigger_words=["mine"]),
        )
    )
    assert list(updated.metadata.trigger_words) == ["mine"]
    tiles, _, _ = await _img2img(stub, _request(loras=[("my-style", 0.8)]))
    assert tiles[0].shape == (TILE, TILE, 3)
    await stub.DeleteLora(diffusion_pb2.DeleteLoraRequest(name="my-style"))
    error = await rpc_error(stub.DeleteLora(diffusion_pb2.DeleteLoraRequest(name="my-style")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("name", "payload", "code"),
    [
        ("not-safetensors", b"hello, I am a text file" * 10, grpc.StatusCode.INVALID_ARGUMENT),
        ("pickled", pickle.dumps({"weight": [1.0, 2.0]}), grpc.StatusCode.INVALID_ARGUMENT),
        ("../escape", b"x" * 100, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_uploads_are_refused(stub, name, payload, code) -> None:
    error = await rpc_error(_upload(stub, name, payload))
    assert error.code() == code, error.details()


async def test_sd15_upload_is_refused(diffusion, stub) -> None:
    data = (diffusion[2] / "loras" / "sd15-style.safetensors").read_bytes()
    error = await rpc_error(_upload(stub, "sd15-copy", data))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SD1.5" in error.details()


async def test_metrics(diffusion, stub) -> None:
    await _img2img(stub, _request())
    text = await asyncio.to_thread(scrape, diffusion[0].metrics_port)
    for name in (
        "diffusion_queue_requests",
        "diffusion_running_requests",
        "diffusion_inference_duration_seconds_count",
        "diffusion_denoise_step_duration_seconds_count",
        'diffusion_images_generated_total{operation="img2img"}',
        "diffusion_build_info",
    ):
        assert name in text
