"""Shared by the deploy tests: every overlay rendered once (kustomize through the venv's kubectl)."""

from __future__ import annotations

import pytest

from deploy.render import overlay_names, render

OVERLAYS = overlay_names()


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}
