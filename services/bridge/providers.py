"""One small adapter per hosted API, each speaking the request and response shapes of its documentation.

    FalProvider         fal.ai queue API: POST https://queue.fal.run/<endpoint> -> request_id, status_url,
                        response_url; GET status_url until COMPLETED; GET response_url -> {"images": [...]}
    ChatVisionProvider  OpenAI-compatible POST {base}/chat/completions with the image as a data URI (z.ai)
    OpenRouterProvider  the same for vision, plus image output: "modalities": ["image", "text"] ->
                        choices[0].message.images[].image_url.url (a data URI)
    ReplicateProvider   POST /v1/models/{owner}/{name}/predictions (or /v1/predictions with a version);
                        GET urls.get until succeeded / failed / canceled; output is a URL or a list of them

An adapter knows its models per capability and turns a task into requests through an `UpstreamCall`
(retries, key, sanitised errors); it never decides about fallback.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc
import httpx
from pydantic import SecretStr

from services.bridge._http import UpstreamCall, UpstreamError, encode_data_uri
from services.bridge.circuit import CircuitBreaker
from services.bridge.references import UploadedImage

__all__ = [
    "AnalyzeOutput",
    "AnalyzeTask",
    "Capability",
    "ChatVisionProvider",
    "FalProvider",
    "GenerateTask",
    "ImageOutput",
    "Img2ImgTask",
    "OpenRouterProvider",
    "Provider",
    "ReplicateProvider",
    "StatusUpdate",
]


class Capability(enum.Enum):
    """What a provider can be asked to do (ProviderCapability; the values are the proto's)."""

    ANALYZE_IMAGE = 1
    TEXT_TO_IMAGE = 2
    DEPTH_TO_IMAGE = 3
    IMAGE_EDIT = 4
    IMAGE_TO_IMAGE = 5


class HostedState(enum.Enum):
    QUEUED = 1
    RUNNING = 2
    FETCHING = 3


@dataclass(frozen=True)
class StatusUpdate:
    provider: str
    state: HostedState
    queue_position: int = 0


OnStatus = Callable[[StatusUpdate], None]


@dataclass(frozen=True)
class AnalyzeTask:
    image: UploadedImage
    instruction: str
    max_tokens: int


@dataclass(frozen=True)
class AnalyzeOutput:
    text: str


@dataclass(frozen=True)
class GenerateTask:
    """A Generate request, validated; `prompt` already has trigger words and attributes merged."""

    capability: Capability
    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    size_requested: bool = False
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    loras: tuple[tuple[str, float], ...] = ()
    reference: UploadedImage | None = None
    output_format: str = "png"


@dataclass(frozen=True)
class Img2ImgTask:
    image: UploadedImage
    prompt: str
    negative_prompt: str = ""
    strength: float = 0.5
    strength_requested: bool = False
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    output_format: str = "png"


@dataclass
class ImageOutput:
    """A provider's image: file bytes (downloaded or decoded from a data URI) and what it reports."""

    data: bytes
    seed: int | None = None
    unused_fields: list[str] = field(default_factory=list)


def _malformed(what: str) -> UpstreamError:
    return UpstreamError(grpc.StatusCode.UNAVAILABLE, f"malformed answer: {what}")


def _dig(body: Any, *path: str | int) -> Any:
    """body[path[0]][path[1]]...; a missing step is a malformed answer naming the path."""
    value = body
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise _malformed("no " + ".".join(map(str, path))) from None
    return value


class Provider:
    """A configured provider: name, API kind, key, models per capability, timeout and circuit breaker.

    Subclasses implement the capabilities they list in `models`; the first model of each is the default.
    """

    kind: int = 0
    auth_scheme = "Bearer"
    lora_models: frozenset[str] = frozenset()

    def __init__(
        self,
        name: str,
        *,
        key_env: str,
        key: SecretStr | None,
        base_url: str,
        models: dict[Capability, tuple[str, ...]],
        timeout: float,
        breaker: CircuitBreaker,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_interval: float = 1.0,
        max_download_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.key_env = key_env
        self.key = key if key is not None and key.get_secret_value() else None
        self.base_url = base_url.rstrip("/")
        self.models = models
        self.timeout = timeout
        self.breaker = breaker
        self.poll_interval = poll_interval
        self.max_download_bytes = max_download_bytes
        self.client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=True
        )

    @property
    def capabilities(self) -> list[Capability]:
        return list(self.models)

    @property
    def all_models(self) -> list[str]:
        """Every model it serves, each once, defaults first."""
        defaults = [models[0] for models in self.models.values()]
        rest = [model for models in self.models.values() for model in models[1:]]
        return list(dict.fromkeys(defaults + rest))

    @property
    def unavailable_reason(self) -> str:
        return "" if self.key is not None else f"{self.key_env} is not set"

    def model_for(self, capability: Capability, requested: str, needs_loras: bool = False) -> str | None:
        """The model to ask for `capability`, or None when it has no fitting one."""
        candidates = self.models.get(capability, ())
        if requested:
            candidates = tuple(model for model in candidates if model == requested)
        if needs_loras:
            candidates = tuple(model for model in candidates if model in self.lora_models)
        return candidates[0] if candidates else None

    async def poll_wait(self, http: UpstreamCall) -> None:
        await http.sleep(self.poll_interval)

    async def analyze(self, task: AnalyzeTask, model: str, http: UpstreamCall) -> AnalyzeOutput:
        raise NotImplementedError

    async def generate(
        self, task: GenerateTask, model: str, http: UpstreamCall, on_status: OnStatus
    ) -> ImageOutput:
        raise NotImplementedError

    async def img2img(
        self, task: Img2ImgTask, model: str, http: UpstreamCall, on_status: OnStatus
    ) -> ImageOutput:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.client.aclose()


# ---------------------------------------------------------------------------------------------------
# fal.ai


class FalProvider(Provider):
    """fal.ai queue API (https://docs.fal.ai/model-endpoints/queue), `Authorization: Key $FAL_KEY`.

    Inputs per endpoint (from each model's API page on fal.ai):
        fal-ai/flux-lora           prompt, image_size {width, height}, num_inference_steps, guidance_scale,
                                   seed, loras [{path, scale}], num_images, output_format
        fal-ai/qwen-image          the same, plus negative_prompt
        fal-ai/flux-pro/v1/depth   prompt, control_image_url, image_size, num_inference_steps,
                                   guidance_scale, seed, num_images, output_format (no LoRAs)
        fal-ai/flux-kontext-lora   prompt, image_url, num_inference_steps, guidance_scale, seed, loras,
                                   num_images, output_format (the size follows the input image)
    Output: {"images": [{"url", "width", "height", "content_type"}], "seed", ...}.
    """

    kind = 1
    auth_scheme = "Key"
    lora_models = frozenset({"fal-ai/flux-lora", "fal-ai/qwen-image", "fal-ai/flux-kontext-lora"})
    DEFAULT_MODELS: ClassVar[dict[Capability, tuple[str, ...]]] = {
        Capability.TEXT_TO_IMAGE: ("fal-ai/flux-lora", "fal-ai/qwen-image"),
        Capability.DEPTH_TO_IMAGE: ("fal-ai/flux-pro/v1/depth",),
        Capability.IMAGE_EDIT: ("fal-ai/flux-kontext-lora",),
    }
    _NEGATIVE_PROMPT = frozenset({"fal-ai/qwen-image"})
    _SIZED = frozenset({"fal-ai/flux-lora", "fal-ai/qwen-image", "fal-ai/flux-pro/v1/depth"})

    def _input(self, task: GenerateTask, model: str) -> tuple[dict[str, Any], list[str]]:
        body: dict[str, Any] = {"prompt": task.prompt, "num_images": 1, "output_format": task.output_format}
        unused: list[str] = []
        if model in self._SIZED:
            body["image_size"] = {"width": task.width, "height": task.height}
        elif task.size_requested:
            unused.append("size")
        if task.negative_prompt:
            if model in self._NEGATIVE_PROMPT:
                body["negative_prompt"] = task.negative_prompt
            else:
                unused.append("negative_prompt")
        for name, value in (
            ("seed", task.seed),
            ("num_inference_steps", task.steps),
            ("guidance_scale", task.guidance_scale),
        ):
            if value is not None:
                body[name] = value
        if task.loras:
            body["loras"] = [{"path": url, "scale": weight} for url, weight in task.loras]
        if task.reference is not None:
            uri = encode_data_uri(task.reference.data, task.reference.mime)
            body["control_image_url" if task.capability is Capability.DEPTH_TO_IMAGE else "image_url"] = uri
        return body, unused

    async def generate(
        self, task: GenerateTask, model: str, http: UpstreamCall, on_status: OnStatus
    ) -> ImageOutput:
        # 1. Submit to the queue
        body, unused = self._input(task, model)
        submitted = await http.json("POST", f"{self.base_url}/{model}", body)
        request_id = _dig(submitted, "request_id")
        status_url = submitted.get("status_url") or f"{self.base_url}/{model}/requests/{request_id}/status"
        response_url = submitted.get("response_url") or f"{self.base_url}/{model}/requests/{request_id}"

        # 2. Poll the status until COMPLETED
        last: StatusUpdate | None = None
        while True:
            status = await http.json("GET", status_url)
            state = _dig(status, "status")
            if state == "COMPLETED":
                if status.get("error"):
                    raise UpstreamError(grpc.StatusCode.UNAVAILABLE, f"the job failed: {status['error']}")
                break
            if state not in ("IN_QUEUE", "IN_PROGRESS"):
                raise _malformed(f"unknown status {state!r}")
            update = StatusUpdate(
                self.name,
                HostedState.QUEUED if state == "IN_QUEUE" else HostedState.RUNNING,
                int(status.get("queue_position") or 0),
            )
            if update != last:
                on_status(update)
                last = update
            await self.poll_wait(http)

        # 3. Fetch the result and its image
        on_status(StatusUpdate(self.name, HostedState.FETCHING))
        result = await http.json("GET", response_url)
        url = _dig(result, "images", 0, "url")
        seed = result.get("seed")
        data = await http.download(url, self.max_download_bytes)
        return ImageOutput(data, seed if isinstance(seed, int) else None, unused)


# ---------------------------------------------------------------------------------------------------
# OpenAI-compatible chat (z.ai GLM-4.5V; OpenRouter)


def _message_text(content: Any) -> str:
    """choices[0].message.content: a string, or a list of {"type": "text", "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise _malformed("choices.0.message.content is neither text nor a list of parts")


class ChatVisionProvider(Provider):
    """OpenAI-compatible chat completions with an image input (z.ai: https://docs.z.ai/api-reference).

    Request: {"model", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url":
    {"url": "data:image/png;base64,..."}}, {"type": "text", "text": instruction}]}], "max_tokens"}.
    Answer: choices[0].message.content.
    """

    kind = 2

    async def analyze(self, task: AnalyzeTask, model: str, http: UpstreamCall) -> AnalyzeOutput:
        body = {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": encode_data_uri(task.image.data, task.image.mime)},
                        },
                        {"type": "text", "text": task.instruction},
                    ],
                }
            ],
            "max_tokens": task.max_tokens,
        }
        answer = await http.json("POST", f"{self.base_url}/chat/completions", body)
        text = _message_text(_dig(answer, "choices", 0, "message", "content")).strip()
        if not text:
            raise _malformed("an empty answer")
        return AnalyzeOutput(text)


class OpenRouterProvider(ChatVisionProvider):
    """OpenRouter (https://openrouter.ai/docs): vision chat as above, and image-to-image by image output.

    Img2Img request: {"model", "messages": [{"role": "user", "content": [{"type": "text", "text": prompt},
    {"type": "image_url", "image_url": {"url": data URI}}]}], "modalities": ["image", "text"], "seed"}.
    Answer: choices[0].message.images[0].image_url.url, a data URI (a URL is downloaded). The chat API has
    no negative prompt, strength, steps or guidance: those are reported in unused_fields.
    """

    kind = 4

    async def img2img(
        self, task: Img2ImgTask, model: str, http: UpstreamCall, on_status: OnStatus
    ) -> ImageOutput:
        body: dict[str, Any] = {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": task.prompt},
                        {
                            "type": "image_url",
                            "image_url": {"url": encode_data_uri(task.image.data, task.image.mime)},
                        },
                    ],
                }
            ],
            "modalities": ["image", "text"],
        }
        if task.seed is not None:
            body["seed"] = task.seed
        on_status(StatusUpdate(self.name, HostedState.RUNNING))
        answer = await http.json("POST", f"{self.base_url}/chat/completions", body)
        url = _dig(answer, "choices", 0, "message", "images", 0, "image_url", "url")
        on_status(StatusUpdate(self.name, HostedState.FETCHING))
        unused = [
            name
            for name, used in (
                ("negative_prompt", bool(task.negative_prompt)),
                ("strength", task.strength_requested),
                ("steps", task.steps is not None),
                ("guidance_scale", task.guidance_scale is not None),
            )
            if used
        ]
        return ImageOutput(await http.download(url, self.max_download_bytes), task.seed, unused)


# ---------------------------------------------------------------------------------------------------
# Replicate


class ReplicateProvider(Provider):
    """Replicate predictions API (https://replicate.com/docs/reference/http), `Authorization: Bearer`.

    Create: POST /v1/models/{owner}/{name}/predictions {"input": {...}} for an official model, or
    POST /v1/predictions {"version", "input"} for `owner/name:version`. Answer: {"id", "status", "urls":
    {"get", "cancel"}, "output", "error"}; status is starting / processing / succeeded / failed /
    canceled. Input (SDXL-style img2img): image (data URI), prompt, negative_prompt, prompt_strength,
    num_inference_steps, guidance_scale, seed. Output: a URL or a list of URLs.
    """

    kind = 3

    async def img2img(
        self, task: Img2ImgTask, model: str, http: UpstreamCall, on_status: OnStatus
    ) -> ImageOutput:
        # 1. Create the prediction
        inputs: dict[str, Any] = {
            "image": encode_data_uri(task.image.data, task.image.mime),
            "prompt": task.prompt,
            "prompt_strength": task.strength,
        }
        for name, value in (
            ("negative_prompt", task.negative_prompt or None),
            ("seed", task.seed),
            ("num_inference_steps", task.steps),
            ("guidance_scale", task.guidance_scale),
        ):
            if value is not None:
                inputs[name] = value
        name, _, version = model.partition(":")
        if version:
            prediction = await http.json(
                "POST", f"{self.base_url}/v1/predictions", {"version": version, "input": inputs}
            )
        else:
            prediction = await http.json(
                "POST", f"{self.base_url}/v1/models/{name}/predictions", {"input": inputs}
            )

        # 2. Poll until it ends
        get_url = _dig(prediction, "urls", "get")
        last: HostedState | None = None
        while (state := _dig(prediction, "status")) not in ("succeeded", "failed", "canceled"):
            current = HostedState.QUEUED if state == "starting" else HostedState.RUNNING
            if current is not last:
                on_status(StatusUpdate(self.name, current))
                last = current
            await self.poll_wait(http)
            prediction = await http.json("GET", get_url)
        if state != "succeeded":
            raise UpstreamError(
                grpc.StatusCode.UNAVAILABLE,
                f"the prediction {state}: {prediction.get('error') or 'no reason given'}",
            )

        # 3. Download the output
        on_status(StatusUpdate(self.name, HostedState.FETCHING))
        output = _dig(prediction, "output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise _malformed("output is not a URL")
        return ImageOutput(await http.download(url, self.max_download_bytes), task.seed)
