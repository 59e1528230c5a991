"""Assembles the gateway: settings -> job store, backend pools, job runner, servicer, server core."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

import services
from gateway.blobs import FolderBlobStore
from gateway.clients import Backends
from gateway.jobs import JobRunner
from gateway.metrics import GatewayMetrics
from gateway.servicer import GatewayServicer
from gateway.settings import GatewaySettings
from gateway.store import SqliteJobStore
from services.common.errors import Unavailable
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding
from tilesmith.v1 import gateway_pb2, gateway_pb2_grpc

__all__ = ["SERVICE_NAME", "Gateway", "build_server"]

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name


class Gateway:
    """The gateway's parts and their life: `start` waits for the backends and resumes jobs; `stop`
    parks running jobs (they resume at the next start) and closes the store."""

    def __init__(
        self, settings: GatewaySettings, registry: CollectorRegistry, *, embedded: bool = False
    ) -> None:
        self.settings = settings
        state = Path(settings.state_dir).resolve()
        self.store = SqliteJobStore(state / "jobs.sqlite3", FolderBlobStore(state / "blobs"))
        self.backends = Backends(settings, embedded=embedded)
        self.metrics = GatewayMetrics(registry)
        self.servicer: GatewayServicer | None = None
        self.runner = JobRunner(self.store, self.backends, settings, self.metrics, self._spec_context)
        self.servicer = GatewayServicer(settings, self.store, self.backends, self.runner)
        self.binding = ServiceBinding(
            SERVICE_NAME, gateway_pb2_grpc.add_GatewayServicer_to_server, self.servicer
        )

    async def _spec_context(self):
        assert self.servicer is not None
        return await self.servicer.spec_context()

    async def wait_for_backends(self, within: float = 600.0) -> None:
        """Return once every replica of every configured backend answers SERVING, else Unavailable.

        Every channel is checked on its own (a fixed address list names replicas that must all be up;
        behind a `dns:` target gRPC balances, and Kubernetes lists only ready pods), so no tile is sent
        to a replica still loading its models. Quiet: not being up yet is expected while this runs.
        """
        request = health_pb2.HealthCheckRequest(service="")
        loop = asyncio.get_running_loop()
        end = loop.time() + within

        async def serving(pool, channel) -> None:
            stub = health_pb2_grpc.HealthStub(channel)
            metadata = pool._call_metadata()
            while True:
                try:
                    answer = await stub.Check(request, metadata=metadata, timeout=5.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    reason = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                except grpc.aio.AioRpcError as exc:  # not listening yet
                    reason = exc.code().name
                if loop.time() >= end:
                    raise Unavailable(
                        f"the {pool.name} backend ({pool.address_of(channel)}) did not become SERVING "
                        f"in {within:.0f} s: {reason}"
                    )
                log.debug("waiting for a backend", extra={"backend": pool.name, "reason": reason})
                await asyncio.sleep(0.5)

        await asyncio.gather(
            *(serving(pool, channel) for pool in self.backends.pools for channel in pool.channels)
        )

    async def start(self, *, backend_timeout: float = 600.0, wait_for_backends: bool = True) -> None:
        """Wait until every backend is SERVING (skipped when they share this process and are loaded),
        then resume parked jobs and start taking new ones."""
        if wait_for_backends:
            await self.wait_for_backends(backend_timeout)
        await self.runner.start()
        log.info("gateway ready", extra={"backends": [pool.name for pool in self.backends.pools]})

    async def stop(self) -> None:
        await self.runner.stop()
        await self.backends.close()
        await asyncio.to_thread(self.store.close)


def build_server(
    settings: GatewaySettings, registry: CollectorRegistry | None = None, *, serve_metrics_http: bool = True
) -> tuple[GrpcServer, Gateway]:
    """A gateway server (not started) and its parts (call `gateway.start()` once it listens)."""
    registry = registry or CollectorRegistry()
    gateway = Gateway(settings, registry)
    server = GrpcServer(
        settings,
        [gateway.binding],
        ServerMetrics("gateway", services.__version__, registry),
        serve_metrics_http=serve_metrics_http,
    )
    return server, gateway
