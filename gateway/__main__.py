"""`python -m gateway`: wait for the backends, resume parked jobs, report SERVING, serve until SIGTERM."""

from __future__ import annotations

import asyncio

from gateway.app import build_server
from gateway.settings import GatewaySettings
from services.common.logging import configure_logging
from services.common.memory import tune_malloc
from services.common.server import run_until_signal


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level, settings.log_json, service="gateway")
    if settings.tune_malloc:
        tune_malloc()
    asyncio.run(_serve(settings))


async def _serve(settings: GatewaySettings) -> None:
    # Built inside the running loop: grpc.aio channels (the backend pools) belong to the loop that made them.
    server, gateway = build_server(settings)
    await run_until_signal(server, gateway.start, gateway.stop)


if __name__ == "__main__":
    main()
