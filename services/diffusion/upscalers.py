"""The super-resolution models in the models folder, loaded on first use and kept."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from services.common.errors import NotFound
from services.diffusion.upscaler import WEIGHT_SUFFIXES, Upscaler, load_upscaler

__all__ = ["UpscalerFile", "UpscalerLibrary"]


@dataclass(frozen=True)
class UpscalerFile:
    name: str
    path: Path
    size_bytes: int


class UpscalerLibrary:
    """Upscalers are the weight files in one folder, named by their stem ("RealESRGAN_x4plus")."""

    def __init__(self, folder: Path, default: str) -> None:
        self.folder = folder
        self.default = Path(default).stem
        self._device: torch.device | str = "cpu"
        self._dtype = torch.float32
        self._loaded: dict[str, Upscaler] = {}
        self._lock = threading.Lock()

    def files(self) -> list[UpscalerFile]:
        if not self.folder.is_dir():
            return []
        return sorted(
            (
                UpscalerFile(p.stem, p, p.stat().st_size)
                for p in self.folder.iterdir()
                if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES
            ),
            key=lambda f: f.name,
        )

    def configure(self, device: torch.device | str, dtype: torch.dtype) -> None:
        """Where models loaded from now on run (the engine's device and dtype)."""
        self._device, self._dtype = device, dtype

    def loaded(self, name: str) -> Upscaler | None:
        return self._loaded.get(name)

    def get(self, name: str = "", field: str = "params.model") -> Upscaler:
        """The upscaler called `name` (default: the profile's), loading it on first use."""
        name = name or self.default
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            match = next((f for f in self.files() if f.name == name), None)
            if match is None:
                known = ", ".join(f.name for f in self.files()) or "none"
                raise NotFound(f"{field}: no upscaler named {name!r} (available: {known})")
            upscaler = load_upscaler(match.path, device=self._device, dtype=self._dtype)
            self._loaded[name] = upscaler
            return upscaler
