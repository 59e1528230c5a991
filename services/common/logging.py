"""Logging for servers: JSON lines carrying the request id of the call being served.

Libraries only call `logging.getLogger(__name__)`; an entry point calls `configure_logging` once.
The request id lives in a context variable set by the error interceptor, so every log line written
while serving a call carries it without being passed around.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "request_id_var", "route_library_logging"]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", json: bool = True, service: str = "") -> None:
    """Install one stderr handler on the root logger (replacing any), JSON or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service} if service else None,
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def route_library_logging(*libraries: str) -> None:
    """Send Hugging Face libraries' logs through the root logger and turn their progress bars off.

    diffusers, transformers and huggingface_hub install their own stderr handlers and tqdm bars, which
    would break a service's one-JSON-object-per-line log. Call from `main()` after `configure_logging`,
    with the libraries the service uses (e.g. "diffusers", "transformers", "huggingface_hub").
    """
    for name in libraries:
        module = importlib.import_module(
            f"{name}.utils.logging" if name != "huggingface_hub" else "huggingface_hub.utils"
        )
        for function in (
            "disable_default_handler",
            "enable_propagation",
            "disable_progress_bar",
            "disable_progress_bars",
        ):
            if hasattr(module, function):
                getattr(module, function)()
