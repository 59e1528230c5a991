"""A bounded pool for CPU- or GPU-heavy work behind an async server.

A call takes a slot (`async with pool.slot()`) and runs its heavy steps on the pool's threads
(`await pool.run(fn, ...)`), so the event loop keeps answering health checks and other calls.
At most `workers` calls hold a slot; at most `max_queue` wait for one; beyond that the call is
refused at once with RESOURCE_EXHAUSTED so clients (the gateway) can retry on another replica.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import Gauge

from services.common.errors import ResourceExhausted

__all__ = ["WorkerPool"]

T = TypeVar("T")


class WorkerPool:
    def __init__(
        self,
        workers: int,
        max_queue: int,
        *,
        name: str,
        queue_gauge: Gauge | None = None,
        running_gauge: Gauge | None = None,
    ) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self._name = name
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._waiting = 0
        self._queue_gauge = queue_gauge
        self._running_gauge = running_gauge

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the pool's slots for the duration of a call (waiting in the queue if need be)."""
        if self._slots.locked() and self._waiting >= self.max_queue:
            raise ResourceExhausted(
                f"{self._name} is busy: {self.workers} calls running and {self._waiting} waiting "
                f"(queue limit {self.max_queue}); retry later or on another replica"
            )
        self._waiting += 1
        self._set(self._queue_gauge, self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self._set(self._queue_gauge, self._waiting)
        if self._running_gauge is not None:
            self._running_gauge.inc()
        try:
            yield
        finally:
            self._slots.release()
            if self._running_gauge is not None:
                self._running_gauge.dec()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on one of the pool's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _set(gauge: Gauge | None, value: int) -> None:
        if gauge is not None:
            gauge.set(value)
