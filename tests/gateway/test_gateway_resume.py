"""A gateway stopped mid-job resumes the job from its checkpoints at the next start and finishes with
the very pixels an uninterrupted run gives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gateway.stack import EmbeddedStack
from tests.gateway.conftest import FAST, logged_events, noise, stack_config
from tilesmith import AsyncClient
from tilesmith.v1 import gateway_pb2 as pb

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPTIONS = replace(FAST, seam_fix=True, batch_size=2, steps=8, seed=4242)


async def test_a_job_parked_mid_run_resumes_to_the_same_pixels(client, tmp_path):
    image = noise(160, 96, seed=21)
    # 1. The reference: an uninterrupted run on the session's stack.
    reference_job = await client.upscale(image, OPTIONS)
    assert (await reference_job.wait()).state == pb.JOB_STATE_SUCCEEDED
    reference = np.asarray(await reference_job.result())

    # 2. The same spec on a second stack, stopped after a few tiles: the job stays RUNNING.
    config = stack_config(tmp_path, batch_size=2)
    async with EmbeddedStack(config) as first, AsyncClient(first.address) as early:
        job = await early.upscale(image, OPTIONS)
        done = 0
        async for event in early.watch_job(job.id):
            if event.WhichOneof("kind") == "tile_done":
                done += 1
                if done == 4:
                    break
    # 3. A new stack on the same state resumes it.
    async with EmbeddedStack(config) as second, AsyncClient(second.address) as late:
        final = await late.job(job.id).wait()
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
        events = await logged_events(late, job.id)
        resumed = [e.resumed for e in events if e.WhichOneof("kind") == "resumed"]
        assert len(resumed) == 1
        assert resumed[0].tiles_restored >= 4
        restored = [
            e.tile_done for e in events if e.WhichOneof("kind") == "tile_done" and e.tile_done.restored
        ]
        assert len(restored) >= 4
        # Every tile counted once: restored and re-drawn together make the plan.
        assert (
            final.progress.tiles_done
            == final.progress.tiles_total
            == final.result.tiles_redrawn + len(restored)
        )
        result = np.asarray(await late.job(job.id).result())
    assert np.array_equal(result, reference)
