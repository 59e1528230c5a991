from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.settings import ServerSettings
from services.tiling.settings import TilingSettings


def test_defaults_follow_the_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TILESMITH_TILING_PORT", raising=False)
    settings = TilingSettings()
    assert settings.port == 50052
    assert settings.metrics_port == 51052
    assert settings.auth_token is None


def test_env_prefix_per_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILESMITH_TILING_PORT", "6000")
    monkeypatch.setenv("TILESMITH_TILING_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("TILESMITH_DIFFUSION_PORT", "7000")  # another part's variable is ignored
    settings = TilingSettings()
    assert settings.port == 6000
    assert settings.metrics_port == 7000
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_port_zero_means_metrics_port_zero() -> None:
    assert ServerSettings(port=0).metrics_port == 0
    assert ServerSettings(port=9000, metrics_port=9100).metrics_port == 9100


def test_bad_values_are_refused_with_the_field_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILESMITH_TILING_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        TilingSettings()
