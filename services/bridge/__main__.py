"""`python -m services.bridge`: run the bridge service until SIGTERM."""

from __future__ import annotations

import asyncio

from services.bridge.app import build_server
from services.bridge.settings import BridgeSettings
from services.common.logging import configure_logging
from services.common.server import run_until_signal


async def _serve(settings: BridgeSettings) -> None:
    server, servicer = build_server(settings)
    try:
        # The bridge loads no models; "loading" is the first clean of the reference folder.
        await run_until_signal(server, servicer.start)
    finally:
        await servicer.close()


def main() -> None:
    settings = BridgeSettings()
    configure_logging(settings.log_level, settings.log_json, service="bridge")
    asyncio.run(_serve(settings))


if __name__ == "__main__":
    main()
