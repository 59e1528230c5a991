"""Tilesmith's Python SDK: the generated contract (`tilesmith.v1`), the image codec
(`tilesmith.images`) and the exception tree shared with the servers (`tilesmith.errors`).

The gateway client and the `tilesmith` command line join this package with the gateway.
"""

from importlib.metadata import PackageNotFoundError, version

from tilesmith import errors, images

try:
    __version__ = version("tilesmith")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "errors", "images"]
