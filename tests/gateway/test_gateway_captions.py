"""Auto-captions through the embedded stack with the tiny Qwen3-VL: the CAPTION stage, user prompts
winning over captions, CaptionTiles streaming, the shared cache, and captions surviving a restart."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest
import pytest_asyncio

from gateway.stack import EmbeddedStack
from services.common.server import channel_options
from tests.gateway.conftest import FAST, logged_events, noise, stack_config, wait_for
from tilesmith import AsyncClient
from tilesmith.v1 import gateway_pb2 as pb
from tilesmith.v1 import gateway_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

# 64x48 at 2x: a 128x96 working image, 64 px tiles with 16 overlap -> 3 x 2 = 6 tiles; 1 denoising step.
CAPTIONED = replace(FAST, steps=2, prompt="oil painting", auto_caption=True)
TOKENS = 6


def _settings(options) -> pb.UpscaleSettings:
    settings = options.to_settings()
    settings.caption.max_new_tokens = TOKENS
    return settings


async def _upscale(client: AsyncClient, image_id: str, options):
    spec = pb.JobSpec(upscale=options.to_spec(image_id))
    spec.upscale.settings.caption.max_new_tokens = TOKENS
    return await client.submit(spec)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def captioning_stack(tmp_path_factory):
    async with EmbeddedStack(stack_config(tmp_path_factory.mktemp("captions"), captioning=True)) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cclient(captioning_stack):
    async with AsyncClient(captioning_stack.address) as connected:
        yield connected


async def _caption_tiles(address: str, request: pb.CaptionTilesRequest) -> list[pb.CaptionTilesResponse]:
    async with grpc.aio.insecure_channel(address, options=channel_options(64 << 20)) as channel:
        return [m async for m in gateway_pb2_grpc.GatewayStub(channel).CaptionTiles(request)]


def _captioned(events) -> dict[int, pb.JobTileCaptioned]:
    return {
        e.tile_captioned.index: e.tile_captioned for e in events if e.WhichOneof("kind") == "tile_captioned"
    }


async def test_caption_stage_user_prompts_win_and_caption_tiles_agree(cclient, captioning_stack) -> None:
    image = noise(64, 48, seed=5)
    image_id = await cclient.upload_image(image)
    options = replace(CAPTIONED, tile_prompts={1: "a red door"}, selected_tiles=(0, 1, 2, 4))

    # 1. The job: CAPTION between PLAN and REDRAW; only re-drawn tiles without their own prompt.
    job = await _upscale(cclient, image_id, options)
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    events = await logged_events(cclient, job.id)
    stages = [e.stage_started.stage for e in events if e.WhichOneof("kind") == "stage_started"]
    assert (
        stages.index(pb.JOB_STAGE_PLAN)
        < stages.index(pb.JOB_STAGE_CAPTION)
        < stages.index(pb.JOB_STAGE_REDRAW)
    )
    captions = _captioned(events)
    assert sorted(captions) == [0, 2, 4]  # tile 1 has its own prompt; 3 and 5 are not re-drawn
    assert all(c.caption and not c.cached for c in captions.values())
    assert [t.stage for t in final.result.stage_timings].count(pb.JOB_STAGE_CAPTION) == 1

    # 2. CaptionTiles on the same grid and caption settings: index order, done / total, the job's
    #    captions, now from the cache (the same pixels, prompts and context).
    request = pb.CaptionTilesRequest(image_id=image_id, settings=_settings(options), tile_indices=[4, 0, 2])
    answers = await _caption_tiles(captioning_stack.address, request)
    assert [a.index for a in answers] == [0, 2, 4]
    assert [(a.done, a.total) for a in answers] == [(1, 3), (2, 3), (3, 3)]
    assert {a.index: a.caption for a in answers} == {i: c.caption for i, c in captions.items()}
    assert all(a.cached and a.model == "tiny-qwen3-vl" for a in answers)

    # 3. A second run: the same captions, cached, and the same pixels.
    again = await _upscale(cclient, image_id, options)
    assert (await again.wait()).state == pb.JOB_STATE_SUCCEEDED
    second = _captioned(await logged_events(cclient, again.id))
    assert {i: c.caption for i, c in second.items()} == {i: c.caption for i, c in captions.items()}
    assert all(c.cached for c in second.values())
    assert (await again.result()).tobytes() == (await job.result()).tobytes()


async def test_caption_tiles_every_tile_and_field_errors(cclient, captioning_stack) -> None:
    image_id = await cclient.upload_image(noise(64, 48, seed=6))
    settings = _settings(CAPTIONED)
    answers = await _caption_tiles(
        captioning_stack.address, pb.CaptionTilesRequest(image_id=image_id, settings=settings)
    )
    assert [a.index for a in answers] == list(range(6))
    assert answers[-1].done == answers[-1].total == 6
    assert all(a.caption for a in answers)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _caption_tiles(
            captioning_stack.address,
            pb.CaptionTilesRequest(image_id=image_id, settings=settings, tile_indices=[1, 6]),
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("tile_indices[1]")


async def test_caption_tiles_is_unavailable_without_captioning(stack) -> None:
    async with AsyncClient(stack.address) as plain:
        image_id = await plain.upload_image(noise(64, 48))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _caption_tiles(stack.address, pb.CaptionTilesRequest(image_id=image_id))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_resumed_job_keeps_its_captions(tmp_path) -> None:
    config = stack_config(tmp_path, captioning=True)
    image = noise(64, 48, seed=7)
    async with EmbeddedStack(config) as first, AsyncClient(first.address) as client:
        job = await _upscale(
            client, await client.upload_image(image), replace(CAPTIONED, steps=8, strength=1.0)
        )
        # Park it once every caption is checkpointed and the re-draw has begun.
        await wait_for(lambda: first.gateway.store.get_job(job.id).stage == pb.JOB_STAGE_REDRAW, 60)
        before = _captioned(
            [pb.JobEvent.FromString(r.payload) for r in first.gateway.store.events_after(job.id)]
        )
    assert sorted(before) == list(range(6))
    async with EmbeddedStack(config) as second, AsyncClient(second.address) as client:
        final = await client.job(job.id).wait()
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
        events = await logged_events(client, job.id)
    after = _captioned(events)
    assert after == before  # no tile was captioned again
    caption_stages = [e for e in events if e.WhichOneof("kind") == "stage_started"]
    details = [
        e.stage_started.detail for e in caption_stages if e.stage_started.stage == pb.JOB_STAGE_CAPTION
    ]
    assert details[-1] == "0 tiles, 6 restored"
