"""Tilesmith's servers: `services.common` (the shared server core) and one package per service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tilesmith")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
