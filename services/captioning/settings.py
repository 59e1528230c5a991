"""Settings of the captioning service (env prefix `TILESMITH_CAPTIONING_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import DEFAULT_PORTS, ServerSettings

__all__ = ["CAPTIONER_FOLDERS", "CAPTIONER_NAMES", "CaptioningSettings"]

# The captioner's folder inside the models folder, per profile. Kept equal to
# services/diffusion/profiles.py (TINY.captioner, PRODUCTION.captioner): `make models` and the tiny
# builder (`python -m services.diffusion.tiny DIR`) write these folders, and services never import
# each other, so the names are repeated here.
CAPTIONER_FOLDERS = {"tiny": "tiny-qwen3-vl", "production": "qwen3-vl-8b-instruct"}
# The name CaptionResponse.model reports, per profile.
CAPTIONER_NAMES = {"tiny": "tiny-qwen3-vl", "production": "Qwen/Qwen3-VL-8B-Instruct"}


class CaptioningSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="TILESMITH_CAPTIONING_", extra="ignore", frozen=True)

    port: int = Field(
        DEFAULT_PORTS["captioning"], ge=0, le=65535, description="gRPC port; 0 picks a free port."
    )
    profile: Literal["tiny", "production"] = Field(
        "production",
        description="Model profile: `tiny` (random weights, offline tests and demo) or `production`.",
    )
    models_dir: Path = Field(
        Path("models"), description="Folder holding every profile's weights (shared with diffusion)."
    )
    model_dir: Path | None = Field(
        None,
        description="The captioner's folder itself; default: models_dir / the profile's captioner folder.",
    )
    device: str = Field(
        "auto", description="`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ..."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="`auto`: bfloat16 on CUDA, float32 on CPU."
    )
    torch_threads: int = Field(
        0, ge=0, description="CPU threads torch uses (0: torch's default). 1 is fastest on small shared CPUs."
    )
    max_batch: int = Field(
        16, ge=1, le=64, description="Images generated together in one GPU batch (a request holds 1..64)."
    )
    max_queue: int = Field(16, ge=0, description="Calls waiting for the GPU before RESOURCE_EXHAUSTED.")
    cache_size: int = Field(4096, ge=0, description="Captions kept in the LRU caption cache (0: no cache).")
    max_pixels: int = Field(
        4096 * 4096, ge=16 * 16, description="Largest tile or overview accepted, in pixels."
    )
