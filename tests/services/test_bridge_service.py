"""The bridge through a real in-process gRPC server, against fake providers on a real local HTTP server."""

from __future__ import annotations

import asyncio
import io

import grpc
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from services.bridge.app import build_server
from services.bridge.settings import BridgeSettings
from services.common.server import channel_options
from tests.unit.bridge.conftest import FAL_KEY, OPENROUTER_KEY, REPLICATE_KEY, Sleeps, png_bytes
from tests.unit.bridge.fake_server import FakeProviders
from tilesmith import images
from tilesmith.v1 import bridge_pb2, bridge_pb2_grpc, common_pb2

from .helpers import rpc_error, scrape, stream

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def fake_providers():
    with FakeProviders() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bridge(fake_providers, tmp_path_factory):
    settings = BridgeSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        fal_key=FAL_KEY,
        zai_api_key=None,  # zai is listed unavailable and skipped
        replicate_api_token=REPLICATE_KEY,
        openrouter_api_key=OPENROUTER_KEY,
        max_retries=1,
        poll_interval_seconds=0,
        breaker_failure_threshold=3,
        reference_dir=tmp_path_factory.mktemp("refs"),
        **fake_providers.urls(),
    )
    server, servicer = build_server(settings, sleep=Sleeps())
    await server.start()
    await servicer.start()
    await server.set_serving()
    async with grpc.aio.insecure_channel(server.address, options=channel_options(64 << 20)) as channel:
        yield bridge_pb2_grpc.BridgeStub(channel), server, servicer
    await servicer.close()
    await server.stop(0)


def _chunks(data: bytes, encoding=common_pb2.IMAGE_ENCODING_PNG):
    return list(images.iter_chunks(common_pb2.Image(encoding=encoding, data=data), chunk_bytes=100))


async def _collect(call):
    messages = [message async for message in call]
    image = images.assemble([m.image for m in messages if m.WhichOneof("part") == "image"])
    return messages, image, messages[-1].result


async def test_list_providers_reports_keys_chains_and_circuits(bridge) -> None:
    stub, _, _ = bridge
    response = await stub.ListProviders(bridge_pb2.ListProvidersRequest())
    by_name = {p.name: p for p in response.providers}
    assert list(by_name) == ["fal", "zai", "openrouter", "replicate"]
    assert not by_name["zai"].available
    assert by_name["zai"].unavailable_reason == "ZAI_API_KEY is not set"
    assert by_name["fal"].available
    assert by_name["fal"].models[0] == "fal-ai/flux-lora"
    assert by_name["fal"].circuit_state == bridge_pb2.CIRCUIT_STATE_CLOSED
    chains = {c.capability: list(c.providers) for c in response.default_chains}
    assert chains[bridge_pb2.PROVIDER_CAPABILITY_IMAGE_TO_IMAGE] == ["replicate", "openrouter"]
    assert FAL_KEY not in str(response)


async def test_generate_depth_with_attributes_and_loras_streams_image_and_result(
    bridge, fake_providers
) -> None:
    stub, _, servicer = bridge
    params = bridge_pb2.GenerateParams(
        prompt="portrait of a ranger",
        mode=bridge_pb2.HOSTED_GENERATION_MODE_EDIT,
        loras=[bridge_pb2.RemoteLora(url="https://hf.co/a.safetensors", weight=0.7, trigger_words=["RNGR"])],
        attributes=bridge_pb2.PhysicalAttributes(hair_color="auburn", eye_color="green"),
        output_encoding=common_pb2.IMAGE_ENCODING_JPEG,
    )
    reference = png_bytes(40, 30)
    call = stub.Generate(
        stream(
            bridge_pb2.GenerateRequest(params=params),
            *[bridge_pb2.GenerateRequest(reference=c) for c in _chunks(reference)],
        )
    )
    _messages, image, result = await _collect(call)
    assert result.provider == "fal"
    assert result.model == "fal-ai/flux-kontext-lora"
    assert result.prompt == "portrait of a ranger, RNGR, auburn hair, green eyes"
    assert image.encoding == common_pb2.IMAGE_ENCODING_JPEG
    assert images.to_array(image).shape == (12, 16, 3)
    assert (result.size.width, result.size.height) == (16, 12)
    assert result.seed == 99
    sent = next(
        body for method, path, _, body in fake_providers.requests if path == "/fal/fal-ai/flux-kontext-lora"
    )
    assert sent["loras"] == [{"path": "https://hf.co/a.safetensors", "scale": pytest.approx(0.7)}]
    assert sent["image_url"].startswith("data:image/png;base64,")
    assert not list(servicer.references.folder.iterdir())  # the stored reference is removed after the call


async def test_img2img_falls_back_after_5xx_and_never_leaks_the_key(bridge, fake_providers) -> None:
    stub, server, _ = bridge
    fake_providers.failures["replicate"] = 2  # first try and its one retry
    params = bridge_pb2.HostedImg2ImgParams(prompt="night", strength=0.4)
    messages, _image, result = await _collect(
        stub.Img2Img(
            stream(
                bridge_pb2.BridgeImg2ImgRequest(params=params),
                *[bridge_pb2.BridgeImg2ImgRequest(image=c) for c in _chunks(png_bytes())],
            )
        )
    )
    streamed = [m.attempt for m in messages if m.WhichOneof("part") == "attempt"]
    assert [a.provider for a in streamed] == ["replicate"]
    failed = result.attempts[0]
    assert (failed.outcome, failed.http_status, failed.status_code, failed.retries) == (
        bridge_pb2.ATTEMPT_OUTCOME_FAILED,
        503,
        grpc.StatusCode.UNAVAILABLE.value[0],
        1,
    )
    assert REPLICATE_KEY not in failed.message
    assert "***" in failed.message
    assert result.provider == "openrouter"
    assert "strength" in result.unused_fields
    metrics = await asyncio.to_thread(scrape, server.metrics_port)
    assert 'bridge_requests_total{outcome="failed",provider="replicate"} 1.0' in metrics
    assert 'bridge_upstream_request_duration_seconds_count{provider="openrouter"}' in metrics
    assert 'bridge_circuit_open{provider="replicate"} 0.0' in metrics


async def test_analyze_skips_keyless_zai_and_suggests_a_prompt(bridge) -> None:
    stub, _, _ = bridge
    requests = [bridge_pb2.AnalyzeImageRequest(params=bridge_pb2.AnalyzeImageParams())]
    requests += [bridge_pb2.AnalyzeImageRequest(image=c) for c in _chunks(png_bytes())]
    response = await stub.AnalyzeImage(stream(*requests))
    assert response.provider == "openrouter"
    assert response.attempts[0].outcome == bridge_pb2.ATTEMPT_OUTCOME_SKIPPED_UNAVAILABLE
    assert response.description == "A blue square on nothing."
    assert response.suggested_prompt == "a blue square, flat colour"


async def test_bad_reference_and_internal_chain_are_invalid_argument(bridge) -> None:
    stub, _, _ = bridge
    params = bridge_pb2.GenerateParams(prompt="x", mode=bridge_pb2.HOSTED_GENERATION_MODE_DEPTH)
    bad = _chunks(b"GIF89a" + b"\0" * 50)
    error = await rpc_error(
        stub.Generate(
            stream(
                bridge_pb2.GenerateRequest(params=params),
                *[bridge_pb2.GenerateRequest(reference=c) for c in bad],
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("reference")

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "GIF")
    error = await rpc_error(
        stub.Generate(
            stream(
                bridge_pb2.GenerateRequest(params=params),
                *[bridge_pb2.GenerateRequest(reference=c) for c in _chunks(buffer.getvalue())],
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "GIF" in error.details()

    chained = bridge_pb2.HostedImg2ImgParams(prompt="x", provider_chain=["internal", "replicate"])
    error = await rpc_error(stub.Img2Img(stream(bridge_pb2.BridgeImg2ImgRequest(params=chained))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("params.provider_chain[0]")


async def test_oversized_reference_is_resource_exhausted(bridge) -> None:
    stub, _, _ = bridge
    params = bridge_pb2.GenerateParams(prompt="x", mode=bridge_pb2.HOSTED_GENERATION_MODE_DEPTH)
    header = common_pb2.ImageChunk(
        header=common_pb2.Image(encoding=common_pb2.IMAGE_ENCODING_PNG), total_bytes=11 * 1024 * 1024
    )
    error = await rpc_error(
        stub.Generate(
            stream(bridge_pb2.GenerateRequest(params=params), bridge_pb2.GenerateRequest(reference=header))
        )
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
