"""Settings of the diffusion service (env prefix `TILESMITH_DIFFUSION_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import DEFAULT_PORTS, ServerSettings

__all__ = ["DiffusionSettings"]


class DiffusionSettings(ServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="TILESMITH_DIFFUSION_", extra="ignore", frozen=True, populate_by_name=True
    )

    port: int = Field(
        DEFAULT_PORTS["diffusion"], ge=0, le=65535, description="gRPC port; 0 picks a free port."
    )
    profile: Literal["tiny", "production"] = Field(
        "production",
        description="Model profile: `tiny` (random weights, offline tests and demo) or `production`.",
    )
    models_dir: Path = Field(
        Path("models"), description="Folder holding every profile's weights and the LoRAs."
    )
    build_tiny: bool = Field(
        True,
        description="With the tiny profile, build the tiny models into models_dir when they are missing.",
    )
    device: str = Field(
        "auto", description="`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ..."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="`auto`: float16 on CUDA (with the fp16-fix VAE), float32 on CPU."
    )
    attention_slicing: bool = Field(False, description="Slice attention to save memory (slower).")
    vae_tiling: bool = Field(
        False, description="Decode latents in tiles to save memory on large generations."
    )
    cpu_offload: bool = Field(False, description="Keep idle sub-models on the CPU (model CPU offload).")
    torch_compile: bool = Field(False, description="torch.compile the UNet (slow first call, faster after).")
    channels_last: bool = Field(False, description="channels_last memory format for the UNet and VAE.")
    torch_threads: int = Field(
        0, ge=0, description="CPU threads torch uses (0: torch's default). 1 is fastest on small shared CPUs."
    )
    max_batch_size: int = Field(4, ge=1, le=64, description="Most tiles one Img2Img call may carry.")
    max_queue: int = Field(16, ge=0, description="Calls waiting for the GPU before RESOURCE_EXHAUSTED.")
    max_upload_bytes: int = Field(2 * 1024**3, ge=1024, description="Largest LoRA upload or install.")
    max_pixels: int = Field(
        16384 * 16384, ge=64 * 64, description="Largest input or output image, in pixels."
    )
    lora_max_count: int = Field(5, ge=0, description="Stacking rule: most LoRAs in one stack.")
    lora_max_style: int = Field(1, ge=0, description="Stacking rule: most style LoRAs.")
    lora_max_detail: int = Field(2, ge=0, description="Stacking rule: most detail LoRAs.")
    lora_max_character: int = Field(2, ge=0, description="Stacking rule: most character LoRAs.")
    lora_max_weight_sum: float = Field(3.5, ge=0, description="Stacking rule: largest sum of |weight|.")
    # The providers' conventional variables are accepted too (the prefixed name wins when both are set).
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TILESMITH_DIFFUSION_HF_TOKEN", "HF_TOKEN"),
        description="Token for Hugging Face LoRA installs and `make models` (or HF_TOKEN).",
    )
    civitai_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TILESMITH_DIFFUSION_CIVITAI_TOKEN", "CIVITAI_TOKEN"),
        description="Token for CivitAI LoRA installs (or CIVITAI_TOKEN).",
    )
