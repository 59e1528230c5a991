"""`python -m services.bridge` as its own process against fake providers on a real local HTTP server."""

from __future__ import annotations

import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.unit.bridge.conftest import FAL_KEY
from tests.unit.bridge.fake_server import FakeProviders
from tilesmith import images
from tilesmith.v1 import bridge_pb2, bridge_pb2_grpc, common_pb2

from .processes import ServiceProcess


@pytest.fixture(scope="module")
def bridge_process(tmp_path_factory):
    with FakeProviders() as fake:
        env = {
            "TILESMITH_BRIDGE_HOST": "127.0.0.1",
            "TILESMITH_BRIDGE_PORT": "0",
            "TILESMITH_BRIDGE_METRICS_HOST": "127.0.0.1",
            "TILESMITH_BRIDGE_GRACE_SECONDS": "2",
            "TILESMITH_BRIDGE_POLL_INTERVAL_SECONDS": "0",
            "TILESMITH_BRIDGE_RETRY_BACKOFF_SECONDS": "0",
            "TILESMITH_BRIDGE_REFERENCE_DIR": str(tmp_path_factory.mktemp("refs")),
            "FAL_KEY": FAL_KEY,
            "ZAI_API_KEY": "",
            "REPLICATE_API_TOKEN": "",
            "OPENROUTER_API_KEY": "",
            **{f"TILESMITH_BRIDGE_{name.upper()}": url for name, url in fake.urls().items()},
        }
        service = ServiceProcess("services.bridge", env)
        try:
            lines = service.until("serving")
            listening = next(line for line in lines if line["message"] == "listening")
            yield service, listening, fake
        finally:
            service.kill()


def test_process_generates_through_fal_and_lists_providers(bridge_process) -> None:
    _, listening, fake = bridge_process
    fake.failures["fal"] = 1  # one 503, retried
    with grpc.insecure_channel(f"127.0.0.1:{listening['port']}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tilesmith.v1.Bridge"), timeout=10
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = bridge_pb2_grpc.BridgeStub(channel)
        providers = stub.ListProviders(bridge_pb2.ListProvidersRequest(), timeout=10)
        available = {p.name: p.available for p in providers.providers}
        assert available == {"fal": True, "zai": False, "openrouter": False, "replicate": False}
        messages = list(
            stub.Generate(
                iter([bridge_pb2.GenerateRequest(params=bridge_pb2.GenerateParams(prompt="a tree"))]),
                timeout=20,
            )
        )
    image = images.assemble([m.image for m in messages if m.WhichOneof("part") == "image"])
    assert image.encoding == common_pb2.IMAGE_ENCODING_PNG
    assert images.to_array(image).shape[:2] == (12, 16)
    assert messages[-1].result.provider == "fal"
    assert messages[-1].result.attempts[0].retries == 1


def test_sigterm_stops_gracefully_and_logs_no_key(bridge_process) -> None:
    service, _, _ = bridge_process
    service.process.send_signal(signal.SIGTERM)
    lines = service.until("stopping", timeout=30)
    assert service.process.wait(timeout=30) == 0
    assert all(FAL_KEY not in str(line) for line in lines)
    assert any(line["message"] == "provider attempt" and line["provider"] == "fal" for line in lines)
