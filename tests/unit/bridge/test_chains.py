"""Provider adapters and chains against httpx.MockTransport fakes of each documented API."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from services.bridge.chains import Outcome
from services.bridge.providers import AnalyzeTask, Capability, GenerateTask, Img2ImgTask, StatusUpdate
from services.bridge.references import UploadedImage
from services.common.errors import InvalidArgument, Unavailable

from .conftest import FAL_KEY, OPENROUTER_KEY, REPLICATE_KEY, ZAI_KEY, make_bridge, png_bytes

pytestmark = pytest.mark.asyncio(loop_scope="session")

PNG = png_bytes(8, 6)
IMAGE = UploadedImage(PNG, "image/png", ".png", 8, 6)
DATA_URI_PREFIX = "data:image/png;base64,"


def _fal_handler(calls: list[httpx.Request], polls: int = 2):
    """fal.ai queue API: submit -> request_id/status_url/response_url; status IN_QUEUE, IN_PROGRESS, COMPLETED."""
    state = {"polls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        url = str(request.url)
        if request.method == "POST":
            assert request.headers["authorization"] == f"Key {FAL_KEY}"
            base = "https://queue.fal.test/fal-ai/flux-lora/requests/req-1"
            return httpx.Response(
                200,
                json={"request_id": "req-1", "status_url": f"{base}/status", "response_url": base},
            )
        if url.endswith("/status"):
            state["polls"] += 1
            if state["polls"] <= polls:
                status = "IN_QUEUE" if state["polls"] == 1 else "IN_PROGRESS"
                return httpx.Response(
                    202, json={"status": status, "queue_position": 3 if status == "IN_QUEUE" else None}
                )
            return httpx.Response(200, json={"status": "COMPLETED"})
        if url.endswith("/requests/req-1"):
            return httpx.Response(
                200,
                json={
                    "images": [{"url": "https://v3.fal.media/files/out.png", "width": 8, "height": 6}],
                    "seed": 1234,
                },
            )
        if url == "https://v3.fal.media/files/out.png":
            assert "authorization" not in request.headers  # result files get no key
            return httpx.Response(200, content=PNG)
        return httpx.Response(404)

    return handler


async def test_fal_queue_submit_poll_result_and_download(sleeps) -> None:
    calls: list[httpx.Request] = []
    bridge = make_bridge(_fal_handler(calls), sleeps)
    task = GenerateTask(
        Capability.TEXT_TO_IMAGE,
        "a knight, KNGHT",
        negative_prompt="blurry",
        width=512,
        height=768,
        seed=7,
        loras=(("https://huggingface.co/x/y/resolve/main/k.safetensors", 0.8),),
    )
    events: list = []
    result = await bridge.generate(task, [], on_event=events.append)

    submitted = json.loads(calls[0].content)
    assert str(calls[0].url) == "https://queue.fal.test/fal-ai/flux-lora"
    assert submitted == {
        "prompt": "a knight, KNGHT",
        "num_images": 1,
        "output_format": "png",
        "image_size": {"width": 512, "height": 768},
        "seed": 7,
        "loras": [{"path": "https://huggingface.co/x/y/resolve/main/k.safetensors", "scale": 0.8}],
    }
    assert result.provider == "fal"
    assert result.model == "fal-ai/flux-lora"
    assert result.pixels.shape == (6, 8, 3)
    assert result.output.seed == 1234
    assert result.output.unused_fields == ["negative_prompt"]  # FLUX has no negative prompt
    assert [e.state.name for e in events if isinstance(e, StatusUpdate)] == ["QUEUED", "RUNNING", "FETCHING"]
    assert events[0].queue_position == 3
    assert sleeps.waits == [0.25, 0.25]  # the poll interval, through the injected sleep
    assert [a.outcome for a in result.attempts] == [Outcome.SUCCEEDED]


async def test_fal_depth_sends_reference_as_control_image(sleeps) -> None:
    calls: list[httpx.Request] = []
    bridge = make_bridge(_fal_handler(calls, polls=0), sleeps)
    task = GenerateTask(Capability.DEPTH_TO_IMAGE, "a castle", reference=IMAGE, width=8, height=6)
    result = await bridge.generate(task, ["fal"])
    body = json.loads(calls[0].content)
    assert str(calls[0].url) == "https://queue.fal.test/fal-ai/flux-pro/v1/depth"
    assert body["control_image_url"].startswith(DATA_URI_PREFIX)
    assert result.model == "fal-ai/flux-pro/v1/depth"
    # LoRAs are not accepted by flux-pro depth: the provider is skipped, not called.
    with pytest.raises(Unavailable, match="accepts LoRAs"):
        await bridge.generate(
            GenerateTask(
                Capability.DEPTH_TO_IMAGE, "x", reference=IMAGE, loras=(("https://h/l.safetensors", 1.0),)
            ),
            ["fal"],
        )


def _replicate_handler(calls: list[httpx.Request]):
    state = {"polls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        url = str(request.url)
        if request.method == "POST":
            assert request.headers["authorization"] == f"Bearer {REPLICATE_KEY}"
            return httpx.Response(
                201,
                json={
                    "id": "p1",
                    "status": "starting",
                    "urls": {"get": "https://replicate.test/v1/predictions/p1", "cancel": "..."},
                    "output": None,
                },
            )
        if url.endswith("/v1/predictions/p1"):
            state["polls"] += 1
            status = "processing" if state["polls"] == 1 else "succeeded"
            output = ["https://replicate.delivery/out-0.png"] if status == "succeeded" else None
            return httpx.Response(
                200, json={"id": "p1", "status": status, "urls": {"get": url}, "output": output}
            )
        if url == "https://replicate.delivery/out-0.png":
            return httpx.Response(200, content=PNG)
        return httpx.Response(404)

    return handler


async def test_replicate_create_poll_and_download(sleeps) -> None:
    calls: list[httpx.Request] = []
    bridge = make_bridge(_replicate_handler(calls), sleeps, replicate_img2img_model="owner/model:abc123")
    task = Img2ImgTask(IMAGE, "oil painting", negative_prompt="blurry", strength=0.3, steps=20)
    result = await bridge.img2img(task, ["replicate"])
    body = json.loads(calls[0].content)
    assert str(calls[0].url) == "https://replicate.test/v1/predictions"
    assert body["version"] == "abc123"
    assert body["input"]["prompt_strength"] == 0.3
    assert body["input"]["negative_prompt"] == "blurry"
    assert body["input"]["image"].startswith(DATA_URI_PREFIX)
    assert result.provider == "replicate"
    assert result.pixels.shape == (6, 8, 3)

    calls.clear()
    bridge = make_bridge(_replicate_handler(calls), sleeps, replicate_img2img_model="owner/model")
    await bridge.img2img(task, ["replicate"])
    assert str(calls[0].url) == "https://replicate.test/v1/models/owner/model/predictions"


async def test_analyze_with_zai_chat_completions(sleeps) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://zai.test/api/paas/v4/chat/completions"
        assert request.headers["authorization"] == f"Bearer {ZAI_KEY}"
        seen.append(json.loads(request.content))
        answer = "A knight stands in a misty forest.\nPrompt: knight, misty forest, painterly"
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": answer}}]})

    bridge = make_bridge(handler, sleeps)
    result = await bridge.analyze(AnalyzeTask(IMAGE, "describe", 300), [])
    content = seen[0]["messages"][0]["content"]
    assert seen[0]["model"] == "glm-4.5v"
    assert seen[0]["max_tokens"] == 300
    assert content[0]["image_url"]["url"].startswith(DATA_URI_PREFIX)
    assert content[1] == {"type": "text", "text": "describe"}
    assert result.provider == "zai"
    assert result.model == "glm-4.5v"
    assert result.description == "A knight stands in a misty forest."
    assert result.suggested_prompt == "knight, misty forest, painterly"


async def test_openrouter_img2img_decodes_the_data_uri(sleeps) -> None:
    import base64

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["modalities"] == ["image", "text"]
        assert request.headers["authorization"] == f"Bearer {OPENROUTER_KEY}"
        url = DATA_URI_PREFIX + base64.b64encode(PNG).decode()
        message = {
            "role": "assistant",
            "content": "",
            "images": [{"type": "image_url", "image_url": {"url": url}}],
        }
        return httpx.Response(200, json={"choices": [{"message": message}]})

    bridge = make_bridge(handler, sleeps)
    result = await bridge.img2img(
        Img2ImgTask(IMAGE, "make it night", strength_requested=True), ["openrouter"]
    )
    assert result.provider == "openrouter"
    assert result.pixels.shape == (6, 8, 3)
    assert result.output.unused_fields == ["strength"]


async def test_fallback_after_retries_on_5xx_and_key_scrubbed(sleeps, caplog) -> None:
    tries = {"replicate": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "replicate.test":
            tries["replicate"] += 1
            return httpx.Response(503, json={"detail": f"overloaded; your token {REPLICATE_KEY} is fine"})
        message = {"images": [{"image_url": {"url": "https://cdn.test/o.png"}}]}
        if request.url.host == "cdn.test":
            return httpx.Response(200, content=PNG)
        return httpx.Response(200, json={"choices": [{"message": message}]})

    bridge = make_bridge(handler, sleeps)
    events: list = []
    with caplog.at_level(logging.DEBUG):
        result = await bridge.img2img(Img2ImgTask(IMAGE, "x"), [], on_event=events.append)
    assert tries["replicate"] == 3  # first try + max_retries=2
    first, second = result.attempts
    assert (first.provider, first.outcome, first.http_status, first.status_code, first.retries) == (
        "replicate",
        Outcome.FAILED,
        503,
        14,
        2,
    )
    assert REPLICATE_KEY not in first.message
    assert "***" in first.message
    assert (second.provider, second.outcome) == ("openrouter", Outcome.SUCCEEDED)
    assert [e for e in events if not isinstance(e, StatusUpdate)] == [first]
    assert sleeps.waits == [0.5, 1.0]  # exponential backoff
    logged = " ".join(str(vars(record)) for record in caplog.records)
    assert "provider attempt" in logged
    assert REPLICATE_KEY not in logged
    assert OPENROUTER_KEY not in logged


async def test_429_honours_retry_after(sleeps) -> None:
    tries = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        tries["n"] += 1
        if tries["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": "fine\nPrompt: p"}}]})

    bridge = make_bridge(handler, sleeps)
    result = await bridge.analyze(AnalyzeTask(IMAGE, "describe", 10), ["zai"])
    assert sleeps.waits == [7.0]
    assert result.attempts[0].retries == 1


async def test_everything_failing_raises_unavailable_listing_attempts(sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="boom")

    bridge = make_bridge(handler, sleeps, zai_api_key=None)
    with pytest.raises(Unavailable) as caught:
        await bridge.analyze(AnalyzeTask(IMAGE, "d", 10), ["zai", "openrouter", "fal"])
    text = str(caught.value)
    assert "zai: skipped_unavailable (ZAI_API_KEY is not set)" in text
    assert "openrouter: failed (HTTP 500" in text
    assert "fal: skipped_unsupported" in text


async def test_bad_request_everywhere_is_invalid_argument_and_does_not_trip_breaker(sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": "prompt too long"})

    bridge = make_bridge(handler, sleeps)
    for _ in range(3):
        with pytest.raises(InvalidArgument, match="prompt too long"):
            await bridge.analyze(AnalyzeTask(IMAGE, "d", 10), ["zai"])
    assert bridge.providers["zai"].breaker.consecutive_failures == 0
    assert sleeps.waits == []  # 4xx is not retried


async def test_missing_key_is_skipped_never_called(sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"called {request.url} without a key")

    bridge = make_bridge(handler, sleeps, fal_key=None)
    with pytest.raises(Unavailable, match="FAL_KEY is not set"):
        await bridge.generate(GenerateTask(Capability.TEXT_TO_IMAGE, "x"), [])


async def test_circuit_opens_skips_then_half_open_trial_closes(sleeps, clock) -> None:
    healthy = {"zai": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "zai.test" and not healthy["zai"]:
            return httpx.Response(502)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    bridge = make_bridge(handler, sleeps, clock, max_retries=0)
    task = AnalyzeTask(IMAGE, "d", 10)
    for _ in range(2):  # threshold 2
        result = await bridge.analyze(task, ["zai", "openrouter"])
        assert [a.outcome for a in result.attempts] == [Outcome.FAILED, Outcome.SUCCEEDED]
    result = await bridge.analyze(task, ["zai", "openrouter"])
    assert result.attempts[0].outcome is Outcome.SKIPPED_CIRCUIT_OPEN
    assert bridge.metrics.circuit_open.labels(provider="zai")._value.get() == 1
    clock.now += 30
    healthy["zai"] = True
    result = await bridge.analyze(task, ["zai", "openrouter"])
    assert [a.outcome for a in result.attempts] == [Outcome.SUCCEEDED]
    assert bridge.providers["zai"].breaker.consecutive_failures == 0


async def test_chain_refuses_internal_unknown_and_duplicates(sleeps) -> None:
    bridge = make_bridge(lambda request: httpx.Response(500), sleeps)
    for chain, field in (
        (["replicate", "internal"], "params.provider_chain[1]"),
        (["nope"], "params.provider_chain[0]"),
        (["zai", "zai"], "params.provider_chain[1]"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            bridge.resolve_chain(Capability.ANALYZE_IMAGE, chain, "params.provider_chain")
        assert caught.value.field == field


async def test_malformed_json_and_timeout_fall_back(sleeps) -> None:
    import asyncio

    async def slow_or_bad(request: httpx.Request) -> httpx.Response:
        if request.url.host == "zai.test":
            return httpx.Response(200, content=b"{not json")
        await asyncio.sleep(1)
        return httpx.Response(200, json={})

    bridge = make_bridge(slow_or_bad, sleeps, openrouter_timeout_seconds=0.05)
    with pytest.raises(Unavailable) as caught:
        await bridge.analyze(AnalyzeTask(IMAGE, "d", 10), ["zai", "openrouter"])
    assert "malformed JSON" in str(caught.value)
    assert "DEADLINE_EXCEEDED" in str(caught.value)
