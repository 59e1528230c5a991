"""`python -m services.captioning` with the tiny profile as its own process: loads, serves, stops."""

from __future__ import annotations

import signal

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.diffusion.tiny import build_tiny_models, default_cache_dir
from tilesmith import images
from tilesmith.v1 import captioning_pb2, captioning_pb2_grpc

from .processes import ServiceProcess


def _env(**values: str) -> dict[str, str]:
    base = {
        "HOST": "127.0.0.1",
        "PORT": "0",
        "METRICS_HOST": "127.0.0.1",
        "DEVICE": "cpu",
        "TORCH_THREADS": "1",
    }
    return {f"TILESMITH_CAPTIONING_{name}": value for name, value in {**base, **values}.items()}


@pytest.fixture(scope="module")
def captioning_process():
    models = build_tiny_models(default_cache_dir())
    service = ServiceProcess(
        "services.captioning", _env(PROFILE="tiny", MODELS_DIR=str(models), GRACE_SECONDS="2")
    )
    try:
        lines = service.until("serving", timeout=120)
        messages = [line["message"] for line in lines]
        assert messages.index("models loaded") > messages.index("listening")
        yield service, next(line for line in lines if line["message"] == "listening")
    finally:
        service.kill()


def test_serves_health_and_a_caption(captioning_process) -> None:
    _, listening = captioning_process
    with grpc.insecure_channel(f"127.0.0.1:{listening['port']}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        tile = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        request = captioning_pb2.CaptionRequest(
            items=[captioning_pb2.CaptionItem(image=images.to_proto(tile))], max_new_tokens=8
        )
        reply = captioning_pb2_grpc.CaptioningStub(channel).Caption(request, timeout=60)
    assert len(reply.captions) == 1
    assert reply.captions[0].text
    assert reply.model == "tiny-qwen3-vl"


def test_sigterm_stops_gracefully(captioning_process) -> None:
    service, _ = captioning_process
    service.process.send_signal(signal.SIGTERM)
    service.until("stopping", timeout=30)
    assert service.process.wait(timeout=60) == 0


def test_a_missing_tiny_captioner_names_the_builder(tmp_path) -> None:
    service = ServiceProcess(
        "services.captioning", _env(PROFILE="tiny", MODELS_DIR=str(tmp_path), METRICS_PORT="0")
    )
    try:
        lines = service.until("stopping", timeout=60)
        failure = next(line for line in lines if line["message"].startswith("start-up failed"))
        assert "python -m services.diffusion.tiny" in failure["message"]
        assert service.process.wait(timeout=60) == 1
    finally:
        service.kill()
