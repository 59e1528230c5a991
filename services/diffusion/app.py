"""Assembles the diffusion server: settings -> engine, LoRA library, upscalers, servicer, server core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import torch
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

import services
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer, ServiceBinding
from services.diffusion.engine import DiffusionEngine, EngineConfig
from services.diffusion.loras import LoraLibrary, LoraType, StackingRules
from services.diffusion.metrics import DiffusionMetrics
from services.diffusion.profiles import PROFILES
from services.diffusion.servicer import DiffusionServicer
from services.diffusion.settings import DiffusionSettings
from services.diffusion.upscalers import UpscalerLibrary
from tilesmith.v1 import diffusion_pb2, diffusion_pb2_grpc

__all__ = ["SERVICE_NAME", "build_server"]

log = logging.getLogger(__name__)

SERVICE_NAME = diffusion_pb2.DESCRIPTOR.services_by_name["Diffusion"].full_name


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_server(
    settings: DiffusionSettings, registry: CollectorRegistry | None = None, *, serve_metrics_http: bool = True
) -> tuple[GrpcServer, Callable[[], Awaitable[None]]]:
    """A diffusion server (not started) and the coroutine that loads its models before SERVING."""
    registry = registry or CollectorRegistry()
    profile = PROFILES[settings.profile]
    models_dir = settings.models_dir.resolve()
    engine = DiffusionEngine(replace(EngineConfig.from_settings(settings), models_dir=models_dir))
    upscalers = UpscalerLibrary(models_dir / profile.upscalers, profile.upscaler)
    servicer = DiffusionServicer(settings, engine, upscalers, DiffusionMetrics(registry))
    binding = ServiceBinding(SERVICE_NAME, diffusion_pb2_grpc.add_DiffusionServicer_to_server, servicer)
    server = GrpcServer(
        settings,
        [binding],
        ServerMetrics("diffusion", services.__version__, registry),
        serve_metrics_http=serve_metrics_http,
    )

    def load_blocking() -> None:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        # 1. The tiny profile builds its own models when asked (offline tests, the demo).
        if profile.name == "tiny" and settings.build_tiny:
            from services.diffusion.tiny import build_tiny_models

            build_tiny_models(models_dir)
        # 2. The pipelines, then the upscaler on the same device and dtype.
        engine.load()
        upscalers.configure(engine.device, engine.dtype)
        upscalers.get()
        # 3. The LoRA library checks files against the loaded UNet's cross-attention width.
        library = LoraLibrary(
            models_dir / profile.loras,
            StackingRules(
                max_loras=settings.lora_max_count,
                max_per_type={
                    LoraType.STYLE: settings.lora_max_style,
                    LoraType.DETAIL: settings.lora_max_detail,
                    LoraType.CHARACTER: settings.lora_max_character,
                },
                max_weight_sum=settings.lora_max_weight_sum,
            ),
            settings.max_upload_bytes,
            sdxl_cross_attention_dim=engine.cross_attention_dim,
            hf_token=_secret(settings.hf_token),
            civitai_token=_secret(settings.civitai_token),
        )
        library.cleanup_partials()
        servicer.attach_library(library)

    async def load() -> None:
        await asyncio.to_thread(load_blocking)
        log.info("models loaded", extra={"profile": profile.name, "device": str(engine.device)})

    return server, load
