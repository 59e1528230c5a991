"""The SDK's public surface is pinned: a change to it is a decision, not an accident."""

from __future__ import annotations

import tilesmith
from tilesmith import errors


def test_package_all_is_pinned() -> None:
    assert sorted(tilesmith.__all__) == [
        "AsyncClient",
        "AsyncJob",
        "Client",
        "GenerateOptions",
        "GridRender",
        "Job",
        "ReferenceOptions",
        "Region",
        "TransformOptions",
        "UpscaleOptions",
        "__version__",
        "errors",
        "images",
    ]


def test_every_error_is_a_tilesmith_error() -> None:
    assert all(issubclass(getattr(errors, name), errors.TilesmithError) for name in errors.__all__)
    assert issubclass(errors.ImageError, errors.InvalidArgument)
    assert issubclass(errors.ImageTooLarge, errors.ResourceExhausted)


def test_sdk_does_not_import_server_code() -> None:
    import subprocess
    import sys

    code = "import sys, tilesmith, tilesmith.images, tilesmith.errors; print(any(m.startswith(('services', 'gateway')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
