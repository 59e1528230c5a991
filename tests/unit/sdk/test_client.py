"""The SDK client against a fake in-process Gateway servicer (grpc.aio on 127.0.0.1:0).

The fake keeps jobs, events, uploads and results in dicts, records every request and its metadata,
and can fail the next calls of a method with UNAVAILABLE or drop a WatchJob stream mid-way.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from tilesmith import AsyncClient, Client, Region, UpscaleOptions, errors, images
from tilesmith.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

TOKEN = "s3cret"


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.metadata: list[dict[str, str]] = []
        self.unavailable: Counter[str] = Counter()  # method -> calls still to fail with UNAVAILABLE
        self.drop_watch_after: int | None = None  # drop the next WatchJob stream after this many events
        self.watch_after_seqs: list[int] = []
        self.submits: list[gateway_pb2.SubmitJobRequest] = []
        self.uploads: dict[str, bytes] = {}
        self.upload_chunks: list[int] = []
        self.filenames: list[str] = []
        self.jobs: dict[str, gateway_pb2.Job] = {}
        self.events: dict[str, list[gateway_pb2.JobEvent]] = defaultdict(list)
        self.results: dict[str, bytes] = {}

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[method] += 1
        self.metadata.append(dict(context.invocation_metadata()))
        if self.unavailable[method]:
            self.unavailable[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "backend down")

    # --- helpers for tests

    def add_job(self, job_id: str, state: int, *terminal: gateway_pb2.JobEvent, n_events: int = 3) -> None:
        self.jobs[job_id] = gateway_pb2.Job(id=job_id, state=state, kind=gateway_pb2.JOB_KIND_UPSCALE)
        log = [gateway_pb2.JobEvent(seq=1, accepted=gateway_pb2.JobAccepted(seed=7))]
        log += [
            gateway_pb2.JobEvent(seq=seq, tile_done=gateway_pb2.JobTileDone(tile_index=seq - 2))
            for seq in range(2, n_events + 1)
        ]
        log += [gateway_pb2.JobEvent(seq=n_events + 1 + i, **_oneof(t)) for i, t in enumerate(terminal)]
        self.events[job_id] = log

    # --- RPCs

    async def SubmitJob(self, request, context):
        await self._enter("SubmitJob", context)
        self.submits.append(request)
        job_id = f"job-{len(self.submits)}"
        self.add_job(job_id, gateway_pb2.JOB_STATE_QUEUED)
        self.jobs[job_id].spec.CopyFrom(request.spec)
        return self.jobs[job_id]

    async def GetJob(self, request, context):
        await self._enter("GetJob", context)
        if request.job_id not in self.jobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        return self.jobs[request.job_id]

    async def CancelJob(self, request, context):
        await self._enter("CancelJob", context)
        job = self.jobs[request.job_id]
        job.state = gateway_pb2.JOB_STATE_CANCELLED
        log = self.events[request.job_id]
        log.append(
            gateway_pb2.JobEvent(seq=len(log) + 1, cancelled=gateway_pb2.JobCancelled(reason="client"))
        )
        return job

    async def ListJobs(self, request, context):
        await self._enter("ListJobs", context)
        jobs = [j for j in self.jobs.values() if not request.states or j.state in request.states]
        start = int(request.page_token or 0)
        end = start + (request.page_size or 50)
        return gateway_pb2.ListJobsResponse(
            jobs=jobs[start:end], next_page_token=str(end) if end < len(jobs) else ""
        )

    async def WatchJob(self, request, context):
        await self._enter("WatchJob", context)
        self.watch_after_seqs.append(request.after_seq)
        for sent, event in enumerate(e for e in self.events[request.job_id] if e.seq > request.after_seq):
            if sent == self.drop_watch_after:
                self.drop_watch_after = None
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream dropped")
            yield event

    async def GetResult(self, request, context):
        await self._enter("GetResult", context)
        data = self.results[request.job_id]
        msg = common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG, data=data)
        for chunk in images.iter_chunks(msg, chunk_bytes=97):
            yield chunk

    async def UploadImage(self, request_iterator, context):
        await self._enter("UploadImage", context)
        first = await anext(aiter(request_iterator))
        self.filenames.append(first.params.filename)
        parts = []
        async for request in request_iterator:
            parts.append(request.image)
        self.upload_chunks.append(len(parts))
        data = images.assemble(parts).data
        image_id = f"img-{len(self.uploads) + 1}"
        self.uploads[image_id] = data
        return gateway_pb2.UploadImageResponse(image_id=image_id, size_bytes=len(data))


def _oneof(event: gateway_pb2.JobEvent) -> dict:
    kind = event.WhichOneof("kind")
    return {kind: getattr(event, kind)}


def _failed(code: grpc.StatusCode, message: str) -> gateway_pb2.JobEvent:
    return gateway_pb2.JobEvent(
        failed=gateway_pb2.JobFailed(
            error=gateway_pb2.JobError(code=code.value[0], message=message, request_id="req-1")
        )
    )


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    server = grpc.aio.server()
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield fake, f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def client(gateway: tuple[FakeGateway, str]) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(gateway[1], token=TOKEN, backoff=0.01) as client:
        yield client


@pytest.fixture
def fake(gateway: tuple[FakeGateway, str]) -> FakeGateway:
    return gateway[0]


def _rgba(rng: np.random.Generator, height: int = 24, width: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# --- Uploads ----------------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_upload_pixels_in_chunks_keeps_alpha(client, fake, rng) -> None:
    pixels = _rgba(rng)
    image_id = await client.upload_image(Image.fromarray(pixels), chunk_bytes=256)
    stored = fake.uploads[image_id]
    assert fake.upload_chunks[-1] == -(-len(stored) // 256) > 1
    np.testing.assert_array_equal(images.decode_bytes(stored), pixels)


@pytest.mark.asyncio(loop_scope="session")
async def test_upload_file_is_sent_as_is(client, fake, rng, tmp_path: Path) -> None:
    path = tmp_path / "asset.png"
    path.write_bytes(_png(_rgba(rng)))
    image_id = await client.upload_image(path, chunk_bytes=100)
    assert fake.uploads[image_id] == path.read_bytes()
    assert fake.filenames[-1] == "asset.png"
    assert fake.uploads[await client.upload_image(path.read_bytes())] == path.read_bytes()


# --- Submitting -------------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_upscale_options_become_exactly_these_spec_fields(client, fake) -> None:
    options = UpscaleOptions(target="4K", strength=0.5, loras=[("pixel-art", 0.8)])
    job = await client.upscale(
        "img-9",
        options,
        seam_fix=True,
        tile_prompts={0: "a castle"},
        regions=[Region((1, 2, 30, 40), prompt="face")],
        label="castle",
    )
    request = fake.submits[-1]
    assert job.id == "job-1"
    assert request.idempotency_key
    assert request.spec.label == "castle"
    spec = request.spec.upscale
    assert spec.image_id == "img-9"
    assert dict(spec.tile_prompts) == {0: "a castle"}
    assert spec.regions[0].rect == common_pb2.Rect(x=1, y=2, width=30, height=40)
    assert not spec.regions[0].HasField("padding")
    settings = spec.settings
    assert settings.target.preset == gateway_pb2.RESOLUTION_PRESET_4K
    assert settings.strength == pytest.approx(0.5)
    assert [(lora.name, lora.weight) for lora in settings.loras] == [("pixel-art", pytest.approx(0.8))]
    assert settings.seam_fix.enabled
    assert not settings.seam_fix.HasField("strength")
    set_fields = {descriptor.name for descriptor, _ in settings.ListFields()}
    assert set_fields == {"target", "strength", "loras", "seam_fix"}  # the rest: server defaults


@pytest.mark.asyncio(loop_scope="session")
async def test_upscale_uploads_pixels_first(client, fake, rng) -> None:
    job = await client.upscale(
        _rgba(rng), target=(640, 480), fit="cover", seed=5, ip_adapter_image=_rgba(rng)
    )
    settings = fake.submits[-1].spec.upscale.settings
    assert fake.submits[-1].spec.upscale.image_id in fake.uploads
    assert settings.ip_adapter.image_id in fake.uploads
    assert not settings.ip_adapter.HasField("scale")
    assert settings.target.size == common_pb2.Size(width=640, height=480)
    assert settings.target.fit == gateway_pb2.TARGET_FIT_COVER
    assert settings.seed == 5
    assert job.job.state == gateway_pb2.JOB_STATE_QUEUED


@pytest.mark.asyncio(loop_scope="session")
async def test_bad_option_names_are_refused_with_the_field(client) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        await client.upscale("img-1", color_fix="sepia")
    assert info.value.field == "color_fix"
    assert "wavelet" in info.value.message


# --- Events, wait, result, cancel -------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_events_resume_after_a_dropped_stream(client, fake) -> None:
    fake.add_job(
        "j",
        gateway_pb2.JOB_STATE_RUNNING,
        gateway_pb2.JobEvent(succeeded=gateway_pb2.JobSucceeded()),
        n_events=5,
    )
    fake.drop_watch_after = 3
    seqs = [event.seq async for event in client.job("j").events()]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert fake.watch_after_seqs == [0, 3]


@pytest.mark.asyncio(loop_scope="session")
async def test_events_give_up_after_repeated_drops(client, fake) -> None:
    fake.add_job("j", gateway_pb2.JOB_STATE_RUNNING)
    fake.unavailable["WatchJob"] = 10
    with pytest.raises(errors.Unavailable):
        [event async for event in client.job("j").events()]
    assert fake.calls["WatchJob"] == 4  # 1 + retries


@pytest.mark.asyncio(loop_scope="session")
async def test_wait_returns_the_succeeded_job(client, fake) -> None:
    fake.add_job(
        "j", gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JobEvent(succeeded=gateway_pb2.JobSucceeded())
    )
    job = await client.job("j").wait()
    assert job.state == gateway_pb2.JOB_STATE_SUCCEEDED


@pytest.mark.asyncio(loop_scope="session")
async def test_wait_raises_the_mapped_error_of_a_failed_job(client, fake) -> None:
    message = "upscale.settings.strength: must be in (0, 1], got 0"
    fake.add_job("j", gateway_pb2.JOB_STATE_FAILED, _failed(grpc.StatusCode.INVALID_ARGUMENT, message))
    fake.jobs["j"].error.CopyFrom(fake.events["j"][-1].failed.error)
    with pytest.raises(errors.InvalidArgument) as info:
        await client.job("j").wait()
    assert info.value.field == "upscale.settings.strength"
    assert info.value.message == "must be in (0, 1], got 0"
    assert info.value.request_id == "req-1"
    assert info.value.job.id == "j"


@pytest.mark.asyncio(loop_scope="session")
async def test_wait_raises_unavailable_for_a_backend_failure(client, fake) -> None:
    fake.add_job("j", gateway_pb2.JOB_STATE_FAILED, _failed(grpc.StatusCode.UNAVAILABLE, "diffusion down"))
    fake.jobs["j"].error.CopyFrom(fake.events["j"][-1].failed.error)
    with pytest.raises(errors.Unavailable, match="diffusion down"):
        await client.job("j").wait()


@pytest.mark.asyncio(loop_scope="session")
async def test_cancel_then_wait_raises_cancelled(client, fake) -> None:
    job = await client.upscale("img-1")
    cancelled = await job.cancel()
    assert cancelled.state == gateway_pb2.JOB_STATE_CANCELLED
    assert job.done
    with pytest.raises(errors.Cancelled):
        await job.wait()


@pytest.mark.asyncio(loop_scope="session")
async def test_result_reassembles_chunks_into_rgba_pil(client, fake, rng) -> None:
    pixels = _rgba(rng, 40, 50)
    fake.add_job("j", gateway_pb2.JOB_STATE_SUCCEEDED)
    fake.results["j"] = _png(pixels)
    image = await client.job("j").result()
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(image), pixels)


@pytest.mark.asyncio(loop_scope="session")
async def test_result_is_retried_on_unavailable(client, fake, rng) -> None:
    fake.add_job("j", gateway_pb2.JOB_STATE_SUCCEEDED)
    fake.results["j"] = _png(_rgba(rng))
    fake.unavailable["GetResult"] = 2
    assert (await client.job("j").result()).size == (32, 24)
    assert fake.calls["GetResult"] == 3


# --- Listing, metadata, retries, errors -------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_list_jobs_walks_every_page(client, fake) -> None:
    for i in range(5):
        fake.add_job(f"j{i}", gateway_pb2.JOB_STATE_RUNNING if i % 2 else gateway_pb2.JOB_STATE_FAILED)
    ids = [job.id async for job in client.list_jobs(page_size=2)]
    assert ids == ["j0", "j1", "j2", "j3", "j4"]
    assert fake.calls["ListJobs"] == 3
    assert [job.id async for job in client.list_jobs(state="running")] == ["j1", "j3"]


@pytest.mark.asyncio(loop_scope="session")
async def test_every_call_carries_the_token(client, fake) -> None:
    await client.upload_image(b"not checked by the fake")
    await client.upscale("img-1")
    await client.get_job("job-1")
    assert fake.metadata
    assert all(md.get("authorization") == f"Bearer {TOKEN}" for md in fake.metadata)


@pytest.mark.asyncio(loop_scope="session")
async def test_unavailable_is_retried_on_get_job_but_not_on_submit(client, fake) -> None:
    fake.add_job("j", gateway_pb2.JOB_STATE_RUNNING)
    fake.unavailable["GetJob"] = 2
    assert (await client.get_job("j")).id == "j"
    assert fake.calls["GetJob"] == 3

    fake.unavailable["SubmitJob"] = 1
    with pytest.raises(errors.Unavailable) as info:
        await client.upscale("img-1")
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert fake.calls["SubmitJob"] == 1
    assert not fake.submits


@pytest.mark.asyncio(loop_scope="session")
async def test_not_found_is_mapped(client) -> None:
    with pytest.raises(errors.NotFound, match="no job nope"):
        await client.get_job("nope")


# --- The blocking client ----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_sync_client_runs_the_same_flow(gateway, rng) -> None:
    fake, address = gateway
    pixels = _rgba(rng)

    def flow() -> tuple[list[int], gateway_pb2.Job, Image.Image, list[str]]:
        with Client(address, token=TOKEN) as client:
            job = client.upscale(pixels, target=2.0)
            fake.jobs[job.id].state = gateway_pb2.JOB_STATE_SUCCEEDED
            fake.events[job.id].append(gateway_pb2.JobEvent(seq=4, succeeded=gateway_pb2.JobSucceeded()))
            fake.results[job.id] = fake.uploads[fake.submits[-1].spec.upscale.image_id]
            seqs = [event.seq for event in job.events()]
            return seqs, job.wait(), job.result(), [j.id for j in client.list_jobs()]

    seqs, final, image, listed = await asyncio.to_thread(flow)
    assert seqs == [1, 2, 3, 4]
    assert final.state == gateway_pb2.JOB_STATE_SUCCEEDED
    np.testing.assert_array_equal(np.asarray(image), pixels)
    assert listed == ["job-1"]
    assert fake.submits[-1].spec.upscale.settings.target.scale == 2.0
