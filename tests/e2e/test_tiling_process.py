"""`python -m services.tiling` as its own process: JSON logs, health, reflection, metrics, SIGTERM."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from .processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiling_process():
    env = {
        "TILESMITH_TILING_HOST": "127.0.0.1",
        "TILESMITH_TILING_PORT": "0",
        "TILESMITH_TILING_METRICS_HOST": "127.0.0.1",
        "TILESMITH_TILING_GRACE_SECONDS": "2",
    }
    service = ServiceProcess("services.tiling", env)
    try:
        lines = service.until("serving")
        listening = next(line for line in lines if line["message"] == "listening")
        yield service.process, service, listening
    finally:
        service.kill()


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
