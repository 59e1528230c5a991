"""Assembles the tiling server: settings -> servicer, metrics and the common server core."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

import services
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding
from services.tiling.metrics import TilingMetrics
from services.tiling.servicer import TilingServicer
from services.tiling.settings import TilingSettings
from tilesmith.v1 import tiling_pb2, tiling_pb2_grpc

__all__ = ["SERVICE_NAME", "build_server"]

SERVICE_NAME = tiling_pb2.DESCRIPTOR.services_by_name["Tiling"].full_name


def build_server(
    settings: TilingSettings, registry: CollectorRegistry | None = None, *, serve_metrics_http: bool = True
) -> GrpcServer:
    """A tiling server, not yet started. Tiling loads no models: it is ready as soon as it listens."""
    registry = registry or CollectorRegistry()
    metrics = ServerMetrics("tiling", services.__version__, registry)
    servicer = TilingServicer(settings, TilingMetrics(registry))
    binding = ServiceBinding(SERVICE_NAME, tiling_pb2_grpc.add_TilingServicer_to_server, servicer)
    return GrpcServer(settings, [binding], metrics, serve_metrics_http=serve_metrics_http)
