"""Settings of the bridge service (env prefix `TILESMITH_BRIDGE_`; provider keys by their own names)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import DEFAULT_PORTS, ServerSettings

__all__ = ["PROVIDER_NAMES", "BridgeSettings"]

PROVIDER_NAMES = ("fal", "zai", "openrouter", "replicate")
CAPABILITY_NAMES = ("analyze_image", "text_to_image", "depth_to_image", "image_edit", "image_to_image")


def _key(env: str) -> SecretStr | None:
    return Field(
        None,
        validation_alias=AliasChoices(env, env.lower()),
        description=f"API key, read from `{env}` (no prefix); never logged or returned.",
    )


class BridgeSettings(ServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="TILESMITH_BRIDGE_", extra="ignore", frozen=True, populate_by_name=True
    )

    port: int = Field(DEFAULT_PORTS["bridge"], ge=0, le=65535, description="gRPC port; 0 picks a free port.")

    # Keys: the provider's own variable names, as their documentation uses them.
    fal_key: SecretStr | None = _key("FAL_KEY")
    zai_api_key: SecretStr | None = _key("ZAI_API_KEY")
    replicate_api_token: SecretStr | None = _key("REPLICATE_API_TOKEN")
    openrouter_api_key: SecretStr | None = _key("OPENROUTER_API_KEY")

    # Base URLs (tests point them at local fake servers).
    fal_base_url: str = Field("https://queue.fal.run", description="fal.ai queue API.")
    zai_base_url: str = Field("https://api.z.ai/api/paas/v4", description="z.ai OpenAI-compatible API.")
    openrouter_base_url: str = Field("https://openrouter.ai/api/v1", description="OpenRouter API.")
    replicate_base_url: str = Field("https://api.replicate.com", description="Replicate API.")

    # Models.
    zai_vision_model: str = Field("glm-4.5v", description="z.ai vision model for AnalyzeImage.")
    openrouter_vision_model: str = Field(
        "z-ai/glm-4.5v", description="OpenRouter vision model for AnalyzeImage."
    )
    openrouter_image_model: str = Field(
        "google/gemini-2.5-flash-image-preview",
        description="OpenRouter model with image output, for Img2Img.",
    )
    replicate_img2img_model: str = Field(
        "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
        description="Replicate model for Img2Img: `owner/name` (official model) or `owner/name:version`.",
    )

    # Chains: comma-separated provider names, tried in order.
    chain_analyze_image: str = Field("zai,openrouter", description="Default AnalyzeImage chain.")
    chain_text_to_image: str = Field("fal", description="Default Generate TEXT_TO_IMAGE chain.")
    chain_depth_to_image: str = Field("fal", description="Default Generate DEPTH chain.")
    chain_image_edit: str = Field("fal", description="Default Generate EDIT chain.")
    chain_image_to_image: str = Field("replicate,openrouter", description="Default Img2Img chain.")

    # Calls.
    fal_timeout_seconds: float = Field(300.0, gt=0, description="Longest fal.ai attempt, polling included.")
    zai_timeout_seconds: float = Field(120.0, gt=0, description="Longest z.ai attempt.")
    openrouter_timeout_seconds: float = Field(180.0, gt=0, description="Longest OpenRouter attempt.")
    replicate_timeout_seconds: float = Field(
        300.0, gt=0, description="Longest Replicate attempt, polling included."
    )
    max_retries: int = Field(
        3, ge=0, le=10, description="Retries per request on 429, 5xx, connection errors."
    )
    retry_backoff_seconds: float = Field(1.0, ge=0, description="First wait between retries; doubles.")
    retry_max_wait_seconds: float = Field(30.0, ge=0, description="Longest wait, Retry-After included.")
    poll_interval_seconds: float = Field(1.0, ge=0, description="Wait between status polls.")
    breaker_failure_threshold: int = Field(
        5, ge=1, description="Failed attempts in a row that open a provider's circuit."
    )
    breaker_cooldown_seconds: float = Field(
        60.0, ge=0, description="How long an open circuit skips its provider before a trial call."
    )

    # Images.
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest image or reference upload.")
    max_pixels: int = Field(4096 * 4096, ge=64 * 64, description="Largest image (width x height) accepted.")
    max_download_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest result file downloaded from a provider."
    )
    reference_dir: Path = Field(
        Path(tempfile.gettempdir()) / "tilesmith-bridge",
        description="Where reference images are kept while providers use them.",
    )
    reference_max_age_seconds: float = Field(
        24 * 3600.0, gt=0, description="Reference files older than this are deleted."
    )
    cleanup_interval_seconds: float = Field(3600.0, gt=0, description="How often old references are deleted.")

    @field_validator(
        "chain_analyze_image",
        "chain_text_to_image",
        "chain_depth_to_image",
        "chain_image_edit",
        "chain_image_to_image",
    )
    @classmethod
    def _known_providers(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(
                f"unknown provider(s) {unknown}; known: {', '.join(PROVIDER_NAMES)} "
                "(\"internal\" is the gateway's, not the bridge's)"
            )
        return ",".join(names)

    def default_chain(self, capability: str) -> tuple[str, ...]:
        """The configured chain for `capability` (one of CAPABILITY_NAMES)."""
        value: str = getattr(self, f"chain_{capability}")
        return tuple(name for name in value.split(",") if name)
