"""TRANSFORM and REFERENCE jobs through the embedded stack, with an in-process bridge in front of fake
provider HTTP servers (tests/unit/bridge/fake_server.py): modify / copy parameters reaching the diffusion
service, fallback from "internal" to a hosted provider, provider attempts in events and the result,
fal.ai depth generation, and UNAVAILABLE without a bridge."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import pytest_asyncio

from gateway.stack import EmbeddedStack
from services.bridge.app import build_server
from services.bridge.settings import BridgeSettings
from services.common.errors import Unavailable
from tests.gateway.conftest import logged_events, noise, stack_config
from tests.unit.bridge.conftest import FAL_KEY, OPENROUTER_KEY, REPLICATE_KEY, Sleeps
from tests.unit.bridge.fake_server import FakeProviders
from tilesmith import AsyncClient, ReferenceOptions, TransformOptions, errors
from tilesmith.v1 import bridge_pb2
from tilesmith.v1 import gateway_pb2 as pb

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAIN = "internal,replicate,openrouter"


@pytest.fixture(scope="module")
def fake_providers():
    with FakeProviders() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hosted_stack(fake_providers, tmp_path_factory):
    settings = BridgeSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        fal_key=FAL_KEY,
        zai_api_key=None,
        replicate_api_token=REPLICATE_KEY,
        openrouter_api_key=OPENROUTER_KEY,
        max_retries=0,
        poll_interval_seconds=0,
        reference_dir=tmp_path_factory.mktemp("refs"),
        **fake_providers.urls(),
    )
    bridge, servicer = build_server(settings, serve_metrics_http=False, sleep=Sleeps())
    await bridge.start()
    await servicer.start()
    await bridge.set_serving()
    config = stack_config(
        tmp_path_factory.mktemp("hosted"),
        bridge_addr=bridge.address,
        gateway_options={"transform_chain": CHAIN, "transform_quality_phrases": "best quality"},
    )
    try:
        async with EmbeddedStack(config) as running:
            yield running
    finally:
        await servicer.close()
        await bridge.stop(0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hclient(hosted_stack):
    async with AsyncClient(hosted_stack.address) as connected:
        yield connected


class _Spy:
    """Records the Img2Img requests the gateway sends to diffusion; `fail` makes them UNAVAILABLE."""

    def __init__(self, stack: EmbeddedStack, monkeypatch, *, fail: bool = False) -> None:
        diffusion = stack.gateway.backends.diffusion
        original = diffusion.img2img
        self.requests = []

        async def img2img(request, on_step=None):
            self.requests.append(request)
            if fail:
                raise Unavailable("the diffusion service is down (test)")
            return await original(request, on_step)

        monkeypatch.setattr(diffusion, "img2img", img2img)


def _attempts(events) -> list[tuple[str, int]]:
    return [
        (e.provider_attempt.provider, e.provider_attempt.outcome)
        for e in events
        if e.WhichOneof("kind") == "provider_attempt"
    ]


async def test_list_providers_has_internal_and_the_gateway_chains(hclient) -> None:
    response = await hclient.list_providers()
    assert [p.name for p in response.providers][:2] == ["internal", "fal"]
    chains = {c.capability: list(c.providers) for c in response.default_chains}
    assert chains[bridge_pb2.PROVIDER_CAPABILITY_IMAGE_TO_IMAGE] == CHAIN.split(",")
    assert chains[bridge_pb2.PROVIDER_CAPABILITY_DEPTH_TO_IMAGE] == ["fal"]  # the bridge's own


async def test_transform_modify_runs_internal_with_its_parameters(hclient, hosted_stack, monkeypatch) -> None:
    spy = _Spy(hosted_stack, monkeypatch)
    image = noise(64, 48, channels=4, seed=3)
    job = await hclient.transform(image, TransformOptions(prompt="a castle", seed=77, steps=4))
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error

    # 1. The chain was written into the stored spec; internal answered first.
    assert list(final.spec.transform.provider_chain) == CHAIN.split(",")
    assert final.seed == 77
    assert final.result.provider == "internal"
    assert final.result.model
    assert [(a.provider, a.outcome) for a in final.result.attempts] == [
        ("internal", bridge_pb2.ATTEMPT_OUTCOME_SUCCEEDED)
    ]
    # 2. MODIFY: denoise 1 - 0.5, CFG 7.5, the prompt enhanced, the whole image as one tile, ControlNet off.
    (request,) = spy.requests
    assert request.strength == pytest.approx(0.5)
    assert request.sampling.cfg_scale == pytest.approx(7.5)
    assert request.sampling.steps == 4
    assert not request.controlnet.enabled
    (tile,) = request.tiles
    assert (tile.image.width, tile.image.height, tile.seed) == (64, 48, 77)
    assert tile.prompt == "a castle, best quality"
    # 3. The input's size, alpha re-attached.
    result = np.asarray(await job.result())
    assert result.shape == (48, 64, 4)
    assert np.array_equal(result[..., 3], image[..., 3])
    events = await logged_events(hclient, job.id)
    assert _attempts(events) == [("internal", bridge_pb2.ATTEMPT_OUTCOME_SUCCEEDED)]
    stages = [e.stage_started.stage for e in events if e.WhichOneof("kind") == "stage_started"]
    assert stages == [pb.JOB_STAGE_DECODE, pb.JOB_STAGE_TRANSFORM, pb.JOB_STAGE_ENCODE]


async def test_transform_copy_is_fixed_and_refuses_overrides(hclient, hosted_stack, monkeypatch) -> None:
    spy = _Spy(hosted_stack, monkeypatch)
    job = await hclient.transform(noise(48, 40), TransformOptions(mode="copy", prompt="keep it", seed=5))
    assert (await job.wait()).state == pb.JOB_STATE_SUCCEEDED
    (request,) = spy.requests
    assert request.strength == pytest.approx(0.05)
    assert (request.sampling.steps, request.sampling.cfg_scale) == (15, pytest.approx(1.0))
    assert (request.tiles[0].prompt, request.tiles[0].negative_prompt) == ("keep it", "")

    with pytest.raises(errors.InvalidArgument) as raised:
        await hclient.transform(noise(48, 40), TransformOptions(mode="copy", steps=30))
    assert raised.value.field == "transform.steps"


async def test_transform_falls_back_from_internal_to_replicate(
    hclient, hosted_stack, monkeypatch, fake_providers
) -> None:
    _Spy(hosted_stack, monkeypatch, fail=True)
    fake_providers.requests.clear()
    job = await hclient.transform(noise(64, 48), TransformOptions(prompt="at night", seed=2**40 + 9))
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert final.result.provider == "replicate"
    assert [(a.provider, a.outcome) for a in final.result.attempts] == [
        ("internal", bridge_pb2.ATTEMPT_OUTCOME_FAILED),
        ("replicate", bridge_pb2.ATTEMPT_OUTCOME_SUCCEEDED),
    ]
    assert final.result.attempts[0].status_code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert "down" in final.result.attempts[0].message
    assert _attempts(await logged_events(hclient, job.id)) == [
        (a.provider, a.outcome) for a in final.result.attempts
    ]
    # The hosted answer (16x12) is brought to the input's size; the seed went modulo 2**32.
    assert (final.result.size.width, final.result.size.height) == (64, 48)
    sent = next(
        body for method, path, _, body in fake_providers.requests if path.startswith("/replicate/v1/")
    )
    assert sent["input"]["seed"] == 9


async def test_transform_fails_when_every_provider_fails(
    hclient, hosted_stack, monkeypatch, fake_providers
) -> None:
    _Spy(hosted_stack, monkeypatch, fail=True)
    fake_providers.failures.update(replicate=1, openrouter=1)
    job = await hclient.transform(noise(32, 32), TransformOptions(seed=1))
    with pytest.raises(errors.Unavailable):
        await job.wait()
    final = await job.refresh()
    assert final.state == pb.JOB_STATE_FAILED
    assert final.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert final.error.stage == pb.JOB_STAGE_TRANSFORM
    assert "internal: failed" in final.error.message
    assert "openrouter: failed" in final.error.message
    assert REPLICATE_KEY not in final.error.message


async def test_reference_depth_through_fal(hclient, fake_providers) -> None:
    fake_providers.requests.clear()
    options = ReferenceOptions(attributes=bridge_pb2.PhysicalAttributes(hair_color="auburn"), seed=11)
    job = await hclient.reference(noise(64, 48), "portrait of a ranger", options)
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert (final.result.provider, final.result.model) == ("fal", "fal-ai/flux-pro/v1/depth")
    assert final.result.attempts[-1].outcome == bridge_pb2.ATTEMPT_OUTCOME_SUCCEEDED
    assert (await job.result()).size == (16, 12)
    sent = next(
        body for method, path, _, body in fake_providers.requests if path == "/fal/fal-ai/flux-pro/v1/depth"
    )
    assert sent["prompt"] == "portrait of a ranger, auburn hair"
    assert sent["seed"] == 11
    assert final.seed == 11
    events = await logged_events(hclient, job.id)
    assert pb.JOB_STAGE_REFERENCE in [
        e.stage_started.stage for e in events if e.WhichOneof("kind") == "stage_started"
    ]
    assert _attempts(events) == [("fal", bridge_pb2.ATTEMPT_OUTCOME_SUCCEEDED)]
    # The result is an upload, usable as the next job's input.
    again = await hclient.plan_grid(final.result.image_id)
    assert (again.input_size.width, again.input_size.height) == (16, 12)


async def test_reference_edit_with_a_lora_and_a_depth_lora_refusal(hclient, fake_providers) -> None:
    lora = bridge_pb2.RemoteLora(url="https://hf.co/a.safetensors", weight=0.7, trigger_words=["RNGR"])
    job = await hclient.reference(noise(64, 48), "a ranger", ReferenceOptions(mode="edit", loras=[lora]))
    final = await job.wait()
    assert (final.result.provider, final.result.model) == ("fal", "fal-ai/flux-kontext-lora")
    assert final.seed == 99  # none was given: the seed the (fake) provider reports
    # DEPTH has no LoRA endpoint: the bridge skips fal, the job fails UNAVAILABLE naming why.
    job = await hclient.reference(noise(64, 48), "a ranger", ReferenceOptions(loras=[lora]))
    with pytest.raises(errors.Unavailable, match="accepts LoRAs"):
        await job.wait()
    events = await logged_events(hclient, job.id)
    assert _attempts(events) == [("fal", bridge_pb2.ATTEMPT_OUTCOME_SKIPPED_UNSUPPORTED)]


async def test_without_a_bridge_hosted_jobs_are_unavailable(client) -> None:
    image_id = await client.upload_image(noise(32, 32))
    with pytest.raises(errors.Unavailable, match="reference"):
        await client.reference(image_id, "a ranger")
    with pytest.raises(errors.Unavailable, match=r"transform.provider_chain\[0\]"):
        await client.transform(image_id, TransformOptions(provider_chain=["replicate"]))
    # The default chain keeps only "internal" without a bridge; too large an image is refused at submit.
    job = await client.transform(image_id, TransformOptions(mode="copy", seed=3))
    final = await job.wait()
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert list(final.spec.transform.provider_chain) == ["internal"]
    providers = await client.list_providers()
    assert [p.name for p in providers.providers] == ["internal"]
    with pytest.raises(errors.InvalidArgument) as raised:
        await client.transform(noise(4104, 16), TransformOptions(seed=3))
    assert raised.value.field == "transform.image_id"
