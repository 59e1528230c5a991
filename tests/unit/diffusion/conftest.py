"""The tiny profile's models, built once per checkout and shared by every test process (see tiny.py).

Importing `services.diffusion` here, before any test module, installs its torchvision shim before
transformers, diffusers or spandrel import torchvision.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.diffusion.tiny import build_tiny_models, default_cache_dir


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """The shared tiny models folder (`default_cache_dir()`): read it, never write into it."""
    return build_tiny_models(default_cache_dir())
