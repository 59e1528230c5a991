"""UPSCALE and GENERATE jobs through the embedded stack (one process, one port, tiny profile), end to end
through the SDK: events, results, selected tiles, regions, alpha, reproducibility, cancellation."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from services.tiling.resize import resize
from tests.gateway.conftest import FAST, logged_events, noise, wait_for
from tests.services.helpers import scrape
from tilesmith import GenerateOptions, Region, UpscaleOptions, errors
from tilesmith.v1 import gateway_pb2 as pb

pytestmark = pytest.mark.asyncio(loop_scope="session")

STAGE_ORDER = [
    pb.JOB_STAGE_DECODE,
    pb.JOB_STAGE_PREUPSCALE,
    pb.JOB_STAGE_PLAN,
    pb.JOB_STAGE_REDRAW,
    pb.JOB_STAGE_BLEND,
    pb.JOB_STAGE_SEAM_FIX,
    pb.JOB_STAGE_DOWNSCALE,
    pb.JOB_STAGE_ENCODE,
]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


async def run(client, image, options: UpscaleOptions):
    job = await client.upscale(image, options)
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    return job, final


async def test_upscale_with_seam_fix_logs_every_stage_and_tile(client):
    image = noise(96, 64)
    layout = await client.plan_grid(image, replace(FAST, seam_fix=True))
    job, final = await run(client, image, replace(FAST, seam_fix=True))
    events = await logged_events(client, job.id)

    # 1. A gap-free log: accepted first, the terminal event last.
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].WhichOneof("kind") == "accepted"
    assert events[0].accepted.seed == final.seed
    assert events[-1].WhichOneof("kind") == "succeeded"
    # 2. Stages in pipeline order, each started then finished.
    started = [e.stage_started.stage for e in events if e.WhichOneof("kind") == "stage_started"]
    finished = [e.stage_finished.stage for e in events if e.WhichOneof("kind") == "stage_finished"]
    assert started == finished == STAGE_ORDER
    # 3. One tile_done per first-pass tile and per offset tile, each with its own derived seed.
    done = [e.tile_done for e in events if e.WhichOneof("kind") == "tile_done"]
    redraw = [d for d in done if d.stage == pb.JOB_STAGE_REDRAW]
    seam = [d for d in done if d.stage == pb.JOB_STAGE_SEAM_FIX]
    assert sorted(d.tile_index for d in redraw) == list(range(len(layout.plan.tiles)))
    assert sorted(d.tile_index for d in seam) == list(range(len(layout.seam_plan.tiles)))
    assert len({d.seed for d in redraw}) == len(redraw)
    assert all(d.provider == "embedded" and d.model and d.preview.data for d in done)
    assert final.result.tiles_redrawn == len(done) == final.progress.tiles_total
    assert events[-1].progress.tiles_done == len(done)
    # 4. The result: 2x, the seed written into the stored spec, timings for every stage.
    assert (final.result.size.width, final.result.size.height) == (192, 128)
    assert final.spec.upscale.settings.seed == final.seed == 1234
    assert [t.stage for t in final.result.stage_timings] == STAGE_ORDER
    result = await job.result()
    assert result.size == (192, 128)
    assert result.mode == "RGB"
    # 5. The result is registered as an upload ("use result as input").
    again = await client.plan_grid(final.result.image_id, FAST)
    assert (again.input_size.width, again.input_size.height) == (192, 128)


async def test_a_seed_reproduces_the_same_pixels_and_another_seed_does_not(client):
    image = noise(64, 64, seed=3)
    _, first = await run(client, image, FAST)
    job_a = client.job(first.id)
    job_b, _ = await run(client, image, FAST)
    job_c, _ = await run(client, image, replace(FAST, seed=99))
    a, b, c = [pixels(await j.result()) for j in (job_a, job_b, job_c)]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


async def test_a_random_seed_is_drawn_and_reported(client):
    _job, final = await run(client, noise(32, 32), replace(FAST, seed=None, target=1.0))
    assert 0 <= final.seed < 2**32
    assert final.spec.upscale.settings.seed == final.seed


async def test_rgba_keeps_its_alpha(client):
    image = noise(64, 48, channels=4, seed=5)
    image[..., 3] = 255
    image[:12, :, 3] = 0  # a transparent band
    job, final = await run(client, image, FAST)
    assert final.result.has_alpha
    result = pixels(await job.result())
    assert result.shape == (96, 128, 4)
    expected = resize(image, 128, 96)[..., 3]
    assert np.array_equal(result[..., 3], expected)


async def test_only_selected_tiles_are_redrawn(client):
    image = noise(128, 64, seed=7)
    options = replace(FAST, selected_tiles=[0], keep_intermediates=True)
    layout = await client.plan_grid(image, options)
    job, final = await run(client, image, options)
    events = await logged_events(client, job.id)
    assert [e.tile_done.tile_index for e in events if e.WhichOneof("kind") == "tile_done"] == [0]
    assert list(final.result.intermediates) == ["preupscaled", "redrawn"]
    base = pixels(await job.result("preupscaled"))
    result = pixels(await job.result())
    tile = layout.plan.tiles[0].rect
    # Beyond tile 0 (its overlap included) the pre-upscaled pixels are kept bit for bit...
    assert np.array_equal(result[:, tile.x + tile.width :], base[:, tile.x + tile.width :])
    # ... and inside it the tile was re-drawn.
    inner = (slice(tile.y, tile.y + tile.height - 16), slice(tile.x, tile.x + tile.width - 16))
    assert not np.array_equal(result[inner], base[inner])


async def test_regions_are_redrawn_and_feathered_back(client):
    image = noise(128, 96, seed=9)
    region = Region(rect=(40, 30, 20, 16), prompt="a red gem", padding=8, feather=4)
    options = replace(FAST, regions=[region], keep_intermediates=True)
    job, _final = await run(client, image, options)
    events = await logged_events(client, job.id)
    done = [e.tile_done for e in events if e.WhichOneof("kind") == "tile_done"]
    # The padded region (72x64 working px) is larger than one 64 px tile: its own grid of two.
    assert [(d.WhichOneof("item"), d.region_index) for d in done] == [("region_index", 0)] * 2
    base = pixels(await job.result("preupscaled"))
    result = pixels(await job.result())
    # Working pixels = 2x input: rect (80, 60, 40, 32), feather 8 outside it.
    assert not np.array_equal(result[60:92, 80:120], base[60:92, 80:120])
    outside = np.ones(base.shape[:2], bool)
    outside[60 - 8 : 92 + 8, 80 - 8 : 120 + 8] = False
    assert np.array_equal(result[outside], base[outside])


async def test_an_image_smaller_than_one_tile_is_one_tile(client):
    layout = await client.plan_grid(noise(20, 12), FAST)
    assert len(layout.plan.tiles) == 1
    job, final = await run(client, noise(20, 12), FAST)
    assert final.result.tiles_redrawn == 1
    assert (await job.result()).size == (40, 24)


async def test_generate_then_enhance_keeps_the_base_image(client):
    options = GenerateOptions(
        base_size=(64, 64),
        base_steps=2,
        enhance=UpscaleOptions(
            target=2.0, tile_size=64, overlap=16, steps=4, strength=0.5, keep_intermediates=True
        ),
    )
    job = await client.generate("a castle on a hill", options)
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert list(final.result.intermediates)[:2] == ["base", "preupscaled"]
    assert (await job.result("base")).size == (64, 64)
    assert (await job.result()).size == (128, 128)
    stages = [t.stage for t in final.result.stage_timings]
    assert stages[0] == pb.JOB_STAGE_GENERATE


async def test_cancel_mid_job_ends_the_job_and_stops_the_backend(client, stack):
    options = replace(FAST, steps=60, strength=1.0, batch_size=1)
    job = await client.upscale(noise(192, 128, seed=11), options)
    async for event in client.watch_job(job.id):
        if event.WhichOneof("kind") == "tile_done":
            break
    cancelled = await job.cancel()
    assert cancelled.state == pb.JOB_STATE_CANCELLED
    events = await logged_events(client, job.id)
    assert events[-1].WhichOneof("kind") == "cancelled"
    assert events[-1].progress.tiles_done < events[-1].progress.tiles_total
    with pytest.raises(errors.FailedPrecondition):
        await job.result()
    # The diffusion calls in flight were cancelled too: the service stops at its next step.
    port = stack.server.metrics_port

    def stopped() -> bool:
        text = scrape(port)
        return (
            "diffusion_running_requests 0.0" in text and 'grpc_code="CANCELLED",grpc_method="Img2Img"' in text
        )

    await wait_for(stopped)
    # Cancelling again is a no-op that returns the job as it is.
    assert (await job.cancel()).state == pb.JOB_STATE_CANCELLED


async def test_watch_resumes_after_any_seq(client):
    job, _ = await run(client, noise(64, 64, seed=13), FAST)
    full = await logged_events(client, job.id)
    for after in (0, 1, len(full) // 2, len(full) - 1):
        tail = await logged_events(client, job.id, after_seq=after)
        assert [e.SerializeToString() for e in tail] == [e.SerializeToString() for e in full[after:]]
    assert await logged_events(client, job.id, after_seq=len(full)) == []


async def test_jobs_are_listed_newest_first_with_their_specs(client):
    job, _final = await run(client, noise(32, 32, seed=15), replace(FAST, loras=(), prompt="listed"))
    jobs = [j async for j in client.list_jobs(state="succeeded", page_size=2)]
    assert jobs[0].id == job.id
    assert jobs[0].spec.upscale.settings.prompt == "listed"
    created = [j.created_time.ToNanoseconds() for j in jobs]
    assert created == sorted(created, reverse=True)


async def test_results_in_other_encodings(client):
    job, _ = await run(client, noise(32, 32, seed=17), FAST)
    jpeg = await client.get_result(job.id, encoding="jpeg", quality=80)
    assert Image.open(io.BytesIO(jpeg.data)).format == "JPEG"
    raw = await client.get_result(job.id, encoding="raw")
    assert len(raw.data) == 64 * 64 * 3
    rgba_job, _ = await run(client, noise(32, 32, channels=4, seed=17), FAST)
    with pytest.raises(errors.InvalidArgument) as caught:
        await client.get_result(rgba_job.id, encoding="jpeg")
    assert caught.value.field == "encoding"
    with pytest.raises(errors.NotFound):
        await client.get_result(job.id, "seam_fixed")


async def test_queued_jobs_wait_their_turn_and_cancel_cleanly(client):
    slow = replace(FAST, steps=60, strength=1.0, batch_size=1)
    image = noise(128, 96, seed=19)
    running = [await client.upscale(image, slow) for _ in range(2)]  # the stack runs 2 jobs at once
    queued = await client.upscale(image, slow)
    just_submitted = await client.upscale(image, slow)
    assert (await queued.refresh()).progress.queue_position == 0
    assert (await just_submitted.refresh()).progress.queue_position == 1
    # Cancelled while it waits: it never starts.
    for job in (just_submitted, queued, *running):
        assert (await job.cancel()).state == pb.JOB_STATE_CANCELLED
    assert not (await queued.refresh()).HasField("started_time")
    events = await logged_events(client, queued.id)
    assert [e.WhichOneof("kind") for e in events] == ["accepted", "cancelled"]
    # The workers are all still there: the next job runs to the end.
    _, final = await run(client, noise(32, 32, seed=23), FAST)
    assert final.state == pb.JOB_STATE_SUCCEEDED
