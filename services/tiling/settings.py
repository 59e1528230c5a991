"""Settings of the tiling service (env prefix `TILESMITH_TILING_`)."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import DEFAULT_PORTS, ServerSettings

__all__ = ["TilingSettings"]


class TilingSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="TILESMITH_TILING_", extra="ignore", frozen=True)

    port: int = Field(DEFAULT_PORTS["tiling"], ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    max_pixels: int = Field(
        16384 * 16384,
        ge=64 * 64,
        description="Largest image (width x height) any call accepts; larger ones are refused before decoding.",
    )
    workers: int = Field(
        max(1, os.cpu_count() or 1),
        ge=1,
        description="Image operations run at once (in threads); further calls wait in the queue.",
    )
    max_uploads: int = Field(
        16, ge=1, description="Request streams received at once (each may buffer up to max_pixels * 4 bytes)."
    )
    upload_idle_seconds: float = Field(
        60.0,
        gt=0,
        description="A request stream that sends nothing for this long is ended (DEADLINE_EXCEEDED).",
    )
    max_queue: int = Field(
        64, ge=0, description="Calls allowed to wait for a worker; beyond that RESOURCE_EXHAUSTED."
    )
