"""The tiny Qwen3-VL, built once per checkout by the tiny-model builder and shared read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Before the builder imports transformers: the captioning package installs the torchvision shim.
import services.captioning  # noqa: F401
from services.captioning.captioner import Captioner, CaptionerConfig
from services.diffusion.tiny import build_tiny_models, default_cache_dir


@pytest.fixture(scope="session")
def tiny_captioner_dir() -> Path:
    return build_tiny_models(default_cache_dir()) / "tiny-qwen3-vl"


def load_captioner(model_dir: Path, **options) -> Captioner:
    # One thread: torch's default threads are many times slower on small shared CPUs.
    torch.set_num_threads(1)
    captioner = Captioner(
        CaptionerConfig(model_dir=model_dir, model_name="tiny-qwen3-vl", missing_hint="build it", **options)
    )
    captioner.load()
    return captioner
