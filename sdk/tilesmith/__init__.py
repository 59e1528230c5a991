"""Tilesmith's Python SDK: the gateway client (`Client`, `AsyncClient`, their job handles and `GridRender`), the
typed job options, the generated contract (`tilesmith.v1`), the image codec (`tilesmith.images`) and
the exception tree shared with the servers (`tilesmith.errors`).
"""

from importlib.metadata import PackageNotFoundError, version

from tilesmith import errors, images
from tilesmith.client import AsyncClient, AsyncJob, Client, GridRender, Job
from tilesmith.options import GenerateOptions, ReferenceOptions, Region, TransformOptions, UpscaleOptions

try:
    __version__ = version("tilesmith")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
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
