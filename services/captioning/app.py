"""Assembles the captioning server: settings -> captioner, servicer, server core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import torch
from prometheus_client import CollectorRegistry

import services
from services.captioning.captioner import Captioner, CaptionerConfig
from services.captioning.metrics import CaptioningMetrics
from services.captioning.servicer import CaptioningServicer
from services.captioning.settings import CAPTIONER_FOLDERS, CAPTIONER_NAMES, CaptioningSettings
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding
from tilesmith.v1 import captioning_pb2, captioning_pb2_grpc

__all__ = ["SERVICE_NAME", "build_server", "captioner_config"]

log = logging.getLogger(__name__)

SERVICE_NAME = captioning_pb2.DESCRIPTOR.services_by_name["Captioning"].full_name


def captioner_config(settings: CaptioningSettings) -> CaptionerConfig:
    """Where the profile's captioner lives, what it is called and what makes it when it is missing."""
    models_dir = settings.models_dir.resolve()
    if settings.model_dir is not None:
        model_dir = settings.model_dir.resolve()
        name = model_dir.name
        hint = "point TILESMITH_CAPTIONING_MODEL_DIR at a transformers Qwen3-VL folder"
    else:
        model_dir = models_dir / CAPTIONER_FOLDERS[settings.profile]
        name = CAPTIONER_NAMES[settings.profile]
        hint = (
            f"`python -m services.diffusion.tiny {models_dir}` builds the tiny models"
            if settings.profile == "tiny"
            else f"`make models` fetches the production weights into {models_dir}"
        )
    return CaptionerConfig(
        model_dir=model_dir,
        model_name=name,
        missing_hint=hint,
        device=settings.device,
        dtype=settings.dtype,
        max_batch=settings.max_batch,
        cache_size=settings.cache_size,
    )


def build_server(
    settings: CaptioningSettings,
    registry: CollectorRegistry | None = None,
    *,
    serve_metrics_http: bool = True,
) -> tuple[GrpcServer, Callable[[], Awaitable[None]]]:
    """A captioning server (not started) and the coroutine that loads its model before SERVING."""
    registry = registry or CollectorRegistry()
    captioner = Captioner(captioner_config(settings))
    servicer = CaptioningServicer(settings, captioner, CaptioningMetrics(registry))
    binding = ServiceBinding(SERVICE_NAME, captioning_pb2_grpc.add_CaptioningServicer_to_server, servicer)
    server = GrpcServer(
        settings,
        [binding],
        ServerMetrics("captioning", services.__version__, registry),
        serve_metrics_http=serve_metrics_http,
    )

    def load_blocking() -> None:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        captioner.load()

    async def load() -> None:
        await asyncio.to_thread(load_blocking)
        log.info("models loaded", extra={"model": captioner.model_name, "device": str(captioner.device)})

    return server, load
