"""Assembles the bridge server: settings -> providers, chains, servicer, metrics and the common server core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry

import services
from services.bridge._http import Sleep
from services.bridge.chains import Bridge, build_providers
from services.bridge.metrics import BridgeMetrics
from services.bridge.servicer import BridgeServicer
from services.bridge.settings import BridgeSettings
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding
from tilesmith.v1 import bridge_pb2, bridge_pb2_grpc

__all__ = ["SERVICE_NAME", "build_server"]

SERVICE_NAME = bridge_pb2.DESCRIPTOR.services_by_name["Bridge"].full_name


def build_server(
    settings: BridgeSettings,
    registry: CollectorRegistry | None = None,
    *,
    serve_metrics_http: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.time,
) -> tuple[GrpcServer, BridgeServicer]:
    """A bridge server, not yet started, and its servicer (call `servicer.start()` once serving).

    `transport`, `sleep` and `clock` are for tests: an httpx transport for every provider, the wait
    between retries and polls, and the breakers' clock.
    """
    registry = registry or CollectorRegistry()
    metrics = ServerMetrics("bridge", services.__version__, registry)
    bridge_metrics = BridgeMetrics(registry)
    bridge = Bridge(settings, build_providers(settings, transport, clock), bridge_metrics, sleep)
    servicer = BridgeServicer(settings, bridge, bridge_metrics)
    binding = ServiceBinding(SERVICE_NAME, bridge_pb2_grpc.add_BridgeServicer_to_server, servicer)
    return GrpcServer(settings, [binding], metrics, serve_metrics_http=serve_metrics_http), servicer
