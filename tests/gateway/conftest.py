"""The embedded stack (gateway + tiling + diffusion in one process, tiny profile), shared by the session."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest_asyncio

from gateway.stack import EmbeddedStack, StackConfig
from tilesmith import AsyncClient, UpscaleOptions
from tilesmith.v1 import gateway_pb2

# Small and quick: 64 px tiles, 2 denoising steps (4 x 0.5).
FAST = UpscaleOptions(target=2.0, tile_size=64, overlap=16, steps=4, strength=0.5, seed=1234)


def noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth random picture (noise upscaled), so Lanczos and diffusion both have structure to keep."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (-(-height // 8), -(-width // 8), channels), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width])


def stack_config(tmp_path, **overrides) -> StackConfig:
    values = {
        "profile": "tiny",
        "state_dir": tmp_path / "state",
        "torch_threads": 1,
        "grace_seconds": 0.0,
        "metrics_port": 0,
        "batch_size": 2,
    }
    return StackConfig(**{**values, **overrides})


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory):
    async with EmbeddedStack(stack_config(tmp_path_factory.mktemp("gateway"))) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(stack):
    async with AsyncClient(stack.address) as connected:
        yield connected


async def logged_events(client: AsyncClient, job_id: str, after_seq: int = 0) -> list[gateway_pb2.JobEvent]:
    """Every logged event of a job (transient steps and heartbeats left out), until its end."""
    return [
        event
        async for event in client.watch_job(job_id, after_seq=after_seq)
        if event.WhichOneof("kind") not in ("step", "heartbeat")
    ]


async def wait_for(predicate, within: float = 30.0, every: float = 0.05) -> None:
    """Poll `predicate()` (sync) until it is true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)
