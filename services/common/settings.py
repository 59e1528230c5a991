"""Typed settings shared by every server.

Each part subclasses `ServerSettings` with its own env prefix (`TILESMITH_<PART>_`) and default port;
entry points build the object in `main()` — nothing reads the environment at import time.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_PORTS", "METRICS_PORT_OFFSET", "ServerSettings"]

# Default gRPC ports (ARCHITECTURE.md); metrics listen on the gRPC port + METRICS_PORT_OFFSET.
DEFAULT_PORTS = {
    "gateway": 50051,
    "tiling": 50052,
    "diffusion": 50053,
    "captioning": 50054,
    "bridge": 50055,
}
METRICS_PORT_OFFSET = 1000


class ServerSettings(BaseSettings):
    """What every gRPC server needs. Subclasses set `env_prefix` and the default `port`."""

    model_config = SettingsConfigDict(env_prefix="TILESMITH_", extra="ignore", frozen=True)

    host: str = Field("0.0.0.0", description="Address the gRPC server binds.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_host: str = Field("0.0.0.0", description="Address the /metrics HTTP server binds.")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="HTTP port of /metrics; default: the gRPC port + 1000 (0 when the gRPC port is 0).",
    )
    max_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest gRPC message sent or received; larger payloads move as chunk streams.",
    )
    grace_seconds: float = Field(
        10.0, ge=0, description="On SIGTERM, how long in-flight calls may finish before they are cancelled."
    )
    max_connection_age_seconds: float | None = Field(
        None,
        gt=0,
        description=(
            "Close client connections after this long (GOAWAY; calls in flight finish within the grace "
            "below), so clients balancing over `dns:///` re-resolve and reach new replicas. Unset: never."
        ),
    )
    max_connection_age_grace_seconds: float = Field(
        900.0, ge=0, description="How long calls in flight may finish on a connection being closed for age."
    )
    auth_token: SecretStr | None = Field(
        None, description="When set, every call but health checks needs `authorization: Bearer <token>`."
    )
    log_level: str = Field("INFO", description="Root log level.")
    log_json: bool = Field(True, description="JSON log lines (false: plain text for a terminal).")
    tune_malloc: bool = Field(
        True,
        description="Keep freed memory for reuse instead of returning it (see services/common/memory.py).",
    )

    @model_validator(mode="after")
    def _default_metrics_port(self) -> ServerSettings:
        if self.metrics_port is None:
            port = self.port + METRICS_PORT_OFFSET if self.port else 0
            object.__setattr__(self, "metrics_port", port)
        return self
