"""`tilesmith serve` as a user runs it: the profile is explicit, production without its weights fails at
start-up naming `make models`, and the tiny stack serves until SIGTERM, then exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.stack import free_port
from services.diffusion.tiny import default_cache_dir

TILESMITH = Path(sys.executable).with_name("tilesmith")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TILESMITH_")}
    env["TILESMITH_TINY_CACHE"] = str(default_cache_dir())
    env["TILESMITH_DIFFUSION_TORCH_THREADS"] = "1"
    env.update(extra)
    return env


def test_production_without_weights_fails_naming_make_models(tmp_path):
    completed = subprocess.run(
        [
            TILESMITH,
            "serve",
            "--profile",
            "production",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=tmp_path,  # no models/ folder here
        env=_env(tmp_path, TILESMITH_GATEWAY_METRICS_PORT="0"),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert "make models" in completed.stderr


def test_the_tiny_stack_serves_until_sigterm(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [
            TILESMITH,
            "serve",
            "--profile",
            "tiny",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=tmp_path,
        env=_env(tmp_path, TILESMITH_GATEWAY_METRICS_PORT="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        status = None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                except grpc.RpcError:
                    status = None
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                time.sleep(0.5)
        assert status == health_pb2.HealthCheckResponse.SERVING, process.stderr.read()[-2000:]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
