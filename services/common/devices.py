"""Which torch device a model service runs on (the `device` setting of diffusion and captioning)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str) -> torch.device:
    """`auto`: the first CUDA device when there is one, else the CPU; a bare `cuda` means `cuda:0`."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    return torch.device("cuda:0") if resolved.type == "cuda" and resolved.index is None else resolved
