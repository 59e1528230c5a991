"""`python -m services.tiling`: run the tiling service until SIGTERM."""

from __future__ import annotations

import asyncio

from services.common.logging import configure_logging
from services.common.memory import tune_malloc
from services.common.server import run_until_signal
from services.tiling.app import build_server
from services.tiling.settings import TilingSettings


def main() -> None:
    settings = TilingSettings()
    configure_logging(settings.log_level, settings.log_json, service="tiling")
    if settings.tune_malloc:
        tune_malloc()
    asyncio.run(run_until_signal(build_server(settings)))


if __name__ == "__main__":
    main()
