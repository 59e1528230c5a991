"""The whole of Tilesmith on one machine: `tilesmith serve` (embedded) and `tilesmith serve --split`.

Embedded: the gateway and the backends (tiling, diffusion; captioning when asked) are hosted by ONE
gRPC server in one process on one port; the gateway reaches its backends over loopback on that same
port, through the same stubs and pools it uses in a cluster, so the two set-ups run the same code.
Split: each service is its own `python -m ...` process on a loopback port, the gateway on the public
one; the stack restarts a process that dies and stops them all on SIGTERM / SIGINT.

Either way the stack reports SERVING only once every backend is SERVING (the gateway waits for them),
and the model profile is explicit: `tiny` builds and loads the tiny random-weight models, `production`
fails at start-up naming `make models` when its weights are missing. There is no switch from one to the
other. This module is a composition root: the only gateway module that imports the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

import services
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from services.common.errors import TilesmithError
from services.common.metrics import ServerMetrics
from services.common.server import GrpcServer

__all__ = ["EmbeddedStack", "SplitStack", "StackConfig", "serve"]

log = logging.getLogger(__name__)

_RESTARTS = 5  # a process that dies more often than this in a row is given up on
_UI_APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (the OS picks it); used for loopback services of the stack."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _default_models_dir(profile: str) -> Path:
    if profile == "tiny":
        from services.diffusion.tiny import default_cache_dir

        return default_cache_dir()
    return Path("models")


@dataclass(frozen=True)
class StackConfig:
    """What a local stack runs with."""

    profile: str = "tiny"
    host: str = "127.0.0.1"
    port: int = 0  # the gateway's (and, embedded, everyone's) port; 0 picks a free one
    state_dir: Path = Path(".cache/gateway")
    models_dir: Path | None = None  # default: the tiny cache for `tiny`, `models/` for `production`
    captioning: bool = False
    bridge_addr: str = ""  # a bridge the gateway uses (e.g. one started in-process by a test); empty: none
    gateway_options: dict[str, object] = field(default_factory=dict)  # embedded: more GatewaySettings fields
    torch_threads: int = 0
    metrics_port: int | None = None  # default: port + 1000
    batch_size: int = 1
    diffusion_replicas: int = 1  # split stack only: diffusion processes the gateway balances over
    grace_seconds: float = 10.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def models(self) -> Path:
        return (self.models_dir or _default_models_dir(self.profile)).resolve()


class _Merged(Collector):
    """A service's own metrics, served from the stack's registry (its gRPC metrics are the stack's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator:
        for metric in self._registry.collect():
            if not metric.name.startswith("grpc_server"):
                yield metric


class EmbeddedStack:
    """Gateway + backends in one process and one gRPC server."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.server: GrpcServer | None = None
        self.gateway: Gateway | None = None
        self._loads: list = []

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    async def start(self) -> None:
        from services.diffusion.app import build_server as build_diffusion
        from services.diffusion.settings import DiffusionSettings
        from services.tiling.app import build_server as build_tiling
        from services.tiling.settings import TilingSettings

        c = self.config
        port = c.port or free_port(c.host if c.host not in ("0.0.0.0", "::", "[::]") else "127.0.0.1")
        common = {"host": c.host, "port": port, "tune_malloc": False, "grace_seconds": c.grace_seconds}
        registry = CollectorRegistry()
        # 1. The backends' servicers, built by their own assemblers; their metrics join the stack's.
        tiling_registry = CollectorRegistry()
        tiling = build_tiling(TilingSettings(**common), tiling_registry, serve_metrics_http=False)
        diffusion_registry = CollectorRegistry()
        diffusion, load_diffusion = build_diffusion(
            DiffusionSettings(
                **common, profile=c.profile, models_dir=c.models, device="auto", torch_threads=c.torch_threads
            ),
            diffusion_registry,
            serve_metrics_http=False,
        )
        bindings = [*tiling.bindings, *diffusion.bindings]
        loads = [load_diffusion]
        for sub in (tiling_registry, diffusion_registry):
            registry.register(_Merged(sub))
        captioning_addr = ""
        if c.captioning:
            from services.captioning.app import build_server as build_captioning
            from services.captioning.settings import CaptioningSettings

            captioning_registry = CollectorRegistry()
            captioning, load_captioning = build_captioning(
                CaptioningSettings(
                    **common, profile=c.profile, models_dir=c.models, torch_threads=c.torch_threads
                ),
                captioning_registry,
                serve_metrics_http=False,
            )
            bindings += captioning.bindings
            loads.append(load_captioning)
            registry.register(_Merged(captioning_registry))
            captioning_addr = f"127.0.0.1:{port}"
        # 2. The gateway, reaching them over loopback on the shared port.
        loopback = f"127.0.0.1:{port}"
        settings = GatewaySettings(
            **common,
            metrics_port=c.metrics_port if c.metrics_port is not None else port + 1000,
            metrics_host=c.host,
            tiling_addr=loopback,
            diffusion_addr=loopback,
            captioning_addr=captioning_addr,
            bridge_addr=c.bridge_addr,
            state_dir=c.state_dir,
            batch_size=c.batch_size,
            **c.gateway_options,
        )
        self.gateway = Gateway(settings, registry, embedded=True)
        self.server = GrpcServer(
            settings,
            [self.gateway.binding, *bindings],
            ServerMetrics("tilesmith", services.__version__, registry),
        )
        # 3. Listen (NOT_SERVING), load the models, then the gateway checks its backends and resumes jobs.
        await self.server.start()
        try:
            for load in loads:
                await load()
            await self.gateway.start(wait_for_backends=False)  # loaded above, in this process
        except BaseException:
            await self.stop()
            raise
        await self.server.set_serving()

    async def stop(self) -> None:
        # Park the running jobs first: stopping the server would otherwise cancel their backend calls
        # (which share this server) and fail them. Parked jobs resume at the next start.
        if self.gateway is not None:
            await self.gateway.runner.stop()
        if self.server is not None:
            await self.server.stop(self.server.settings.grace_seconds)
            self.server = None
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None

    async def __aenter__(self) -> EmbeddedStack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@dataclass
class _Child:
    name: str
    module: str
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


class SplitStack:
    """Every service as its own process on loopback ports, supervised."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.children: dict[str, _Child] = {}
        self.ports: dict[str, int] = {}
        self.metrics_ports: dict[str, int] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    def _plan(self) -> None:
        c = self.config
        replicas = [f"diffusion-{i}" if i else "diffusion" for i in range(c.diffusion_replicas)]
        names = ["tiling", *replicas, *(["captioning"] if c.captioning else []), "gateway"]
        for name in names:
            self.ports[name] = c.port if name == "gateway" and c.port else free_port()
            self.metrics_ports[name] = c.metrics_port if name == "gateway" and c.metrics_port else free_port()
        base = {"PYTHONUNBUFFERED": "1", **c.extra_env}
        for name in names:
            part = name.partition("-")[0]  # diffusion-1 is a diffusion replica
            prefix = f"TILESMITH_{part.upper()}_"
            env = {
                **base,
                f"{prefix}HOST": c.host if name == "gateway" else "127.0.0.1",
                f"{prefix}PORT": str(self.ports[name]),
                f"{prefix}METRICS_PORT": str(self.metrics_ports[name]),
                f"{prefix}METRICS_HOST": "127.0.0.1",
            }
            if part in ("diffusion", "captioning"):
                env[f"{prefix}PROFILE"] = c.profile
                env[f"{prefix}MODELS_DIR"] = str(c.models)
                if c.torch_threads:
                    env[f"{prefix}TORCH_THREADS"] = str(c.torch_threads)
            if part == "gateway":
                env[f"{prefix}TILING_ADDR"] = f"127.0.0.1:{self.ports['tiling']}"
                env[f"{prefix}DIFFUSION_ADDR"] = ",".join(f"127.0.0.1:{self.ports[r]}" for r in replicas)
                env[f"{prefix}STATE_DIR"] = str(Path(c.state_dir).resolve())
                env[f"{prefix}BATCH_SIZE"] = str(c.batch_size)
                if c.captioning:
                    env[f"{prefix}CAPTIONING_ADDR"] = f"127.0.0.1:{self.ports['captioning']}"
                if c.bridge_addr:
                    env[f"{prefix}BRIDGE_ADDR"] = c.bridge_addr
            module = "gateway" if part == "gateway" else f"services.{part}"
            self.children[name] = _Child(name, module, env)

    async def _spawn(self, child: _Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", child.module, env={**os.environ, **child.env}
        )
        log.info(
            "started", extra={"service": child.name, "pid": child.process.pid, "port": self.ports[child.name]}
        )

    async def _supervise(self, child: _Child) -> None:
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping:
                return
            child.restarts += 1
            log.error("a service exited; restarting it", extra={"service": child.name, "exit_code": code})
            if child.restarts > _RESTARTS:
                log.error("giving up on a service that keeps exiting", extra={"service": child.name})
                return
            await asyncio.sleep(min(10.0, 0.5 * 2**child.restarts))
            await self._spawn(child)

    async def start(self, ready_within: float = 600.0) -> None:
        self._plan()
        for child in self.children.values():
            await self._spawn(child)
        self._supervisors = [asyncio.create_task(self._supervise(child)) for child in self.children.values()]
        await self.wait_ready(ready_within)

    async def wait_ready(self, within: float = 600.0) -> None:
        """Until the gateway says SERVING (it does once every backend does)."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        loop = asyncio.get_running_loop()
        end = loop.time() + within
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while loop.time() < end:
                gateway = self.children["gateway"].process
                if (
                    gateway is not None
                    and gateway.returncode is not None
                    and self.children["gateway"].restarts >= _RESTARTS
                ):
                    break
                with contextlib.suppress(grpc.aio.AioRpcError):
                    answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.5)
        raise TimeoutError(f"the split stack did not become SERVING within {within:.0f} s")

    def kill(self, name: str) -> None:
        """SIGKILL one service (tests: the supervisor restarts it)."""
        process = self.children[name].process
        if process is not None and process.returncode is None:
            process.kill()

    async def stop(self) -> None:
        self._stopping = True
        # The gateway first (it parks its jobs), then the backends.
        order = ["gateway", *[name for name in self.children if name != "gateway"]]
        for name in order:
            process = self.children[name].process
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30.0)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)

    async def __aenter__(self) -> SplitStack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _start_ui(address: str, port: int) -> asyncio.subprocess.Process:
    """The Streamlit operator UI (`ui/app.py`) as a child process talking to the stack at `address`."""
    app = _UI_APP
    env = {**os.environ, "TILESMITH_ADDRESS": address}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        env=env,
    )


async def _serve(config: StackConfig, split: bool, ui_port: int | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stack: EmbeddedStack | SplitStack = SplitStack(config) if split else EmbeddedStack(config)
    try:
        await stack.start()
    except TilesmithError as exc:  # missing weights, a backend that never came up: say what to do
        log.error("start-up failed: %s", exc)
        if split:
            await stack.stop()
        return 1
    log.info("tilesmith serving", extra={"address": stack.address, "profile": config.profile, "split": split})
    ui = await _start_ui(stack.address, ui_port) if ui_port is not None else None
    where = f"; the UI on http://localhost:{ui_port}" if ui_port is not None else ""
    print(
        f"Tilesmith is serving on {stack.address} (profile {config.profile}){where}; Ctrl-C stops it.",
        file=sys.stderr,
    )
    try:
        await stop.wait()
    finally:
        if ui is not None and ui.returncode is None:
            ui.terminate()
            await ui.wait()
        await stack.stop()
    return 0


def serve(
    *,
    profile: str | None = None,
    split: bool = False,
    host: str | None = None,
    port: int | None = None,
    state_dir: Path | str | None = None,
    ui_port: int | None = None,
) -> int:
    """`tilesmith serve`: run the stack until SIGTERM / SIGINT; the exit code.

    Unset options come from the environment like the services': TILESMITH_DIFFUSION_PROFILE (default
    production), TILESMITH_GATEWAY_HOST / _PORT / _STATE_DIR.
    """
    from services.common.logging import configure_logging, route_library_logging
    from services.diffusion.settings import DiffusionSettings

    gateway = GatewaySettings()
    configure_logging(gateway.log_level, gateway.log_json, service="stack")
    route_library_logging("diffusers", "transformers", "huggingface_hub")
    chosen = profile or DiffusionSettings().profile
    if chosen not in ("tiny", "production"):
        print(f"profile must be tiny or production, got {chosen!r}", file=sys.stderr)
        return 2
    config = StackConfig(
        profile=chosen,
        host=host or gateway.host,
        port=gateway.port if port is None else port,
        state_dir=Path(state_dir) if state_dir is not None else gateway.state_dir,
    )
    return asyncio.run(_serve(config, split, ui_port))


def main() -> None:
    """`python -m gateway.stack [--split] [--ui PORT]` (what `make up` runs: the stack and the UI)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gateway.stack", description="Run the Tilesmith stack.")
    parser.add_argument("--split", action="store_true", help="one process per service")
    parser.add_argument("--ui", type=int, default=None, metavar="PORT", help="also serve the operator UI")
    args = parser.parse_args()
    raise SystemExit(serve(split=args.split, ui_port=args.ui))


if __name__ == "__main__":
    main()
