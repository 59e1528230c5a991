"""Settings of the gateway (env prefix `TILESMITH_GATEWAY_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import DEFAULT_PORTS, ServerSettings

__all__ = ["GatewaySettings"]


def _local(part: str) -> str:
    return f"127.0.0.1:{DEFAULT_PORTS[part]}"


class GatewaySettings(ServerSettings):
    model_config = SettingsConfigDict(
        env_prefix="TILESMITH_GATEWAY_", extra="ignore", frozen=True, populate_by_name=True
    )

    port: int = Field(DEFAULT_PORTS["gateway"], ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    auth_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "TILESMITH_GATEWAY_TOKEN", "TILESMITH_GATEWAY_AUTH_TOKEN", "auth_token"
        ),
        description="Bearer token clients must send (TILESMITH_GATEWAY_TOKEN; required in the cluster overlays).",
    )
    tiling_addr: str = Field(
        _local("tiling"),
        description="Tiling backend: `host:port`, `h1:p1,h2:p2`, or a gRPC target such as `dns:///tiling:50052`.",
    )
    diffusion_addr: str = Field(
        _local("diffusion"),
        description="Diffusion backend, as tiling_addr; `dns:///` with a headless Service balances per call.",
    )
    captioning_addr: str = Field(
        "", description="Captioning backend, as tiling_addr; empty: no captioning (auto-caption refused)."
    )
    bridge_addr: str = Field(
        "", description="Bridge backend, as tiling_addr; empty: only the internal provider."
    )
    backend_token: SecretStr | None = Field(
        None, description="Bearer token the gateway sends to the backends (their auth_token)."
    )
    state_dir: Path = Field(
        Path(".cache/gateway"), description="Folder of the job database (jobs.sqlite3) and the blob folder."
    )
    max_running_jobs: int = Field(2, ge=1, description="Jobs running at once; further jobs wait QUEUED.")
    batch_size: int = Field(
        1, ge=1, le=64, description="Default tiles per diffusion call (clamped to the replicas' max batch)."
    )
    diffusion_in_flight: int = Field(
        2,
        ge=1,
        description="Diffusion calls in flight per replica (2 keeps a GPU busy while the next batch travels).",
    )
    tiling_in_flight: int = Field(8, ge=1, description="Tiling calls in flight per replica.")
    backend_retries: int = Field(
        3,
        ge=0,
        description="Retries of a tile call on UNAVAILABLE / RESOURCE_EXHAUSTED, onto another replica.",
    )
    tile_deadline_seconds: float = Field(
        900.0,
        gt=0,
        description="Deadline of one diffusion call (a batch of tiles), waits and retries included.",
    )
    backend_deadline_seconds: float = Field(300.0, gt=0, description="Deadline of every other backend call.")
    retention_hours: float = Field(
        168.0, gt=0, description="Ended jobs and uploads older than this are deleted (results included)."
    )
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest image upload, in bytes.")
    max_pixels: int = Field(
        16384 * 16384,
        ge=64 * 64,
        description="Largest input and working image, in pixels (checked before decoding / at submit).",
    )
    heartbeat_seconds: float = Field(
        5.0, gt=0, description="WatchJob sends a heartbeat after this much quiet."
    )
    preview_size: int = Field(128, ge=16, le=512, description="Longer side of the tile previews in events.")
    caption_batch_size: int = Field(
        8, ge=1, le=64, description="Tiles per Caption call (auto-caption stage and CaptionTiles)."
    )
    caption_overview_side: int = Field(
        1024,
        ge=16,
        le=2048,
        description="Longer side of the whole-image overview sent with context-aware captions.",
    )
    transform_chain: str = Field(
        "internal,replicate,openrouter",
        description=(
            "Default TRANSFORM provider chain: `internal` (the diffusion service) and bridge provider names, "
            "tried in order; hosted names are left out while no bridge is configured."
        ),
    )
    reference_chain: str = Field(
        "",
        description="Default REFERENCE provider chain (bridge names); empty: the bridge's chain for the mode.",
    )
    transform_quality_phrases: str = Field(
        "masterpiece, best quality, highly detailed, sharp focus",
        description="Phrases TRANSFORM's MODIFY mode adds to the prompt when prompt enhancement is on.",
    )
