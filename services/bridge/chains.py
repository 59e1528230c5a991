"""Running a request down a provider chain: skip, call, record, fall back; the bridge's domain calls.

`Bridge.analyze`, `Bridge.generate` and `Bridge.img2img` take validated tasks and a chain (empty: the
configured default), try the providers in order and return the first success with every attempt.
A provider is skipped without a call when its key is missing, when it lacks the capability or model,
or when its circuit is open. When none succeeds, the call raises Unavailable listing each attempt,
or InvalidArgument when every provider that was called refused the request as a bad one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import httpx
import numpy as np

from services.bridge._http import Sleep, UpstreamCall, UpstreamError
from services.bridge.circuit import CircuitBreaker, CircuitState
from services.bridge.metrics import BridgeMetrics
from services.bridge.prompts import split_analysis
from services.bridge.providers import (
    AnalyzeTask,
    Capability,
    ChatVisionProvider,
    FalProvider,
    GenerateTask,
    ImageOutput,
    Img2ImgTask,
    OpenRouterProvider,
    Provider,
    ReplicateProvider,
    StatusUpdate,
)
from services.bridge.settings import BridgeSettings
from services.common.errors import ImageError, ImageTooLarge, InvalidArgument, Unavailable
from tilesmith import images

__all__ = ["Attempt", "Bridge", "Outcome", "build_providers"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outcome(enum.Enum):
    """AttemptOutcome; the values are the proto's."""

    SUCCEEDED = 1
    FAILED = 2
    SKIPPED_UNAVAILABLE = 3
    SKIPPED_CIRCUIT_OPEN = 4
    SKIPPED_UNSUPPORTED = 5


@dataclass(frozen=True)
class Attempt:
    provider: str
    model: str
    outcome: Outcome
    status_code: int = 0
    http_status: int = 0
    message: str = ""
    duration_seconds: float = 0.0
    retries: int = 0

    def describe(self) -> str:
        if self.outcome is Outcome.FAILED:
            http = f"HTTP {self.http_status}, " if self.http_status else ""
            return (
                f"{self.provider}: failed ({http}{_CODE_NAMES[self.status_code]}, "
                f"{self.retries} retries: {self.message})"
            )
        return f"{self.provider}: {self.outcome.name.lower()} ({self.message})"


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass(frozen=True)
class AnalyzeResult:
    description: str
    suggested_prompt: str
    provider: str
    model: str
    attempts: list[Attempt]


@dataclass(frozen=True)
class ImageResult:
    """A hosted image, checked by decoding: its pixels, the provider's file bytes and report."""

    pixels: np.ndarray
    data: bytes
    file_format: str
    output: ImageOutput
    provider: str
    model: str
    attempts: list[Attempt]


OnEvent = Callable[[Attempt | StatusUpdate], None]


def build_providers(
    settings: BridgeSettings,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Provider]:
    """The four providers as configured, in configuration order."""

    def common(timeout: float) -> dict:
        return {
            "timeout": timeout,
            "breaker": CircuitBreaker(
                settings.breaker_failure_threshold, settings.breaker_cooldown_seconds, clock
            ),
            "transport": transport,
            "poll_interval": settings.poll_interval_seconds,
            "max_download_bytes": settings.max_download_bytes,
        }

    return {
        "fal": FalProvider(
            "fal",
            key_env="FAL_KEY",
            key=settings.fal_key,
            base_url=settings.fal_base_url,
            models=dict(FalProvider.DEFAULT_MODELS),
            **common(settings.fal_timeout_seconds),
        ),
        "zai": ChatVisionProvider(
            "zai",
            key_env="ZAI_API_KEY",
            key=settings.zai_api_key,
            base_url=settings.zai_base_url,
            models={Capability.ANALYZE_IMAGE: (settings.zai_vision_model,)},
            **common(settings.zai_timeout_seconds),
        ),
        "openrouter": OpenRouterProvider(
            "openrouter",
            key_env="OPENROUTER_API_KEY",
            key=settings.openrouter_api_key,
            base_url=settings.openrouter_base_url,
            models={
                Capability.ANALYZE_IMAGE: (settings.openrouter_vision_model,),
                Capability.IMAGE_TO_IMAGE: (settings.openrouter_image_model,),
            },
            **common(settings.openrouter_timeout_seconds),
        ),
        "replicate": ReplicateProvider(
            "replicate",
            key_env="REPLICATE_API_TOKEN",
            key=settings.replicate_api_token,
            base_url=settings.replicate_base_url,
            models={Capability.IMAGE_TO_IMAGE: (settings.replicate_img2img_model,)},
            **common(settings.replicate_timeout_seconds),
        ),
    }


_CHAIN_SETTING = {
    Capability.ANALYZE_IMAGE: "analyze_image",
    Capability.TEXT_TO_IMAGE: "text_to_image",
    Capability.DEPTH_TO_IMAGE: "depth_to_image",
    Capability.IMAGE_EDIT: "image_edit",
    Capability.IMAGE_TO_IMAGE: "image_to_image",
}


class Bridge:
    """The providers, their chains and breakers; one method per bridge call."""

    def __init__(
        self,
        settings: BridgeSettings,
        providers: dict[str, Provider],
        metrics: BridgeMetrics,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.metrics = metrics
        self._sleep = sleep
        self.update_circuit_metrics()

    def default_chain(self, capability: Capability) -> tuple[str, ...]:
        return self.settings.default_chain(_CHAIN_SETTING[capability])

    def default_chains(self) -> dict[Capability, tuple[str, ...]]:
        return {capability: self.default_chain(capability) for capability in Capability}

    def update_circuit_metrics(self) -> None:
        for name, provider in self.providers.items():
            self.metrics.circuit_open.labels(provider=name).set(provider.breaker.state is CircuitState.OPEN)

    def resolve_chain(self, capability: Capability, chain: Sequence[str], field: str) -> tuple[str, ...]:
        """The chain to run: `chain` checked, or the default when it is empty."""
        if not chain:
            return self.default_chain(capability)
        for index, name in enumerate(chain):
            if name == "internal":
                raise InvalidArgument(
                    f"{field}[{index}]",
                    '"internal" is Tilesmith\'s own diffusion service, run by the gateway; '
                    "send the bridge only the hosted entries of a chain",
                )
            if name not in self.providers:
                raise InvalidArgument(
                    f"{field}[{index}]", f"unknown provider {name!r}; known: {', '.join(self.providers)}"
                )
            if name in chain[:index]:
                raise InvalidArgument(f"{field}[{index}]", f"provider {name!r} appears twice")
        return tuple(chain)

    def _record(self, attempt: Attempt, on_event: OnEvent | None) -> Attempt:
        self.metrics.requests.labels(provider=attempt.provider, outcome=attempt.outcome.name.lower()).inc()
        log.info(
            "provider attempt",
            extra={
                "provider": attempt.provider,
                "model": attempt.model,
                "outcome": attempt.outcome.name.lower(),
                "http_status": attempt.http_status,
                "retries": attempt.retries,
                "reason": attempt.message,
            },
        )
        if on_event is not None and attempt.outcome is not Outcome.SUCCEEDED:
            on_event(attempt)
        return attempt

    async def run_chain(
        self,
        capability: Capability,
        chain: Sequence[str],
        *,
        model: str,
        needs_loras: bool,
        call: Callable[[Provider, str, UpstreamCall], Awaitable[T]],
        on_event: OnEvent | None = None,
    ) -> tuple[T, Provider, str, list[Attempt]]:
        """Try each provider of `chain` in order; the first success, its provider and model, and every attempt."""
        attempts: list[Attempt] = []
        for name in chain:
            provider = self.providers[name]
            # 1. Skip without a call: no key, no fitting model, open circuit
            chosen = provider.model_for(capability, model, needs_loras)
            skip: tuple[Outcome, str] | None = None
            if provider.key is None:
                skip = (Outcome.SKIPPED_UNAVAILABLE, provider.unavailable_reason)
            elif chosen is None:
                skip = (
                    Outcome.SKIPPED_UNSUPPORTED,
                    self._unsupported(provider, capability, model, needs_loras),
                )
            elif not provider.breaker.try_acquire():
                retry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(provider.breaker.retry_time or 0))
                skip = (
                    Outcome.SKIPPED_CIRCUIT_OPEN,
                    f"circuit open after repeated failures; next trial at {retry}",
                )
            if skip is not None:
                attempts.append(self._record(Attempt(name, chosen or "", skip[0], message=skip[1]), on_event))
                continue

            # 2. Call, within the provider's timeout
            assert chosen is not None
            http = UpstreamCall(
                provider.client,
                provider.key,
                provider.auth_scheme,
                max_retries=self.settings.max_retries,
                backoff=self.settings.retry_backoff_seconds,
                max_wait=self.settings.retry_max_wait_seconds,
                sleep=self._sleep,
                observe=self.metrics.upstream_seconds.labels(provider=name).observe,
            )
            start = time.perf_counter()
            try:
                async with asyncio.timeout(provider.timeout):
                    result = await call(provider, chosen, http)
            except (UpstreamError, TimeoutError) as exc:
                error = (
                    exc
                    if isinstance(exc, UpstreamError)
                    else UpstreamError(
                        grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {provider.timeout:g} s"
                    )
                )
                if error.provider_fault:
                    provider.breaker.record_failure()
                else:
                    provider.breaker.release()
                self.update_circuit_metrics()
                attempts.append(
                    self._record(
                        Attempt(
                            name,
                            chosen,
                            Outcome.FAILED,
                            status_code=error.status_code.value[0],
                            http_status=error.http_status,
                            message=error.message,
                            duration_seconds=time.perf_counter() - start,
                            retries=http.retries,
                        ),
                        on_event,
                    )
                )
                continue
            except BaseException:
                provider.breaker.release()
                raise
            provider.breaker.record_success()
            self.update_circuit_metrics()
            attempts.append(
                self._record(
                    Attempt(
                        name,
                        chosen,
                        Outcome.SUCCEEDED,
                        http_status=http.http_status,
                        duration_seconds=time.perf_counter() - start,
                        retries=http.retries,
                    ),
                    on_event,
                )
            )
            return result, provider, chosen, attempts
        raise self._all_failed(capability, attempts)

    @staticmethod
    def _unsupported(provider: Provider, capability: Capability, model: str, needs_loras: bool) -> str:
        if capability not in provider.models:
            return f"does not offer {capability.name}"
        served = ", ".join(provider.models[capability])
        if model and model not in provider.models[capability]:
            return f"does not serve model {model!r} for {capability.name} (it serves {served})"
        return f"none of its {capability.name} models ({served}) accepts LoRAs"

    @staticmethod
    def _all_failed(capability: Capability, attempts: list[Attempt]) -> Exception:
        summary = "; ".join(attempt.describe() for attempt in attempts) or "the chain is empty"
        called = [attempt for attempt in attempts if attempt.outcome is Outcome.FAILED]
        if called and all(
            attempt.status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for attempt in called
        ):
            return InvalidArgument("params", f"every provider refused the request: {summary}")
        return Unavailable(f"no provider could serve {capability.name}: {summary}")

    # --- the calls ---------------------------------------------------------------------------------

    async def analyze(self, task: AnalyzeTask, chain: Sequence[str], model: str = "") -> AnalyzeResult:
        chain = self.resolve_chain(Capability.ANALYZE_IMAGE, chain, "params.provider_chain")
        output, provider, chosen, attempts = await self.run_chain(
            Capability.ANALYZE_IMAGE,
            chain,
            model=model,
            needs_loras=False,
            call=lambda provider, chosen, http: provider.analyze(task, chosen, http),
        )
        description, suggestion = split_analysis(output.text)
        return AnalyzeResult(description, suggestion, provider.name, chosen, attempts)

    async def generate(
        self, task: GenerateTask, chain: Sequence[str], model: str = "", on_event: OnEvent | None = None
    ) -> ImageResult:
        chain = self.resolve_chain(task.capability, chain, "params.provider_chain")

        async def call(
            provider: Provider, chosen: str, http: UpstreamCall
        ) -> tuple[ImageOutput, np.ndarray, str]:
            output = await provider.generate(task, chosen, http, on_event or (lambda update: None))
            return (output, *await asyncio.to_thread(self._check_image, output))

        return await self._image_chain(task.capability, chain, model, bool(task.loras), call, on_event)

    async def img2img(
        self, task: Img2ImgTask, chain: Sequence[str], model: str = "", on_event: OnEvent | None = None
    ) -> ImageResult:
        chain = self.resolve_chain(Capability.IMAGE_TO_IMAGE, chain, "params.provider_chain")

        async def call(
            provider: Provider, chosen: str, http: UpstreamCall
        ) -> tuple[ImageOutput, np.ndarray, str]:
            output = await provider.img2img(task, chosen, http, on_event or (lambda update: None))
            return (output, *await asyncio.to_thread(self._check_image, output))

        return await self._image_chain(Capability.IMAGE_TO_IMAGE, chain, model, False, call, on_event)

    async def _image_chain(self, capability, chain, model, needs_loras, call, on_event) -> ImageResult:
        (output, pixels, file_format), provider, chosen, attempts = await self.run_chain(
            capability, chain, model=model, needs_loras=needs_loras, call=call, on_event=on_event
        )
        return ImageResult(pixels, output.data, file_format, output, provider.name, chosen, attempts)

    def _check_image(self, output: ImageOutput) -> tuple[np.ndarray, str]:
        """Decode the provider's file (a bad one is that provider's failure, so the chain goes on)."""
        try:
            pixels = images.decode_bytes(
                output.data, max_bytes=self.settings.max_download_bytes, field="result"
            )
        except (ImageError, ImageTooLarge) as exc:
            raise UpstreamError(
                grpc.StatusCode.UNAVAILABLE, f"the result is not a usable image: {exc}"
            ) from exc
        file_format = (
            "png"
            if output.data.startswith(b"\x89PNG")
            else "jpeg"
            if output.data.startswith(b"\xff\xd8")
            else "webp"
        )
        return pixels, file_format

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
