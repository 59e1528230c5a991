"""`python -m services.diffusion` with the tiny profile as its own process: loads, serves, stops."""

from __future__ import annotations

import signal
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.diffusion.tiny import build_tiny_models, default_cache_dir
from tilesmith import images
from tilesmith.v1 import diffusion_pb2, diffusion_pb2_grpc

from .processes import ServiceProcess


@pytest.fixture(scope="module")
def diffusion_process():
    models = build_tiny_models(default_cache_dir())
    service = ServiceProcess(
        "services.diffusion",
        {
            "TILESMITH_DIFFUSION_HOST": "127.0.0.1",
            "TILESMITH_DIFFUSION_PORT": "0",
            "TILESMITH_DIFFUSION_METRICS_HOST": "127.0.0.1",
            "TILESMITH_DIFFUSION_PROFILE": "tiny",
            "TILESMITH_DIFFUSION_MODELS_DIR": str(models),
            "TILESMITH_DIFFUSION_DEVICE": "cpu",
            "TILESMITH_DIFFUSION_TORCH_THREADS": "1",
            "TILESMITH_DIFFUSION_GRACE_SECONDS": "2",
        },
    )
    try:
        lines = service.until("serving", timeout=240)
        listening = next(line for line in lines if line["message"] == "listening")
        # Health answered NOT_SERVING while the models loaded: "serving" comes after "models loaded".
        assert [line["message"] for line in lines].index("models loaded") > [
            line["message"] for line in lines
        ].index("listening")
        yield service, listening
    finally:
        service.kill()


def test_serves_img2img_health_and_metrics(diffusion_process) -> None:
    _, listening = diffusion_process
    with grpc.insecure_channel(f"127.0.0.1:{listening['port']}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        tile = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        request = diffusion_pb2.Img2ImgRequest(
            tiles=[diffusion_pb2.Img2ImgTile(index=5, image=images.to_proto(tile), prompt="a tree", seed=1)],
            sampling=diffusion_pb2.SamplingParams(steps=4),
        )
        replies = list(diffusion_pb2_grpc.DiffusionStub(channel).Img2Img(request, timeout=120))
    (result,) = [reply.tile for reply in replies if reply.WhichOneof("part") == "tile"]
    assert result.index == 5
    assert images.to_array(result.image).shape == (64, 64, 3)
    with urllib.request.urlopen(
        f"http://127.0.0.1:{listening['metrics_port']}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    assert 'diffusion_images_generated_total{operation="img2img"} 1.0' in text


def test_sigterm_stops_gracefully(diffusion_process) -> None:
    service, _ = diffusion_process
    service.process.send_signal(signal.SIGTERM)
    service.until("stopping", timeout=30)
    assert service.process.wait(timeout=60) == 0


def test_missing_weights_fail_at_start_up_naming_the_fetch_command(tmp_path) -> None:
    service = ServiceProcess(
        "services.diffusion",
        {
            "TILESMITH_DIFFUSION_HOST": "127.0.0.1",
            "TILESMITH_DIFFUSION_PORT": "0",
            "TILESMITH_DIFFUSION_METRICS_PORT": "0",
            "TILESMITH_DIFFUSION_PROFILE": "production",
            "TILESMITH_DIFFUSION_MODELS_DIR": str(tmp_path),
            "TILESMITH_DIFFUSION_DEVICE": "cpu",
        },
    )
    try:
        lines = service.until("stopping", timeout=120)
        failure = next(line for line in lines if line["message"].startswith("start-up failed"))
        assert "make models" in failure["message"]
        assert service.process.wait(timeout=60) == 1
    finally:
        service.kill()
