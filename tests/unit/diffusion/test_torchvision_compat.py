"""The torchvision shim, each case in a fresh interpreter (it acts once per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _compiled_ops_work() -> bool:
    code = "import torchvision, torch; torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5); print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return result.returncode == 0


def test_spandrel_and_transformers_import_after_the_package_import() -> None:
    out = _run(
        "import services.diffusion\n"
        "import torchvision, spandrel\n"
        "from transformers import CLIPTextModel, CLIPVisionModelWithProjection\n"
        "print('imported')\n"
    )
    assert "imported" in out


@pytest.mark.skipif(_compiled_ops_work(), reason="a matching torchvision is installed: the shim does nothing")
def test_on_cpu_torch_the_compiled_ops_still_raise() -> None:
    out = _run(
        "from services.common.torchvision_compat import ensure_torchvision_importable\n"
        "print('declared', ensure_torchvision_importable())\n"
        "print('again', ensure_torchvision_importable())\n"
        "import torch, torchvision\n"
        "try:\n"
        "    torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)\n"
        "except RuntimeError:\n"
        "    print('nms raises')\n"
    )
    assert "declared True" in out
    assert "again False" in out
    assert "nms raises" in out
