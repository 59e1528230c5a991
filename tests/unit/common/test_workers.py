"""WorkerPool and BackgroundCall: bounded queue, events from threads, cancellation that waits."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.common.errors import ResourceExhausted
from services.common.workers import BackgroundCall, WorkerPool

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_full_queue_is_refused_at_once() -> None:
    pool = WorkerPool(1, max_queue=1, name="gpu")
    release = asyncio.Event()

    async def hold() -> None:
        async with pool.slot():
            await release.wait()

    running = asyncio.create_task(hold())
    waiting = asyncio.create_task(hold())
    for _ in range(10):  # let both tasks reach their await points
        await asyncio.sleep(0)
    assert pool.busy
    assert pool.waiting == 1
    with pytest.raises(ResourceExhausted, match="queue limit 1"):
        async with pool.slot():
            pass
    release.set()
    await asyncio.gather(running, waiting)
    assert not pool.busy
    pool.close()


async def test_background_call_streams_events_in_order_and_returns() -> None:
    pool = WorkerPool(1, max_queue=0, name="gpu")

    def work(emit, cancel: threading.Event) -> str:
        for step in range(5):
            emit(step)
        return "done"

    async with BackgroundCall(pool, work) as call:
        events = [event async for event in call.events()]
        assert await call.result() == "done"
    assert events == [0, 1, 2, 3, 4]
    pool.close()


async def test_leaving_early_cancels_and_waits_for_the_thread() -> None:
    pool = WorkerPool(1, max_queue=0, name="gpu")
    started, finished = threading.Event(), threading.Event()

    def work(emit, cancel: threading.Event) -> None:
        started.set()
        emit("started")
        cancel.wait(timeout=30)  # a denoising loop checking between steps
        finished.set()

    async def consumer() -> None:
        async with pool.slot(), BackgroundCall(pool, work) as call:
            async for _ in call.events():
                await asyncio.sleep(3600)  # the client goes away while the work runs

    task = asyncio.create_task(consumer())
    await asyncio.to_thread(started.wait, 30)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The slot was released only after the thread stopped.
    assert finished.is_set()
    assert not pool.busy
    pool.close()


async def test_errors_in_the_thread_reach_the_caller() -> None:
    pool = WorkerPool(1, max_queue=0, name="gpu")

    def work(emit, cancel: threading.Event) -> None:
        raise ValueError("boom")

    async with BackgroundCall(pool, work) as call:
        assert [event async for event in call.events()] == []
        with pytest.raises(ValueError, match="boom"):
            await call.result()
    pool.close()


async def test_cancelled_run_keeps_the_slot_until_the_thread_returns() -> None:
    pool = WorkerPool(1, max_queue=0, name="cpu")
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait(timeout=30)
        finished.set()

    async def call() -> None:
        async with pool.slot():
            await pool.run(work)

    task = asyncio.create_task(call())
    await asyncio.to_thread(started.wait, 30)
    task.cancel()
    for _ in range(10):
        await asyncio.sleep(0)
    assert pool.busy  # the thread still runs, so the slot is still held
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()
    assert not pool.busy
    pool.close()


async def test_cancelled_result_waiter_stops_and_waits_for_the_thread() -> None:
    pool = WorkerPool(1, max_queue=0, name="gpu")
    started, stopped = threading.Event(), threading.Event()

    def work(emit, cancel: threading.Event) -> None:
        started.set()
        cancel.wait(timeout=30)
        stopped.set()

    async def consumer() -> None:
        async with pool.slot(), BackgroundCall(pool, work) as call:
            await call.result()

    task = asyncio.create_task(consumer())
    await asyncio.to_thread(started.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped.is_set()  # asked to stop, and waited for
    assert not pool.busy
    pool.close()
