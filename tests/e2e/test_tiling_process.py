"""`python -m services.tiling` as its own process: JSON logs, health, reflection, metrics, SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


class _LogReader:
    """Reads the process's stderr on a thread (a pipe read never blocks the test past its timeout)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(process.stderr,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._lines.put(line)

    def until(self, message: str, timeout: float = 60) -> list[dict]:
        """JSON log lines up to the first whose message is `message`; every line must be JSON."""
        lines: list[dict] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                lines.append(json.loads(self._lines.get(timeout=left)))
            except queue.Empty:
                break
            if lines[-1]["message"] == message:
                return lines
        raise AssertionError(f"no {message!r} log line within {timeout} s; got {lines}")


@pytest.fixture(scope="module")
def tiling_process():
    env = {
        **os.environ,
        "TILESMITH_TILING_HOST": "127.0.0.1",
        "TILESMITH_TILING_PORT": "0",
        "TILESMITH_TILING_METRICS_HOST": "127.0.0.1",
        "TILESMITH_TILING_GRACE_SECONDS": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.tiling"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        logs = _LogReader(process)
        lines = logs.until("serving")
        listening = next(line for line in lines if line["message"] == "listening")
        yield process, logs, listening
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_process_serves_health_reflection_and_metrics(tiling_process) -> None:
    _, _, listening = tiling_process
    assert listening["service"] == "tiling"
    address = f"127.0.0.1:{listening['port']}"
    with grpc.insecure_channel(address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tilesmith.v1.Tiling"), timeout=10
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for s in next(replies).list_services_response.service}
        assert "tilesmith.v1.Tiling" in names
    with urllib.request.urlopen(
        f"http://127.0.0.1:{listening['metrics_port']}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health"'
        in text
    )
    assert "tiling_build_info" in text


def test_sigterm_stops_gracefully(tiling_process) -> None:
    process, logs, _ = tiling_process
    process.send_signal(signal.SIGTERM)
    lines = logs.until("stopping", timeout=30)
    assert lines[-1]["grace_seconds"] == 2
    assert process.wait(timeout=30) == 0
