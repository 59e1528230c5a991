"""`python -m services.diffusion`: load the profile's models, report SERVING, serve until SIGTERM."""

from __future__ import annotations

import asyncio

from services.common.logging import configure_logging, route_library_logging
from services.common.memory import tune_malloc
from services.common.server import run_until_signal
from services.diffusion.app import build_server
from services.diffusion.settings import DiffusionSettings


def main() -> None:
    settings = DiffusionSettings()
    configure_logging(settings.log_level, settings.log_json, service="diffusion")
    route_library_logging("diffusers", "transformers", "huggingface_hub")
    if settings.tune_malloc:
        tune_malloc()
    server, load = build_server(settings)
    asyncio.run(run_until_signal(server, load))


if __name__ == "__main__":
    main()
