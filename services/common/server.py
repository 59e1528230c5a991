"""The grpc.aio server every Tilesmith service runs on.

`GrpcServer` wires what every service shares: explicit message limits, the interceptor chain
(metrics -> errors -> auth), `grpc.health.v1` (NOT_SERVING until `set_serving()`, and again on
shutdown), reflection, and /metrics on its own HTTP port. `run_until_signal` is the body of every
entry point's `main()`: start, load models, report SERVING, wait for SIGTERM/SIGINT, stop gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.errors import TilesmithError
from services.common.interceptors import AuthInterceptor, ErrorInterceptor, MetricsInterceptor
from services.common.metrics import MetricsEndpoint, ServerMetrics, serve_metrics
from services.common.settings import ServerSettings

__all__ = ["GrpcServer", "ServiceBinding", "channel_options", "run_until_signal"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to host: its full name, the generated `add_*Servicer_to_server`, the servicer."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: object


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits set explicitly on both ends of every channel (gRPC's default is 4 MiB)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


class GrpcServer:
    """A started-on-demand grpc.aio server hosting `bindings` with Tilesmith's common machinery.

    Typical use (see `run_until_signal`)::

        server = GrpcServer(settings, [ServiceBinding(...)], metrics)
        await server.start()      # listening; health says NOT_SERVING
        ...load models...
        server.set_serving()      # health says SERVING
        await server.stop()       # NOT_SERVING, then a graceful stop
    """

    def __init__(
        self,
        settings: ServerSettings,
        bindings: Sequence[ServiceBinding],
        metrics: ServerMetrics,
        *,
        serve_metrics_http: bool = True,
    ) -> None:
        self.settings = settings
        self.bindings = list(bindings)
        self.metrics = metrics
        self._serve_metrics_http = serve_metrics_http
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._metrics_endpoint: MetricsEndpoint | None = None
        self.port = 0

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_endpoint.port if self._metrics_endpoint else None

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "[::]", "::") else self.settings.host
        return f"{host}:{self.port}"

    def _service_names(self) -> list[str]:
        return [binding.name for binding in self.bindings]

    async def start(self) -> None:
        """Bind the port, start serving (health NOT_SERVING) and start /metrics."""
        # 1. Interceptors, outermost first.
        interceptors: list[grpc.aio.ServerInterceptor] = [
            MetricsInterceptor(self.metrics),
            ErrorInterceptor(),
        ]
        if self.settings.auth_token is not None:
            interceptors.append(AuthInterceptor(self.settings.auth_token.get_secret_value()))
        options: list[tuple[str, int]] = channel_options(self.settings.max_message_bytes)
        if self.settings.max_connection_age_seconds is not None:
            options += [
                ("grpc.max_connection_age_ms", int(self.settings.max_connection_age_seconds * 1000)),
                (
                    "grpc.max_connection_age_grace_ms",
                    int(self.settings.max_connection_age_grace_seconds * 1000),
                ),
            ]
        server = grpc.aio.server(interceptors=interceptors, options=options, maximum_concurrent_rpcs=None)
        # 2. The services, health and reflection.
        for binding in self.bindings:
            binding.add_to_server(binding.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*self._service_names(), health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        # 3. Listen.
        self.port = server.add_insecure_port(f"{self.settings.host}:{self.settings.port}")
        if self.port == 0:
            raise OSError(f"could not bind {self.settings.host}:{self.settings.port}")
        await server.start()
        self._server = server
        if self._serve_metrics_http:
            assert self.settings.metrics_port is not None
            self._metrics_endpoint = serve_metrics(
                self.metrics.registry, self.settings.metrics_host, self.settings.metrics_port
            )
        log.info(
            "listening",
            extra={"port": self.port, "metrics_port": self.metrics_port, "services": self._service_names()},
        )

    async def _set_all(self, status: int) -> None:
        await self._health.set(health.OVERALL_HEALTH, status)
        for name in self._service_names():
            await self._health.set(name, status)

    async def set_serving(self) -> None:
        """Report SERVING for the server and every hosted service."""
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"services": self._service_names()})

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight calls finish for `grace` seconds, then stop."""
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("stopping", extra={"grace_seconds": grace})
        await self._server.stop(grace)
        self._server = None
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.stop()
            self._metrics_endpoint = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def run_until_signal(
    server: GrpcServer,
    load: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Start `server`, run `load` (models), report SERVING, and stop gracefully on SIGTERM or SIGINT;
    `on_stop` runs once the server has stopped (the gateway parks its jobs and closes its store)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        if load is not None:
            try:
                await load()
            except TilesmithError as exc:  # missing weights and the like: say what to do, exit non-zero
                log.error("start-up failed: %s", exc)
                raise SystemExit(1) from exc
        await server.set_serving()
        await stop.wait()
        log.info("signal received")
    finally:
        await server.stop()
        if on_stop is not None:
            await on_stop()
