"""Small helpers for tests that call in-process servers."""

from __future__ import annotations

import urllib.request

import grpc
import pytest


async def stream(*messages):
    """An async request iterator over `messages`."""
    for message in messages:
        yield message


async def drain(call) -> None:
    """Await a unary call or read a streaming one to its end."""
    if hasattr(call, "__aiter__"):
        async for _ in call:
            pass
    else:
        await call


async def rpc_error(call) -> grpc.aio.AioRpcError:
    """The error a unary or streaming call ends with (the test fails if it ends without one)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain(call)
    return caught.value


def scrape(port: int) -> str:
    """The text of http://127.0.0.1:<port>/metrics (blocking: call through asyncio.to_thread)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()
