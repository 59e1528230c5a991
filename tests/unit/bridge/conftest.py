"""Fakes for the bridge's unit tests: a recording sleep, a clock, small images, a bridge on a MockTransport."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from services.bridge.chains import Bridge, build_providers
from services.bridge.metrics import BridgeMetrics
from services.bridge.settings import BridgeSettings

FAL_KEY = "fal-secret-0123456789abcdef"
ZAI_KEY = "zai-secret-0123456789abcdef"
REPLICATE_KEY = "r8_secret_0123456789abcdef"
OPENROUTER_KEY = "sk-or-secret-0123456789abcdef"


def png_bytes(width: int = 8, height: int = 6, color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), color, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class Sleeps:
    """An injected sleep that records its waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_settings(**overrides) -> BridgeSettings:
    values = {
        "fal_key": FAL_KEY,
        "zai_api_key": ZAI_KEY,
        "replicate_api_token": REPLICATE_KEY,
        "openrouter_api_key": OPENROUTER_KEY,
        "fal_base_url": "https://queue.fal.test",
        "zai_base_url": "https://zai.test/api/paas/v4",
        "openrouter_base_url": "https://openrouter.test/api/v1",
        "replicate_base_url": "https://replicate.test",
        "max_retries": 2,
        "retry_backoff_seconds": 0.5,
        "poll_interval_seconds": 0.25,
        "breaker_failure_threshold": 2,
        "breaker_cooldown_seconds": 30,
    }
    values.update(overrides)
    return BridgeSettings(**values)


def make_bridge(handler, sleeps: Sleeps, clock: Clock | None = None, **overrides) -> Bridge:
    settings = make_settings(**overrides)
    providers = build_providers(settings, httpx.MockTransport(handler), clock or Clock())
    return Bridge(settings, providers, BridgeMetrics(CollectorRegistry()), sleeps)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def clock() -> Clock:
    return Clock()
