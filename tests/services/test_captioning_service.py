"""The captioning service through a real in-process gRPC server on port 0, with the tiny Qwen3-VL.

The tiny model has random weights: these tests prove the machinery (the contract, the cache, the
context path, errors naming their field), not caption quality.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import pytest_asyncio

from services.captioning.app import build_server
from services.captioning.captioner import DEFAULT_INSTRUCTION, DEFAULT_SYSTEM_PROMPT
from services.captioning.settings import CaptioningSettings
from services.common.server import channel_options
from services.diffusion.tiny import build_tiny_models, default_cache_dir
from tilesmith import images
from tilesmith.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

from .helpers import rpc_error, scrape

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOKENS = 8


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def captioning():
    models = await asyncio.to_thread(build_tiny_models, default_cache_dir())
    settings = CaptioningSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        profile="tiny",
        models_dir=models,
        device="cpu",
        torch_threads=1,
        max_batch=4,
        max_queue=4,
        max_pixels=4096 * 4096,
        tune_malloc=False,
    )
    server, load = build_server(settings)
    await server.start()
    await load()
    await server.set_serving()
    async with grpc.aio.insecure_channel(
        server.address, options=channel_options(64 * 1024 * 1024)
    ) as channel:
        yield server, captioning_pb2_grpc.CaptioningStub(channel)
    await server.stop(0)


@pytest.fixture
def stub(captioning):
    return captioning[1]


def _pixels(seed: int, height: int = 48, width: int = 64, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def _item(seed: int, rect=None, **shape) -> captioning_pb2.CaptionItem:
    item = captioning_pb2.CaptionItem(image=images.to_proto(_pixels(seed, **shape)))
    if rect is not None:
        item.rect.CopyFrom(common_pb2.Rect(x=rect[0], y=rect[1], width=rect[2], height=rect[3]))
    return item


def _context(width: int = 960, height: int = 640) -> captioning_pb2.CaptionContext:
    return captioning_pb2.CaptionContext(
        overview=images.to_proto(_pixels(99, 64, 96)), source_size=common_pb2.Size(width=width, height=height)
    )


async def test_captions_in_order_with_the_defaults_reported(stub) -> None:
    request = captioning_pb2.CaptionRequest(items=[_item(1), _item(2), _item(1)], max_new_tokens=TOKENS)
    reply = await stub.Caption(request)
    assert len(reply.captions) == 3
    assert all(caption.text and "\n" not in caption.text for caption in reply.captions)
    assert reply.captions[0].text == reply.captions[2].text
    assert reply.model == "tiny-qwen3-vl"
    assert reply.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert reply.instruction == DEFAULT_INSTRUCTION
    assert reply.inference_seconds > 0


async def test_the_same_tile_again_comes_from_the_cache(stub) -> None:
    request = captioning_pb2.CaptionRequest(
        items=[_item(3, channels=4)],
        system_prompt="Be brief.",
        instruction="Tags only.",
        max_new_tokens=TOKENS,
    )
    first = await stub.Caption(request)
    again = await stub.Caption(request)
    assert not first.captions[0].cached
    assert first.captions[0].generated_tokens >= 1
    assert again.captions[0].cached
    assert again.captions[0].generated_tokens == 0
    assert again.captions[0].text == first.captions[0].text
    assert again.inference_seconds == 0
    assert (again.system_prompt, again.instruction) == ("Be brief.", "Tags only.")


async def test_context_captions_each_rect(stub) -> None:
    request = captioning_pb2.CaptionRequest(
        items=[_item(4, rect=(0, 0, 480, 320)), _item(5, rect=(480, 320, 480, 320))],
        max_new_tokens=TOKENS,
        context=_context(),
    )
    reply = await stub.Caption(request)
    assert [caption.cached for caption in reply.captions] == [False, False]
    assert reply.instruction == DEFAULT_INSTRUCTION  # without the context sentence


def _context_request() -> captioning_pb2.CaptionRequest:
    return captioning_pb2.CaptionRequest(items=[_item(6, rect=(0, 0, 100, 100))], context=_context())


def _bad_requests():
    no_rect = _context_request()
    no_rect.items[0].ClearField("rect")
    outside = _context_request()
    outside.items[0].rect.x = 900
    no_overview = _context_request()
    no_overview.context.ClearField("overview")
    small_overview = _context_request()
    small_overview.context.overview.CopyFrom(images.to_proto(_pixels(0, 8, 64)))
    undecodable = captioning_pb2.CaptionRequest(
        items=[
            captioning_pb2.CaptionItem(
                image=common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=b"no")
            )
        ]
    )
    return {
        "items": captioning_pb2.CaptionRequest(),
        "items ": captioning_pb2.CaptionRequest(items=[_item(0, height=16, width=16)] * 65),
        "items[0].image": undecodable,
        "items[0].image.width": captioning_pb2.CaptionRequest(items=[_item(0, width=8)]),
        "system_prompt": captioning_pb2.CaptionRequest(items=[_item(0)], system_prompt="x" * 4001),
        "instruction": captioning_pb2.CaptionRequest(items=[_item(0)], instruction="x" * 4001),
        "max_new_tokens": captioning_pb2.CaptionRequest(items=[_item(0)], max_new_tokens=0),
        "max_new_tokens ": captioning_pb2.CaptionRequest(items=[_item(0)], max_new_tokens=513),
        "items[0].rect": no_rect,
        "items[0].rect ": outside,
        "context.overview": no_overview,
        "context.overview.height": small_overview,
    }


@pytest.mark.parametrize(("field", "request_"), list(_bad_requests().items()))
async def test_bad_requests_name_the_field_and_the_server_keeps_serving(stub, field, request_) -> None:
    error = await rpc_error(stub.Caption(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field.strip() in error.details()
    reply = await stub.Caption(captioning_pb2.CaptionRequest(items=[_item(1)], max_new_tokens=TOKENS))
    assert len(reply.captions) == 1


async def test_an_image_over_the_pixel_cap_is_resource_exhausted(stub) -> None:
    header = common_pb2.Image(
        encoding=common_pb2.IMAGE_ENCODING_RAW, width=5000, height=5000, format=common_pb2.PIXEL_FORMAT_RGB8
    )
    error = await rpc_error(
        stub.Caption(captioning_pb2.CaptionRequest(items=[captioning_pb2.CaptionItem(image=header)]))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_metrics_are_exported(captioning, stub) -> None:
    server, _ = captioning
    await stub.Caption(captioning_pb2.CaptionRequest(items=[_item(7)], max_new_tokens=TOKENS))
    text = await asyncio.to_thread(scrape, server.metrics_port)
    for name in (
        "captioning_queue_requests",
        "captioning_running_requests",
        "captioning_inference_duration_seconds_count",
        "captioning_captions_total",
        "captioning_cache_hits_total",
    ):
        assert name in text
