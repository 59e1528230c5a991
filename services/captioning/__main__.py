"""`python -m services.captioning`: load the captioning model, report SERVING, serve until SIGTERM."""

from __future__ import annotations

import asyncio

from services.captioning.app import build_server
from services.captioning.settings import CaptioningSettings
from services.common.logging import configure_logging, route_library_logging
from services.common.memory import tune_malloc
from services.common.server import run_until_signal


def main() -> None:
    settings = CaptioningSettings()
    configure_logging(settings.log_level, settings.log_json, service="captioning")
    route_library_logging("transformers", "huggingface_hub")
    if settings.tune_malloc:
        tune_malloc()
    server, load = build_server(settings)
    asyncio.run(run_until_signal(server, load))


if __name__ == "__main__":
    main()
