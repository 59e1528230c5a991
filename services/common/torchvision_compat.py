"""Make `import torchvision` work beside a CPU-only torch whose matching torchvision does not exist.

The registry's only torchvision is built against CUDA torch. Beside the CPU torch its compiled ops
fail to load, and its meta registrations then fail at import (`operator torchvision::nms does not
exist`). Two things Tilesmith needs import it without using those ops: spandrel (its architecture
registry) and transformers' vision processors (Qwen-VL, CLIP). When — and only when — the compiled
ops cannot be loaded, `ensure_torchvision_importable` declares the two op schemas torchvision's
import registers fake kernels for (`nms`, `qnms`), with no implementation: the pure-Python parts work
and the C++ ops still raise if called. Where a matching torchvision is installed (the CUDA image) it
does nothing. It must run before torchvision is first imported: `services.diffusion` and
`services.captioning` call it at the top of their packages.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import torch

__all__ = ["ensure_torchvision_importable"]

log = logging.getLogger(__name__)

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None


def _compiled_ops_load(origin: str) -> bool:
    for candidate in Path(origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(candidate))
        except (OSError, RuntimeError):
            return False
    try:
        torch.ops.torchvision.nms  # noqa: B018 - resolves only when the compiled ops registered
    except (AttributeError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Declare torchvision's missing op schemas if its compiled ops cannot load; True if it did."""
    global _library
    if _library is not None or "torchvision" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _compiled_ops_load(spec.origin):
        return False
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    log.info("torchvision's compiled ops are unavailable (CPU torch); declared their schemas so it imports")
    return True
