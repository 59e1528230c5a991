"""In-process servers on port 0, shared per module (see each test module's fixtures)."""

from __future__ import annotations

import grpc
import pytest_asyncio

from services.common.server import channel_options
from services.tiling.app import build_server
from services.tiling.settings import TilingSettings

MESSAGE_BYTES = 64 * 1024 * 1024
# Small enough that the oversize tests need no big buffers.
TEST_MAX_PIXELS = 4096 * 4096


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tiling_server():
    settings = TilingSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", max_pixels=TEST_MAX_PIXELS, workers=2, max_queue=8
    )
    server = build_server(settings)
    await server.start()
    await server.set_serving()
    yield server
    await server.stop(0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tiling_channel(tiling_server):
    async with grpc.aio.insecure_channel(
        tiling_server.address, options=channel_options(MESSAGE_BYTES)
    ) as channel:
        yield channel
