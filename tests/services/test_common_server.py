"""The shared server core against a real in-process grpc.aio server on port 0.

A small test servicer (the Tiling service's PlanGrid, re-implemented to misbehave on request)
exercises what every Tilesmith service inherits: health, reflection, error mapping, request ids,
auth, message limits and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.errors import ImageTooLarge, InvalidArgument
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding, channel_options
from services.common.settings import ServerSettings
from tilesmith.v1 import common_pb2, tiling_pb2, tiling_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="session")

SERVICE = "tilesmith.v1.Tiling"
TOKEN = "t0ken-for-tests"


class MisbehavingTiling(tiling_pb2_grpc.TilingServicer):
    """PlanGrid's overlap picks the behaviour under test."""

    async def PlanGrid(self, request, context):
        match request.overlap:
            case 1:
                raise InvalidArgument("tile_size.width", "must be between 64 and 4096 pixels, got 3")
            case 2:
                raise RuntimeError("secret internal detail")
            case 3:
                raise ImageTooLarge("image_size: 99999x99999 is too many pixels")
        return common_pb2.GridPlan(overlap=request.overlap)

    async def Split(self, request_iterator, context):
        async for _ in request_iterator:
            pass
        yield tiling_pb2.TileImage()


async def _start(auth_token: str | None = None, max_message_bytes: int = 1024 * 1024) -> GrpcServer:
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        metrics_host="127.0.0.1",
        auth_token=auth_token,
        max_message_bytes=max_message_bytes,
    )
    binding = ServiceBinding(SERVICE, tiling_pb2_grpc.add_TilingServicer_to_server, MisbehavingTiling())
    server = GrpcServer(settings, [binding], ServerMetrics("testsvc", "1.2.3"))
    await server.start()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server():
    server = await _start()
    await server.set_serving()
    yield server
    await server.stop(0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def channel(server: GrpcServer):
    async with grpc.aio.insecure_channel(
        server.address, options=channel_options(64 * 1024 * 1024)
    ) as channel:
        yield channel


def _metrics(server: GrpcServer) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        return response.read().decode()


async def test_health_is_not_serving_until_ready_and_again_on_shutdown() -> None:
    server = await _start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await server.set_serving()
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop(grace=1))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in stub.ServerReflectionInfo(requests()):
        names = {service.name for service in reply.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_domain_error_maps_to_its_code_and_names_the_field(channel: grpc.aio.Channel) -> None:
    stub = tiling_pb2_grpc.TilingStub(channel)
    call = stub.PlanGrid(tiling_pb2.PlanGridRequest(overlap=1), metadata=(("x-request-id", "req-abc"),))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("tile_size.width: must be between 64 and 4096")
    trailing = dict(caught.value.trailing_metadata())
    assert trailing["x-request-id"] == "req-abc"
    assert trailing["tilesmith-error"] == "InvalidArgument"
    assert trailing["tilesmith-field"] == "tile_size.width"


async def test_subclass_keeps_its_parents_code(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tiling_pb2_grpc.TilingStub(channel).PlanGrid(tiling_pb2.PlanGridRequest(overlap=3))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(caught.value.trailing_metadata())["tilesmith-error"] == "ImageTooLarge"


async def test_unexpected_error_is_internal_without_detail_and_logged_with_request_id(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="services.common.interceptors")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tiling_pb2_grpc.TilingStub(channel).PlanGrid(tiling_pb2.PlanGridRequest(overlap=2))
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in error.details()
    request_id = dict(error.trailing_metadata())["x-request-id"]
    assert request_id in error.details()
    # The log has the detail, and the line is tied to the request id by the logging context.
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "secret internal detail" in str(record.exc_info[1])
    assert record.request_id == request_id


async def test_server_keeps_serving_after_errors(channel: grpc.aio.Channel) -> None:
    stub = tiling_pb2_grpc.TilingStub(channel)
    for overlap in (1, 2, 3):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.PlanGrid(tiling_pb2.PlanGridRequest(overlap=overlap))
    assert (await stub.PlanGrid(tiling_pb2.PlanGridRequest(overlap=7))).overlap == 7


async def test_message_limit_is_explicit(channel: grpc.aio.Channel) -> None:
    """The server's 1 MiB limit (set in the test settings) refuses a 2 MiB request."""
    stub = tiling_pb2_grpc.TilingStub(channel)

    async def big():
        yield tiling_pb2.SplitRequest(image=common_pb2.ImageChunk(data=b"\0" * (2 * 1024 * 1024)))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.Split(big()):
            pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_unimplemented_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    async def one():
        yield tiling_pb2.ResizeRequest()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in tiling_pb2_grpc.TilingStub(channel).Resize(one()):
            pass
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_metrics_endpoint_counts_calls_by_code(server: GrpcServer, channel: grpc.aio.Channel) -> None:
    stub = tiling_pb2_grpc.TilingStub(channel)
    await stub.PlanGrid(tiling_pb2.PlanGridRequest(overlap=9))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.PlanGrid(tiling_pb2.PlanGridRequest(overlap=1))
    text = _metrics(server)
    labels = 'grpc_method="PlanGrid",grpc_service="tilesmith.v1.Tiling",grpc_type="unary"'
    assert f"grpc_server_started_total{{{labels}}}" in text
    assert f'grpc_server_handled_total{{grpc_code="OK",{labels}}}' in text
    assert f'grpc_server_handled_total{{grpc_code="INVALID_ARGUMENT",{labels}}}' in text
    assert "grpc_server_handling_seconds_count" in text
    assert 'testsvc_build_info{version="1.2.3"} 1.0' in text


async def test_auth_interceptor_requires_the_bearer_token_but_not_for_health() -> None:
    server = await _start(auth_token=TOKEN)
    await server.set_serving()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = tiling_pb2_grpc.TilingStub(channel)
            for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.PlanGrid(tiling_pb2.PlanGridRequest(overlap=5), metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = await stub.PlanGrid(
                tiling_pb2.PlanGridRequest(overlap=5), metadata=(("authorization", f"Bearer {TOKEN}"),)
            )
            assert reply.overlap == 5
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert 'grpc_code="UNAUTHENTICATED"' in _metrics(server)
    finally:
        await server.stop(0)


async def test_connections_are_closed_after_their_max_age_and_clients_reconnect() -> None:
    """With max_connection_age the server sends GOAWAY; a client's next call opens a new connection
    (which is what lets `dns:///` clients pick up new replicas)."""
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        max_connection_age_seconds=0.2,
        max_connection_age_grace_seconds=1.0,
    )
    server = GrpcServer(
        settings,
        [ServiceBinding(SERVICE, tiling_pb2_grpc.add_TilingServicer_to_server, MisbehavingTiling())],
        ServerMetrics("test", "0"),
        serve_metrics_http=False,
    )
    await server.start()
    await server.set_serving()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = tiling_pb2_grpc.TilingStub(channel)
            request = tiling_pb2.PlanGridRequest(
                image_size=common_pb2.Size(width=64, height=64),
                tile_size=common_pb2.Size(width=64, height=64),
            )
            await stub.PlanGrid(request)
            # Wait (bounded) until the aged connection is gone: the channel leaves READY.
            async with asyncio.timeout(10):
                while channel.get_state() == grpc.ChannelConnectivity.READY:
                    await channel.wait_for_state_change(grpc.ChannelConnectivity.READY)
            await stub.PlanGrid(request)  # a new connection serves the next call
            assert channel.get_state() == grpc.ChannelConnectivity.READY
    finally:
        await server.stop(0)
