"""`BackendPool` against real in-process gRPC servers on port 0.

Two servers host `ProbeTiling`, a Tiling servicer whose PlanGrid and Split misbehave on request and
count what they see (calls, calls in flight, cancellations); the `dns:` test uses the real tiling
service. Waits are event-driven: the servicer reports every call it enters on a queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from gateway.backends import BackendPool
from services.common.errors import (
    DeadlineExceeded,
    ImageTooLarge,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding
from services.common.settings import ServerSettings
from services.tiling.app import build_server
from services.tiling.settings import TilingSettings
from tilesmith.v1 import common_pb2, tiling_pb2, tiling_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

MESSAGE_BYTES = 4 * 1024 * 1024
WAIT = 5.0  # seconds any event-driven wait may take before the test fails


class ProbeTiling(tiling_pb2_grpc.TilingServicer):
    """PlanGrid and Split behave as `mode` says and count calls; `gate` releases blocked calls."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.entered: asyncio.Queue[None] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def _enter(self) -> None:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.entered.put_nowait(None)
        match self.mode:
            case "exhausted":
                raise ResourceExhausted("the queue is full")
            case "unavailable":
                raise Unavailable("warming up")
            case "too_large":
                raise ImageTooLarge("image_size: 99999x99999 is over the pixel cap")
            case "invalid":
                raise InvalidArgument("tile_size.width", "must be between 64 and 4096 pixels, got 3")
            case "block":
                await self.gate.wait()

    async def PlanGrid(self, request, context):
        try:
            await self._enter()
            return common_pb2.GridPlan(overlap=request.overlap)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.in_flight -= 1

    async def Split(self, request_iterator, context):
        try:
            async for _ in request_iterator:
                pass
            await self._enter()
            for index in range(3):
                yield tiling_pb2.TileImage(tile=common_pb2.Tile(index=index))
                if self.mode == "fail_after_first":
                    raise Unavailable("lost the GPU")
                if self.mode == "block_after_first":
                    await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.in_flight -= 1


async def _start(servicer: ProbeTiling) -> GrpcServer:
    settings = ServerSettings(
        host="127.0.0.1", port=0, metrics_host="127.0.0.1", max_message_bytes=MESSAGE_BYTES
    )
    binding = ServiceBinding("tilesmith.v1.Tiling", tiling_pb2_grpc.add_TilingServicer_to_server, servicer)
    server = GrpcServer(settings, [binding], ServerMetrics("probe", "0"), serve_metrics_http=False)
    await server.start()
    await server.set_serving()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def replicas() -> AsyncIterator[list[tuple[GrpcServer, ProbeTiling]]]:
    pairs = []
    for _ in range(2):
        servicer = ProbeTiling()
        pairs.append((await _start(servicer), servicer))
    yield pairs
    for server, _ in pairs:
        await server.stop(0)


@pytest.fixture
def probes(replicas) -> tuple[ProbeTiling, ProbeTiling]:
    for _, servicer in replicas:
        servicer.reset()
    return replicas[0][1], replicas[1][1]


@pytest.fixture
def both(replicas) -> str:
    return ",".join(server.address for server, _ in replicas)


def _pool(address: str, **options) -> BackendPool:
    options.setdefault("backoff_seconds", 0.01)
    return BackendPool("tiling", address, max_message_bytes=MESSAGE_BYTES, **options)


def plan_grid(overlap: int = 8):
    def fn(channel: grpc.aio.Channel, metadata, timeout: float):
        request = tiling_pb2.PlanGridRequest(overlap=overlap)
        return tiling_pb2_grpc.TilingStub(channel).PlanGrid(request, metadata=metadata, timeout=timeout)

    return fn


def split(channel: grpc.aio.Channel, metadata, timeout: float):
    return tiling_pb2_grpc.TilingStub(channel).Split(
        iter([tiling_pb2.SplitRequest()]), metadata=metadata, timeout=timeout
    )


async def _entered(probe: ProbeTiling, times: int = 1) -> None:
    for _ in range(times):
        await asyncio.wait_for(probe.entered.get(), WAIT)


async def test_comma_list_balances_over_the_replicas(probes, both) -> None:
    a, b = probes
    async with _pool(both) as pool:
        for overlap in range(10):
            assert (await pool.call(plan_grid(overlap))).overlap == overlap
    assert (a.calls, b.calls) == (5, 5)


async def test_in_flight_limit_per_replica_is_never_exceeded(probes, both) -> None:
    a, b = probes
    a.mode = b.mode = "block"
    async with _pool(both, in_flight_per_replica=2) as pool:
        calls = [asyncio.create_task(pool.call(plan_grid())) for _ in range(10)]
        await _entered(a, 2)
        await _entered(b, 2)
        assert list(pool.in_flight.values()) == [2, 2]
        assert pool.waiting == 6
        a.gate.set()
        b.gate.set()
        await asyncio.wait_for(asyncio.gather(*calls), WAIT)
        assert list(pool.in_flight.values()) == [0, 0]
    assert a.calls + b.calls == 10
    assert a.max_in_flight == b.max_in_flight == 2


async def test_resource_exhausted_is_retried_onto_the_other_replica(probes, both) -> None:
    a, b = probes
    a.mode = "exhausted"
    async with _pool(both) as pool:
        for _ in range(4):
            await pool.call(plan_grid())
    # Ties go to the replica picked longest ago, so every call tried A first, then B.
    assert (a.calls, b.calls) == (4, 4)


@pytest.mark.parametrize(
    ("mode", "idempotent", "error", "calls"),
    [
        ("exhausted", True, ResourceExhausted, 3),  # one replica: retried on it, then given up
        ("unavailable", True, Unavailable, 3),
        ("unavailable", False, Unavailable, 1),  # non-idempotent: never retried
        ("too_large", True, ImageTooLarge, 1),  # too large everywhere: not retried
        ("invalid", True, InvalidArgument, 1),
    ],
)
async def test_retries_and_errors_on_one_replica(probes, replicas, mode, idempotent, error, calls) -> None:
    a, _ = probes
    a.mode = mode
    async with _pool(replicas[0][0].address, retries=2) as pool:
        with pytest.raises(error) as caught:
            await pool.call(plan_grid(), idempotent=idempotent)
    assert type(caught.value) is error
    assert a.calls == calls


async def test_backend_domain_error_keeps_field_message_and_request_id(probes, replicas) -> None:
    a, _ = probes
    a.mode = "invalid"
    async with _pool(replicas[0][0].address) as pool:
        with pytest.raises(InvalidArgument) as caught:
            await pool.call(plan_grid())
    assert caught.value.field == "tile_size.width"
    assert caught.value.message == "must be between 64 and 4096 pixels, got 3"
    assert caught.value.request_id


async def test_a_stopped_replica_is_avoided_and_its_address_stays_out_of_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = ProbeTiling(), ProbeTiling()
    server_a, server_b = await _start(a), await _start(b)
    address_b = server_b.address
    await server_b.stop(0)
    try:
        async with _pool(f"{server_a.address},{address_b}") as pool:
            for _ in range(6):
                await pool.call(plan_grid())
            assert a.calls == 6
            # With no replica left, the caller learns which service failed, not where it ran.
            await server_a.stop(0)
            with pytest.raises(Unavailable) as caught:
                await pool.call(plan_grid(), deadline=2)
    finally:
        await server_a.stop(0)
    assert str(caught.value) == "the tiling service call failed: UNAVAILABLE"
    assert any(address_b in record.getMessage() for record in caplog.records)


async def test_deadline_exceeded_cancels_the_backend_call(probes, replicas) -> None:
    a, _ = probes
    a.mode = "block"
    async with _pool(replicas[0][0].address) as pool:
        with pytest.raises(DeadlineExceeded):
            await pool.call(plan_grid(), deadline=0.2)
        await asyncio.wait_for(a.cancelled.wait(), WAIT)
        assert a.calls == 1  # DEADLINE_EXCEEDED is not retried
        assert list(pool.in_flight.values()) == [0]


async def test_waiting_for_a_slot_counts_against_the_deadline(probes, replicas) -> None:
    a, _ = probes
    a.mode = "block"
    async with _pool(replicas[0][0].address, in_flight_per_replica=1) as pool:
        first = asyncio.create_task(pool.call(plan_grid()))
        await _entered(a)
        with pytest.raises(DeadlineExceeded):
            await pool.call(plan_grid(), deadline=0.1)
        a.gate.set()
        await asyncio.wait_for(first, WAIT)
    assert a.calls == 1


async def test_cancelling_the_caller_cancels_the_backend_call_and_frees_the_slot(probes, replicas) -> None:
    a, _ = probes
    a.mode = "block"
    async with _pool(replicas[0][0].address) as pool:
        task = asyncio.create_task(pool.call(plan_grid()))
        await _entered(a)
        task.cancel()
        await asyncio.wait_for(a.cancelled.wait(), WAIT)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert list(pool.in_flight.values()) == [0]


async def test_ipv4_target_is_balanced_round_robin_by_grpc(probes, replicas) -> None:
    """One channel over two fixed addresses (gRPC's `ipv4:` scheme): gRPC's round_robin spreads
    the calls; without the service config, pick_first would send them all to one server."""
    a, b = probes
    target = "ipv4:" + ",".join(server.address for server, _ in replicas)
    async with _pool(target, in_flight_per_replica=3) as pool:
        assert list(pool.in_flight) == [target]
        calls = [asyncio.create_task(pool.call(plan_grid())) for _ in range(8)]
        await asyncio.wait_for(asyncio.gather(*calls), WAIT)
        assert a.calls + b.calls == 8
        for _ in range(20):  # round_robin uses a server only once its connection is ready
            await pool.call(plan_grid())
    assert a.calls > 0
    assert b.calls > 0


async def test_dns_target_reaches_the_tiling_service() -> None:
    server = build_server(
        TilingSettings(host="127.0.0.1", port=0, metrics_host="127.0.0.1", workers=1, max_queue=4),
        serve_metrics_http=False,
    )
    await server.start()
    await server.set_serving()
    try:
        async with _pool(f"dns:///localhost:{server.port}") as pool:

            def fn(channel, metadata, timeout):
                request = tiling_pb2.PlanGridRequest(
                    image_size=common_pb2.Size(width=300, height=200),
                    tile_size=common_pb2.Size(width=128, height=128),
                    overlap=16,
                )
                return tiling_pb2_grpc.TilingStub(channel).PlanGrid(
                    request, metadata=metadata, timeout=timeout
                )

            plan = await pool.call(fn)
    finally:
        await server.stop(0)
    assert plan.rows >= 2
    assert plan.cols >= 3


async def test_stream_yields_messages_as_they_come(probes, replicas) -> None:
    a, _ = probes
    a.mode = "block_after_first"
    async with _pool(replicas[0][0].address) as pool:
        messages = pool.stream(split)
        first = await asyncio.wait_for(anext(messages), WAIT)  # while the server waits on the gate
        assert first.tile.index == 0
        a.gate.set()
        assert [message.tile.index async for message in messages] == [1, 2]
        assert list(pool.in_flight.values()) == [0]


async def test_stream_is_retried_onto_another_replica_before_its_first_message(probes, both) -> None:
    a, b = probes
    a.mode = "exhausted"
    async with _pool(both) as pool:
        indices = [message.tile.index async for message in pool.stream(split)]
    assert indices == [0, 1, 2]
    assert (a.calls, b.calls) == (1, 1)


async def test_stream_is_not_retried_after_its_first_message(probes, both) -> None:
    a, b = probes
    a.mode = b.mode = "fail_after_first"
    async with _pool(both) as pool:
        seen = []

        async def consume() -> None:
            async for message in pool.stream(split):
                seen.append(message.tile.index)

        with pytest.raises(Unavailable):
            await consume()
        assert list(pool.in_flight.values()) == [0, 0]
    assert seen == [0]
    assert a.calls + b.calls == 1


async def test_leaving_a_stream_early_cancels_it(probes, replicas) -> None:
    a, _ = probes
    a.mode = "block_after_first"
    async with _pool(replicas[0][0].address) as pool:
        messages = pool.stream(split)
        await asyncio.wait_for(anext(messages), WAIT)
        await messages.aclose()
        await asyncio.wait_for(a.cancelled.wait(), WAIT)
        assert list(pool.in_flight.values()) == [0]


async def test_bearer_token_is_sent(probes, replicas) -> None:
    seen = []

    def fn(channel, metadata, timeout):
        seen.extend(metadata)
        return plan_grid()(channel, metadata, timeout)

    async with _pool(replicas[0][0].address, token="s3cret") as pool:
        await pool.call(fn)
    assert ("authorization", "Bearer s3cret") in seen


async def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="in_flight_per_replica"):
        BackendPool("tiling", "a:1", max_message_bytes=MESSAGE_BYTES, in_flight_per_replica=0)
    with pytest.raises(ValueError, match="address is empty"):
        BackendPool("tiling", " , ", max_message_bytes=MESSAGE_BYTES)
