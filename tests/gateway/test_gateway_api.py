"""The gateway's non-job RPCs and its door checks, on the embedded stack: malformed specs name their
field, uploads, presets, idempotent submits, grid helpers, proxies, health and metrics."""

from __future__ import annotations

import asyncio
import io
import zlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from services.common.server import channel_options
from tests.gateway.conftest import FAST, noise
from tests.services.helpers import scrape
from tilesmith import UpscaleOptions, errors, images
from tilesmith.v1 import bridge_pb2, common_pb2, diffusion_pb2, gateway_pb2_grpc
from tilesmith.v1 import gateway_pb2 as pb

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def stub(stack):
    async with grpc.aio.insecure_channel(stack.address, options=channel_options(64 * 1024 * 1024)) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


async def upload(client, pixels) -> str:
    return await client.upload_image(pixels)


def _trailing(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    return dict(exc.trailing_metadata() or ())


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (pb.UpscaleSettings(strength=1.5), "upscale.settings.strength"),
        (pb.UpscaleSettings(steps=0), "upscale.settings.steps"),
        (
            pb.UpscaleSettings(overlap=40, tile_size=common_pb2.Size(width=64, height=64)),
            "upscale.settings.overlap",
        ),
        (
            pb.UpscaleSettings(tile_size=common_pb2.Size(width=60, height=64)),
            "upscale.settings.tile_size.width",
        ),
        (pb.UpscaleSettings(target=pb.UpscaleTarget(scale=40.0)), "upscale.settings.target.scale"),
        (pb.UpscaleSettings(cfg_scale=-1.0), "upscale.settings.cfg_scale"),
    ],
)
async def test_malformed_settings_are_refused_naming_the_field(client, stub, settings, field):
    image_id = await upload(client, noise(32, 32))
    spec = pb.JobSpec(upscale=pb.UpscaleSpec(image_id=image_id, settings=settings))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitJob(pb.SubmitJobRequest(spec=spec))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _trailing(caught.value)["tilesmith-field"] == field
    assert field in caught.value.details()


async def test_door_checks_on_indices_images_and_kinds(client, stub):
    image_id = await upload(client, noise(32, 32))
    cases = [
        (pb.JobSpec(), grpc.StatusCode.INVALID_ARGUMENT, "spec"),
        (pb.JobSpec(upscale=pb.UpscaleSpec(image_id="f" * 32)), grpc.StatusCode.NOT_FOUND, None),
        (
            pb.JobSpec(upscale=pb.UpscaleSpec(image_id=image_id, tile_prompts={5: "a cat"})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "upscale.tile_prompts[5]",
        ),
        (
            pb.JobSpec(upscale=pb.UpscaleSpec(image_id=image_id, selected_tiles=[0, 0])),
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
        ),
        (
            pb.JobSpec(
                upscale=pb.UpscaleSpec(
                    image_id=image_id,
                    settings=pb.UpscaleSettings(loras=[common_pb2.LoraRef(name="no-such-lora", weight=1.0)]),
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
        (
            pb.JobSpec(generate=pb.GenerateSpec(prompt="")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "generate.prompt",
        ),
    ]
    for spec, code, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitJob(pb.SubmitJobRequest(spec=spec))
        assert caught.value.code() == code, (spec, caught.value.details())
        if field is not None:
            assert _trailing(caught.value)["tilesmith-field"] == field
    # Nothing was stored for the refused specs.
    page = await stub.ListJobs(pb.ListJobsRequest(states=[pb.JOB_STATE_QUEUED]))
    assert not page.jobs


async def test_an_idempotent_submit_returns_the_first_job(client, stub):
    image_id = await upload(client, noise(32, 32, seed=1))
    spec = pb.JobSpec(upscale=FAST.to_spec(image_id))
    first = await stub.SubmitJob(pb.SubmitJobRequest(spec=spec, idempotency_key="retry-me"))
    second = await stub.SubmitJob(pb.SubmitJobRequest(spec=spec, idempotency_key="retry-me"))
    assert first.id == second.id
    assert (await client.job(first.id).wait()).state == pb.JOB_STATE_SUCCEEDED


async def test_uploads_keep_alpha_apply_exif_and_dedupe(client, stub, tmp_path):
    rgba = noise(40, 30, channels=4, seed=2)
    first = await client.upload_image(rgba)
    assert first == await client.upload_image(rgba)
    # A file as is (no encoding in its header: the gateway reads the format from the bytes), with an
    # EXIF orientation that turns it on its side.
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    Image.fromarray(noise(40, 30, seed=3)).save(buffer, "JPEG", exif=exif)
    path = tmp_path / "photo.jpg"
    path.write_bytes(buffer.getvalue())
    image_id = await client.upload_image(path)
    layout = await client.plan_grid(image_id, UpscaleOptions(target=1.0))
    assert (layout.input_size.width, layout.input_size.height) == (30, 40)


async def test_uploads_that_are_not_images_or_too_large_are_refused(client):
    with pytest.raises(errors.InvalidArgument):
        await client.upload_image(b"definitely not a picture")
    with pytest.raises(errors.ImageTooLarge):
        await client.upload_image(_png_header_only(20000, 20000))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size over the pixel cap (a decompression bomb's calling card)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(
        4, "big"
    )  # IHDR's checksum, so only the size is wrong
    return bytes(data)


async def test_presets_round_trip(client):
    options = UpscaleOptions(target="4K", strength=0.4, seam_fix=True, loras=())
    saved = await client.save_preset("crisp 4K", options, description="for key art")
    assert saved.settings.target.preset == pb.RESOLUTION_PRESET_4K
    assert saved.created_time.seconds > 0
    assert [p.name for p in await client.list_presets()] == ["crisp 4K"]
    assert (await client.get_preset("crisp 4K")).settings.strength == pytest.approx(0.4)
    with pytest.raises(errors.InvalidArgument) as caught:
        await client.save_preset("bad", UpscaleOptions(strength=3.0))
    assert caught.value.field == "preset.settings.strength"
    await client.delete_preset("crisp 4K")
    with pytest.raises(errors.NotFound):
        await client.get_preset("crisp 4K")


async def test_plan_and_render_grid(client, stub):
    image_id = await upload(client, noise(128, 64, seed=4))
    settings = UpscaleOptions(target=2.0, tile_size=64, overlap=16, seam_fix=True).to_settings()
    layout = await stub.PlanGrid(pb.GatewayPlanGridRequest(image_id=image_id, settings=settings))
    assert (layout.working_size.width, layout.working_size.height) == (256, 128)
    assert len(layout.plan.tiles) == layout.plan.rows * layout.plan.cols > 1
    assert layout.seam_plan.offset
    request = pb.GatewayRenderGridRequest(
        image_id=image_id, settings=settings, selected=[1], processed=[0], max_side=256, thumbnail_size=32
    )
    parts = [message async for message in stub.RenderGrid(request)]
    assert parts[0].WhichOneof("part") == "layout"
    overview = images.assemble([p.overview for p in parts if p.WhichOneof("part") == "overview"])
    assert max(overview.width, overview.height) <= 256
    assert Image.open(io.BytesIO(overview.data)).size == (overview.width, overview.height)
    thumbnails = [p.thumbnail for p in parts if p.WhichOneof("part") == "thumbnail"]
    assert [t.tile.index for t in thumbnails] == list(range(len(layout.plan.tiles)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PlanGrid(pb.GatewayPlanGridRequest(image_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_model_and_provider_proxies(client, stub):
    models = await client.list_models()
    assert models.profile == "tiny"
    assert any(m.kind == diffusion_pb2.MODEL_KIND_UPSCALER for m in models.models)
    loras = await client.list_loras()
    assert loras.rules.max_loras >= 1
    providers = await stub.ListProviders(bridge_pb2.ListProvidersRequest())
    assert [p.name for p in providers.providers] == ["internal"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CaptionTiles(pb.CaptionTilesRequest(image_id="x")).read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_and_metrics(stack):
    async with grpc.aio.insecure_channel(stack.address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    text = await asyncio.to_thread(scrape, stack.server.metrics_port)
    for name in (
        "gateway_jobs_total",
        "gateway_job_duration_seconds_bucket",
        "gateway_queue_jobs",
        "diffusion_denoise_step_duration_seconds_bucket",
        "tiling_tiles_processed_total",
        'grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitJob"',
    ):
        assert name in text, name
