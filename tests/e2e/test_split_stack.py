"""The split stack: every service its own process (two diffusion replicas), supervised. A full upscale,
a gateway SIGKILLed mid-job (restarted, the job resumes to the same pixels), and a diffusion replica
SIGKILLed mid-job (its tiles are retried on the other replica)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest
import pytest_asyncio

from gateway.stack import SplitStack
from tests.gateway.conftest import FAST, noise, stack_config
from tests.services.helpers import scrape
from tilesmith import AsyncClient
from tilesmith.v1 import gateway_pb2 as pb

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE = {f"TILESMITH_{part}_GRACE_SECONDS": "1" for part in ("GATEWAY", "TILING", "DIFFUSION")}
OPTIONS = replace(FAST, seam_fix=True, batch_size=1, steps=16, seed=777)
IMAGE = noise(160, 96, seed=31)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def split(tmp_path_factory):
    config = stack_config(
        tmp_path_factory.mktemp("split"), diffusion_replicas=2, batch_size=1, extra_env=GRACE
    )
    async with SplitStack(config) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reference(split):
    """The uninterrupted run every interrupted one must reproduce."""
    async with AsyncClient(split.address) as client:
        job = await client.upscale(IMAGE, OPTIONS)
        final = await job.wait()
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
        return final, np.asarray(await job.result())


async def _tiles_done(client: AsyncClient, job_id: str, count: int) -> list[pb.JobTileDone]:
    done = []
    async for event in client.watch_job(job_id):
        if event.WhichOneof("kind") == "tile_done":
            done.append(event.tile_done)
            if len(done) == count:
                break
    return done


async def test_every_service_serves_and_the_job_uses_both_replicas(split, reference):
    final, result = reference
    assert result.shape == (192, 320, 3)
    assert final.result.tiles_redrawn == final.progress.tiles_total > 0
    for name, port in split.metrics_ports.items():
        text = await asyncio.to_thread(scrape, port)
        assert "_build_info" in text, name
    async with AsyncClient(split.address) as client:
        providers = {
            event.tile_done.provider
            async for event in client.watch_job(final.id)
            if event.WhichOneof("kind") == "tile_done"
        }
    assert providers == {f"127.0.0.1:{split.ports[name]}" for name in ("diffusion", "diffusion-1")}


async def test_a_gateway_killed_mid_job_resumes_to_the_same_pixels(split, reference):
    async with AsyncClient(split.address) as client:
        job = await client.upscale(IMAGE, OPTIONS)
        await _tiles_done(client, job.id, 4)
    split.kill("gateway")  # SIGKILL: no chance to park anything
    await split.wait_ready(within=120)
    async with AsyncClient(split.address) as client:
        final = await client.job(job.id).wait()
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
        kinds = [
            event.WhichOneof("kind")
            async for event in client.watch_job(job.id)
            if event.WhichOneof("kind") in ("resumed", "succeeded")
        ]
        assert kinds == ["resumed", "succeeded"]
        assert np.array_equal(np.asarray(await client.job(job.id).result()), reference[1])


async def test_a_diffusion_replica_killed_mid_job_leaves_its_tiles_to_the_other(split, reference):
    async with AsyncClient(split.address) as client:
        job = await client.upscale(IMAGE, OPTIONS)
        first = await _tiles_done(client, job.id, 2)
        victim = next(
            name
            for name in ("diffusion", "diffusion-1")
            if first[-1].provider.endswith(str(split.ports[name]))
        )
        split.kill(victim)
        final = await job.wait()
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
        assert np.array_equal(np.asarray(await job.result()), reference[1])
    await split.wait_ready(within=120)  # the supervisor restarted the replica
