"""A bounded pool for CPU- or GPU-heavy work behind an async server, and calls that stream events.

A call takes a slot (`async with pool.slot()`) and runs its heavy steps on the pool's threads
(`await pool.run(fn, ...)`), so the event loop keeps answering health checks and other calls.
At most `workers` calls hold a slot; at most `max_queue` wait for one; beyond that the call is
refused at once with RESOURCE_EXHAUSTED so clients (the gateway) can retry on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import Gauge

from services.common.errors import ResourceExhausted

__all__ = ["BackgroundCall", "WorkerPool"]

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
        self.admit()
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
        """Run `fn(*args, **kwargs)` on one of the pool's threads.

        A thread cannot be interrupted: when the caller is cancelled this waits for `fn` to return before
        re-raising, so the caller's slot is never freed while its work still runs.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await future
            raise

    def admit(self) -> None:
        """Raise RESOURCE_EXHAUSTED now if a new call could not even wait for a slot.

        `slot()` checks the same; calling this first lets a streaming call refuse before it has sent
        anything (a client may retry elsewhere only until the first message).
        """
        if self._slots.locked() and self._waiting >= self.max_queue:
            raise ResourceExhausted(
                f"{self._name} is busy: {self.workers} calls running and {self._waiting} waiting "
                f"(queue limit {self.max_queue}); retry later or on another replica"
            )

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot now."""
        return self._waiting

    @property
    def busy(self) -> bool:
        """Whether every slot is taken (a new call would wait)."""
        return self._slots.locked()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _set(gauge: Gauge | None, value: int) -> None:
        if gauge is not None:
            gauge.set(value)


class BackgroundCall:
    """A blocking function on a pool thread that emits events and stops when asked.

    `fn(emit, cancel)` runs on the pool; it may call `emit(event)` from its thread (events reach the
    event loop in order) and should check `cancel.is_set()` at safe points. Use as an async context
    manager: leaving it early — the client cancelled, a deadline passed, an error — sets `cancel` and
    waits for the thread to stop, so a slot is never released while its work still runs::

        async with pool.slot(), BackgroundCall(pool, fn) as call:
            async for event in call.events():
                yield to_message(event)
            result = await call.result()
    """

    _DONE = object()

    def __init__(self, pool: WorkerPool, fn: Callable[[Callable[[Any], None], threading.Event], Any]) -> None:
        self._pool = pool
        self._fn = fn
        self.cancel = threading.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._future: asyncio.Future[Any] | None = None

    async def __aenter__(self) -> BackgroundCall:
        loop = asyncio.get_running_loop()

        def emit(event: Any) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, event)

        def run() -> Any:
            try:
                return self._fn(emit, self.cancel)
            finally:
                loop.call_soon_threadsafe(self._queue.put_nowait, self._DONE)

        self._future = asyncio.ensure_future(self._pool.run(run))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._future is not None
        if not self._future.done():
            self.cancel.set()
            # The thread stops at its next check; wait for it even while this task is being cancelled.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._future)

    async def events(self) -> AsyncIterator[Any]:
        """The events `fn` emits, until it returns or raises."""
        while (event := await self._queue.get()) is not self._DONE:
            yield event

    async def result(self) -> Any:
        """What `fn` returned (or raise what it raised). Shielded: a cancelled caller does not cancel
        the bookkeeping of a thread that is still running; `__aexit__` stops and waits for it."""
        assert self._future is not None
        return await asyncio.shield(self._future)
