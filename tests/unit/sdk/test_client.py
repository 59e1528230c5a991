"""The SDK client against a fake in-process Gateway servicer (grpc.aio on 127.0.0.1:0).

The fake keeps jobs, events, uploads, results, presets and LoRAs in dicts, records every request and
its metadata, and can fail the next calls of a method with UNAVAILABLE, refuse the next submit with
INVALID_ARGUMENT, finish each submitted job (`on_submit`) or drop a WatchJob stream mid-way. Its grid
helpers draw a fixed 2x2 grid: RenderGrid sends `overview` as a PNG in small chunks and one raw
thumbnail per tile, CaptionTiles answers "tile <index>" per tile.
`serving(fake)` starts it; tests/unit/sdk/test_cli.py drives the CLI against it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from tilesmith import AsyncClient, Client, GridRender, Region, UpscaleOptions, errors, images
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2, gateway_pb2_grpc, tiling_pb2

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
        self.result_requests: list[gateway_pb2.GetResultRequest] = []
        self.refuse_submit: tuple[str, str] | None = None  # (field, message) for the next SubmitJob
        self.on_submit: Callable[[str], None] | None = None  # called with each new job's id
        self.presets: dict[str, gateway_pb2.Preset] = {}
        self.loras: dict[str, diffusion_pb2.LoraInfo] = {}
        self.lora_uploads: list[tuple[diffusion_pb2.UploadLoraParams, bytes, int]] = []
        self.grid_requests: list[gateway_pb2.GatewayRenderGridRequest] = []
        self.caption_requests: list[gateway_pb2.CaptionTilesRequest] = []
        self.overview = (np.arange(30 * 40 * 3) % 251).astype(np.uint8).reshape(30, 40, 3)

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
            gateway_pb2.JobEvent(
                seq=seq,
                tile_done=gateway_pb2.JobTileDone(tile_index=seq - 2),
                progress=gateway_pb2.JobProgress(
                    stage=gateway_pb2.JOB_STAGE_REDRAW,
                    tiles_done=seq - 1,
                    tiles_total=n_events - 1,
                    eta_seconds=float(n_events - seq),
                    fraction=(seq - 1) / (n_events - 1),
                ),
            )
            for seq in range(2, n_events + 1)
        ]
        log += [gateway_pb2.JobEvent(seq=n_events + 1 + i, **_oneof(t)) for i, t in enumerate(terminal)]
        self.events[job_id] = log

    def finish(
        self, job_id: str, *, png: bytes | None = None, error: gateway_pb2.JobError | None = None
    ) -> None:
        """End a job: SUCCEEDED with `png` as its result, or FAILED with `error`."""
        job, log = self.jobs[job_id], self.events[job_id]
        if error is None:
            job.state = gateway_pb2.JOB_STATE_SUCCEEDED
            job.result.CopyFrom(gateway_pb2.JobResult(size=_png_size(png), image_id=f"result-{job_id}"))
            self.results[job_id] = png
            log.append(gateway_pb2.JobEvent(seq=len(log) + 1, succeeded=gateway_pb2.JobSucceeded()))
        else:
            job.state = gateway_pb2.JOB_STATE_FAILED
            job.error.CopyFrom(error)
            log.append(gateway_pb2.JobEvent(seq=len(log) + 1, failed=gateway_pb2.JobFailed(error=error)))

    # --- RPCs

    async def SubmitJob(self, request, context):
        await self._enter("SubmitJob", context)
        self.submits.append(request)
        if self.refuse_submit:
            (field, message), self.refuse_submit = self.refuse_submit, None
            await _abort_invalid(context, field, message)
        job_id = f"job-{len(self.submits)}"
        self.add_job(job_id, gateway_pb2.JOB_STATE_QUEUED)
        self.jobs[job_id].spec.CopyFrom(request.spec)
        self.jobs[job_id].kind = gateway_pb2.JobKind.Value(
            f"JOB_KIND_{request.spec.WhichOneof('spec').upper()}"
        )
        answer = gateway_pb2.Job()
        answer.CopyFrom(self.jobs[job_id])
        if self.on_submit:
            self.on_submit(job_id)
        return answer

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

    async def DeleteJob(self, request, context):
        await self._enter("DeleteJob", context)
        if self.jobs.pop(request.job_id, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        return gateway_pb2.DeleteJobResponse()

    async def ListJobs(self, request, context):
        await self._enter("ListJobs", context)
        jobs = [
            j
            for j in self.jobs.values()
            if (not request.states or j.state in request.states)
            and (not request.kinds or j.kind in request.kinds)
        ]
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
        self.result_requests.append(request)
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

    async def SavePreset(self, request, context):
        await self._enter("SavePreset", context)
        self.presets[request.preset.name] = request.preset
        return request.preset

    async def GetPreset(self, request, context):
        await self._enter("GetPreset", context)
        if request.name not in self.presets:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no preset {request.name!r}")
        return self.presets[request.name]

    async def ListPresets(self, request, context):
        await self._enter("ListPresets", context)
        return gateway_pb2.ListPresetsResponse(presets=[self.presets[n] for n in sorted(self.presets)])

    async def DeletePreset(self, request, context):
        await self._enter("DeletePreset", context)
        if self.presets.pop(request.name, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no preset {request.name!r}")
        return gateway_pb2.DeletePresetResponse()

    async def ListModels(self, request, context):
        await self._enter("ListModels", context)
        return diffusion_pb2.ListModelsResponse(
            profile="tiny",
            device="cpu",
            dtype="float32",
            max_batch_size=4,
            models=[
                diffusion_pb2.ModelInfo(
                    name="tiny-sdxl",
                    kind=diffusion_pb2.MODEL_KIND_CHECKPOINT,
                    base_architecture=common_pb2.BASE_ARCHITECTURE_SDXL,
                    loaded=True,
                    is_default=True,
                )
            ],
        )

    async def ListLoras(self, request, context):
        await self._enter("ListLoras", context)
        return diffusion_pb2.ListLorasResponse(loras=[self.loras[n] for n in sorted(self.loras)])

    async def UploadLora(self, request_iterator, context):
        await self._enter("UploadLora", context)
        params = (await anext(aiter(request_iterator))).params
        parts = [request.data async for request in request_iterator]
        data = b"".join(parts)
        self.lora_uploads.append((params, data, len(parts)))
        if params.name in self.loras and not params.overwrite:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"LoRA {params.name!r} exists")
        if len(data) != params.total_bytes or hashlib.sha256(data).hexdigest() != params.sha256:
            await _abort_invalid(context, "params.sha256", "does not match the bytes received")
        self.loras[params.name] = diffusion_pb2.LoraInfo(
            name=params.name,
            base_architecture=common_pb2.BASE_ARCHITECTURE_SDXL,
            compatible=True,
            size_bytes=len(data),
            sha256=params.sha256,
            metadata=params.metadata,
        )
        return self.loras[params.name]

    async def DeleteLora(self, request, context):
        await self._enter("DeleteLora", context)
        if self.loras.pop(request.name, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no LoRA {request.name!r}")
        return diffusion_pb2.DeleteLoraResponse()

    async def RenderGrid(self, request, context):
        await self._enter("RenderGrid", context)
        self.grid_requests.append(request)
        if request.max_side and not 64 <= request.max_side <= 4096:
            await _abort_invalid(context, "max_side", f"64..4096 (0: 1024), got {request.max_side}")
        yield gateway_pb2.GatewayRenderGridResponse(layout=_LAYOUT)
        overview = images.to_proto(self.overview, "png")
        for chunk in images.iter_chunks(overview, chunk_bytes=97):
            yield gateway_pb2.GatewayRenderGridResponse(overview=chunk)
        if request.thumbnail_size:
            for tile in _LAYOUT.plan.tiles:
                pixels = np.full((8, 8, 3), tile.index, dtype=np.uint8)
                thumbnail = tiling_pb2.TileImage(tile=tile, image=images.to_proto(pixels))
                yield gateway_pb2.GatewayRenderGridResponse(thumbnail=thumbnail)

    async def CaptionTiles(self, request, context):
        await self._enter("CaptionTiles", context)
        self.caption_requests.append(request)
        indices = list(request.tile_indices) or [tile.index for tile in _LAYOUT.plan.tiles]
        for done, index in enumerate(indices, start=1):
            yield gateway_pb2.CaptionTilesResponse(
                index=index, caption=f"tile {index}", model="tiny", done=done, total=len(indices)
            )

    async def AnalyzeImage(self, request, context):
        await self._enter("AnalyzeImage", context)
        return bridge_pb2.AnalyzeImageResponse(
            description=f"{request.image_id}: {request.params.instruction or 'described'}",
            suggested_prompt="a castle",
            provider="internal",
        )

    async def ListProviders(self, request, context):
        await self._enter("ListProviders", context)
        return bridge_pb2.ListProvidersResponse(
            providers=[
                bridge_pb2.ProviderInfo(
                    name="internal",
                    kind=bridge_pb2.PROVIDER_KIND_INTERNAL,
                    capabilities=[bridge_pb2.PROVIDER_CAPABILITY_IMAGE_TO_IMAGE],
                    available=True,
                )
            ]
        )


_LAYOUT = gateway_pb2.GridLayout(
    working_size=common_pb2.Size(width=80, height=60),
    plan=common_pb2.GridPlan(
        rows=2,
        cols=2,
        tiles=[
            common_pb2.Tile(index=2 * row + col, row=row, col=col) for row in range(2) for col in range(2)
        ],
    ),
)


async def _abort_invalid(context: grpc.aio.ServicerContext, field: str, message: str) -> None:
    """Abort as Tilesmith servers do: the field in trailing metadata, "field: message" as details."""
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field}: {message}",
        trailing_metadata=(("tilesmith-field", field), ("x-request-id", "req-2")),
    )


def _png_size(png: bytes) -> common_pb2.Size:
    width, height = Image.open(io.BytesIO(png)).size
    return common_pb2.Size(width=width, height=height)


def _oneof(event: gateway_pb2.JobEvent) -> dict:
    kind = event.WhichOneof("kind")
    return {kind: getattr(event, kind)}


def _failed(code: grpc.StatusCode, message: str) -> gateway_pb2.JobEvent:
    return gateway_pb2.JobEvent(
        failed=gateway_pb2.JobFailed(
            error=gateway_pb2.JobError(code=code.value[0], message=message, request_id="req-1")
        )
    )


@contextlib.asynccontextmanager
async def serving(fake: FakeGateway) -> AsyncIterator[str]:
    """Serve `fake` on 127.0.0.1:0 for the duration; yields its address."""
    server = grpc.aio.server()
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    async with serving(fake) as address:
        yield fake, address


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


def test_options_from_settings_reverse_to_settings() -> None:
    options = UpscaleOptions(
        target=(640, 480),
        fit="cover",
        supersampling=2.0,
        tile_size=(512, 768),
        overlap=64,
        feather="linear",
        prompt="castle",
        strength=0.5,
        seed=3,
        scheduler="euler",
        controlnet=False,
        ip_adapter_image="img-2",
        loras=(("a", 0.5), ("b", 1.0)),
        seam_fix=True,
        seam_fix_band=32,
        color_fix="wavelet",
        auto_caption=True,
        preupscaler="lanczos",
        keep_intermediates=True,
    )
    assert UpscaleOptions.from_settings(options.to_settings()) == options
    assert UpscaleOptions.from_settings(UpscaleOptions(target="4K").to_settings()).target == "4K"
    assert UpscaleOptions.from_settings(UpscaleOptions(target=3.0).to_settings()).target == 3.0
    assert UpscaleOptions.from_settings(gateway_pb2.UpscaleSettings()) == UpscaleOptions()


# --- LoRAs and providers ----------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_upload_lora_sends_size_and_digest_then_the_file_in_chunks(client, fake, tmp_path) -> None:
    data = bytes(range(256)) * 10
    path = tmp_path / "ink.safetensors"
    path.write_bytes(data)
    metadata = diffusion_pb2.LoraMetadata(type=diffusion_pb2.LORA_TYPE_STYLE, trigger_words=["ink"])
    info = await client.upload_lora(path, "ink", metadata=metadata, chunk_bytes=1000)
    params, received, n_chunks = fake.lora_uploads[-1]
    assert received == data
    assert n_chunks == 3
    assert params.total_bytes == len(data)
    assert params.sha256 == hashlib.sha256(data).hexdigest()
    assert params.metadata == metadata
    assert not params.overwrite
    assert info.name == "ink"
    assert info.metadata.trigger_words == ["ink"]

    with pytest.raises(errors.AlreadyExists):
        await client.upload_lora(data, "ink")
    assert (await client.upload_lora(str(path), "ink", overwrite=True)).sha256 == params.sha256
    assert fake.lora_uploads[-1][0].overwrite


@pytest.mark.asyncio(loop_scope="session")
async def test_delete_lora_and_list_providers(client, fake) -> None:
    await client.upload_lora(b"weights", "gone")
    await client.delete_lora("gone")
    assert "gone" not in fake.loras
    with pytest.raises(errors.NotFound):
        await client.delete_lora("gone")
    providers = await client.list_providers()
    assert [p.name for p in providers.providers] == ["internal"]


# --- Grid, captions, analysis ----------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_render_grid_reassembles_the_overview_and_keeps_thumbnails_in_order(client, fake) -> None:
    rendered = await client.render_grid(
        "img-1", UpscaleOptions(target="4K"), selected=[3, 1], processed=[0], max_side=512, thumbnail_size=64
    )
    request = fake.grid_requests[-1]
    assert (request.image_id, list(request.selected), list(request.processed)) == ("img-1", [3, 1], [0])
    assert (request.max_side, request.thumbnail_size) == (512, 64)
    assert request.settings.target.preset == gateway_pb2.RESOLUTION_PRESET_4K
    assert rendered.layout == _LAYOUT
    assert rendered.overview.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rendered.overview), fake.overview)  # 97-byte chunks
    assert [index for index, _ in rendered.thumbnails] == [0, 1, 2, 3]
    assert [np.asarray(thumbnail)[0, 0, 0] for _, thumbnail in rendered.thumbnails] == [0, 1, 2, 3]


@pytest.mark.asyncio(loop_scope="session")
async def test_render_grid_uploads_pixels_and_is_retried_on_unavailable(client, fake, rng) -> None:
    fake.unavailable["RenderGrid"] = 2
    rendered = await client.render_grid(_rgba(rng))
    assert fake.grid_requests[-1].image_id in fake.uploads
    assert fake.calls["RenderGrid"] == 3
    assert rendered.thumbnails == ()
    np.testing.assert_array_equal(np.asarray(rendered.overview), fake.overview)


@pytest.mark.asyncio(loop_scope="session")
async def test_render_grid_refusal_names_the_field(client) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        await client.render_grid("img-1", max_side=10)
    assert info.value.field == "max_side"
    assert "got 10" in info.value.message
    assert info.value.request_id == "req-2"


@pytest.mark.asyncio(loop_scope="session")
async def test_caption_tiles_streams_one_answer_per_tile_in_order(client, fake) -> None:
    options = UpscaleOptions(caption_instruction="one word")
    answers = [answer async for answer in client.caption_tiles("img-1", options)]
    assert [(a.index, a.caption, a.done, a.total) for a in answers] == [
        (0, "tile 0", 1, 4),
        (1, "tile 1", 2, 4),
        (2, "tile 2", 3, 4),
        (3, "tile 3", 4, 4),
    ]
    assert fake.caption_requests[-1].settings.caption.instruction == "one word"
    answers = [answer async for answer in client.caption_tiles("img-1", tile_indices=[3, 1])]
    assert [a.index for a in answers] == [3, 1]
    assert list(fake.caption_requests[-1].tile_indices) == [3, 1]


@pytest.mark.asyncio(loop_scope="session")
async def test_caption_tiles_is_not_retried(client, fake) -> None:
    fake.unavailable["CaptionTiles"] = 1
    with pytest.raises(errors.Unavailable, match="backend down") as info:
        [answer async for answer in client.caption_tiles("img-1")]
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert fake.calls["CaptionTiles"] == 1


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
async def test_wait_passes_each_event_from_after_seq_to_on_event(client, fake) -> None:
    fake.add_job(
        "j", gateway_pb2.JOB_STATE_SUCCEEDED, gateway_pb2.JobEvent(succeeded=gateway_pb2.JobSucceeded())
    )
    seen: list[int] = []
    job = await client.job("j").wait(on_event=lambda event: seen.append(event.seq), after_seq=2)
    assert job.state == gateway_pb2.JOB_STATE_SUCCEEDED
    assert seen == [3, 4]
    assert fake.watch_after_seqs == [2]


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

    def lora_flow() -> tuple[str, list[str]]:
        with Client(address, token=TOKEN) as client:
            info = client.upload_lora(b"weights", "sync-lora")
            providers = [p.name for p in client.list_providers().providers]
            client.delete_lora("sync-lora")
            return info.name, providers

    def grid_flow() -> tuple[GridRender, list[int], str, str | None, type[Exception]]:
        with Client(address, token=TOKEN) as client:
            rendered = client.render_grid("img-1", selected=[2], thumbnail_size=32)
            captions = [answer.index for answer in client.caption_tiles("img-1", tile_indices=[2, 0])]
            analysis = client.analyze_image("img-1", instruction="the sky")
            with pytest.raises(errors.InvalidArgument) as refused:
                client.render_grid("img-1", max_side=5000)
            fake.unavailable["CaptionTiles"] = 1
            with pytest.raises(errors.Unavailable) as down:
                list(client.caption_tiles("img-1"))
            return rendered, captions, analysis.description, refused.value.field, type(down.value)

    rendered, captions, description, field, down = await asyncio.to_thread(grid_flow)
    assert rendered.layout == _LAYOUT
    np.testing.assert_array_equal(np.asarray(rendered.overview), fake.overview)
    assert [index for index, _ in rendered.thumbnails] == [0, 1, 2, 3]
    assert list(fake.grid_requests[0].selected) == [2]
    assert captions == [2, 0]
    assert description == "img-1: the sky"
    assert (field, down) == ("max_side", errors.Unavailable)

    assert await asyncio.to_thread(lora_flow) == ("sync-lora", ["internal"])
    assert not fake.loras

    seqs, final, image, listed = await asyncio.to_thread(flow)
    assert seqs == [1, 2, 3, 4]
    assert final.state == gateway_pb2.JOB_STATE_SUCCEEDED
    np.testing.assert_array_equal(np.asarray(image), pixels)
    assert listed == ["job-1"]
    assert fake.submits[-1].spec.upscale.settings.target.scale == 2.0
