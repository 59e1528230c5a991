"""A real Prometheus scraping the split stack on loopback, promtool on every /metrics, the dashboard.

Every service runs as its own process (gateway.stack.SplitStack with captioning, plus the bridge),
one small upscale job runs through the gateway and one Caption call reaches captioning, so the
labelled series exist, and Prometheus (Debian's package) scrapes them every second. Then: every target is up, the key
series are in Prometheus, `promtool check metrics` finds nothing to lint in any endpoint's text, and
every query of deploy/grafana/tilesmith.json is accepted by Prometheus and names series that exist
(or DCGM exporter's, which only a GPU node has).

Without Prometheus the module skips, except under CI (the CI environment sets CI), where it fails:
`make setup` installs it (scripts/install-system-packages.sh).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
import yaml

from gateway.stack import SplitStack, StackConfig, free_port
from tests.deploy.test_dashboard import dashboard_queries, metric_names
from tilesmith import AsyncClient, UpscaleOptions
from tilesmith.images import to_proto
from tilesmith.v1 import captioning_pb2, captioning_pb2_grpc
from tilesmith.v1 import gateway_pb2 as pb

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "tiling", "diffusion", "captioning", "bridge")
# Series a deployment is watched by (the dashboard, the autoscalers, deploy/README.md's metric table).
KEY_SERIES = {
    "gateway": [
        "gateway_build_info",
        'gateway_jobs_total{kind="upscale",outcome="succeeded"}',
        "gateway_job_duration_seconds_bucket",
        "gateway_queue_jobs",
        "gateway_running_jobs",
        "gateway_tiles_redrawn_total",
        "grpc_server_handled_total",
    ],
    "tiling": [
        "tiling_build_info",
        "tiling_tiles_processed_total",
        "tiling_queue_requests",
        "grpc_server_handling_seconds_bucket",
    ],
    "diffusion": [
        "diffusion_build_info",
        "diffusion_queue_requests",
        "diffusion_running_requests",
        "diffusion_inference_duration_seconds_bucket",
        "diffusion_denoise_step_duration_seconds_bucket",
        "diffusion_images_generated_total",
    ],
    "captioning": ["captioning_build_info", "captioning_queue_requests", "captioning_captions_total"],
    "bridge": ["bridge_build_info", "bridge_running_requests"],
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
}


def _tools() -> tuple[str, str]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        message = "Prometheus is not installed (make setup installs Debian's prometheus package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return prometheus, promtool


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _api(base: str, path: str, **params: str) -> dict:
    answer = json.loads(_get(f"{base}{path}?{urllib.parse.urlencode(params)}"))
    assert answer["status"] == "success", answer
    return answer["data"]


class Prometheus:
    """A Prometheus process scraping static targets every second; stopped by `stop`."""

    def __init__(self, binary: str, targets: dict[str, int], workdir: Path) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for name, port in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited; see its log in the test's tmp dir"
            try:
                _get(f"{self.url}/-/ready", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("prometheus not ready")

    def query(self, expr: str) -> list[dict]:
        return _api(self.url, "/api/v1/query", query=expr)["result"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _until(check, within: float, what: str):
    """Poll `check()` (blocking; returns a truthy value when done) until it is done or `within` passes."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {within:.0f} s; last answer: {last}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scraped(tmp_path_factory):
    """(stack, prometheus, bridge metrics port) once a job has run and Prometheus has scraped it."""
    prometheus_binary, _ = _tools()
    workdir = tmp_path_factory.mktemp("prometheus")
    config = StackConfig(
        profile="tiny",
        state_dir=workdir / "state",
        torch_threads=1,
        captioning=True,
        grace_seconds=0.0,
        metrics_port=0,
        extra_env={
            f"TILESMITH_{part}_GRACE_SECONDS": "0"
            for part in ("GATEWAY", "TILING", "DIFFUSION", "CAPTIONING")
        },
    )
    # The bridge is not part of the split stack: its own process, no provider keys.
    bridge_port, bridge_metrics = free_port(), free_port()
    bridge = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "services.bridge"],
        cwd=ROOT,
        env={
            **os.environ,
            "TILESMITH_BRIDGE_HOST": "127.0.0.1",
            "TILESMITH_BRIDGE_PORT": str(bridge_port),
            "TILESMITH_BRIDGE_METRICS_HOST": "127.0.0.1",
            "TILESMITH_BRIDGE_METRICS_PORT": str(bridge_metrics),
            "TILESMITH_BRIDGE_REFERENCE_DIR": str(workdir / "references"),
            "TILESMITH_BRIDGE_GRACE_SECONDS": "0",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack = SplitStack(config)
    try:
        await stack.start(ready_within=150)  # a stack that never comes up fails here, not at the timeout
        targets = {
            **{name: stack.metrics_ports[name] for name in SERVICES if name != "bridge"},
            "bridge": bridge_metrics,
        }
        prometheus = await asyncio.to_thread(Prometheus, prometheus_binary, targets, workdir)
        try:
            await asyncio.to_thread(prometheus.wait_ready)
            # One small upscale and one caption: every service's labelled series get samples.
            image = np.random.default_rng(7).integers(0, 256, (48, 48, 3), dtype=np.uint8)
            async with AsyncClient(stack.address) as client:
                job = await client.upscale(
                    image, UpscaleOptions(target=2.0, tile_size=64, overlap=16, steps=4, strength=0.5, seed=5)
                )
                final = await job.wait()
            assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
            async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['captioning']}") as channel:
                request = captioning_pb2.CaptionRequest(
                    items=[captioning_pb2.CaptionItem(image=to_proto(image))], max_new_tokens=4
                )
                await captioning_pb2_grpc.CaptioningStub(channel).Caption(request, timeout=60)
            yield stack, prometheus, targets
        finally:
            prometheus.stop()
    finally:
        await stack.stop()
        bridge.terminate()
        await asyncio.to_thread(bridge.wait, 30)


async def test_prometheus_scrapes_every_service_and_every_target_is_up(scraped):
    _, prometheus, targets = scraped

    def all_up():
        active = _api(prometheus.url, "/api/v1/targets")["activeTargets"]
        healthy = {t["labels"]["job"] for t in active if t["health"] == "up"}
        return healthy == set(targets) and active

    active = await asyncio.to_thread(_until, all_up, 30, "every target up")
    assert {t["labels"]["job"] for t in active} == set(SERVICES)
    assert all(t["lastError"] == "" for t in active)


async def test_the_key_series_are_in_prometheus(scraped):
    _, prometheus, _ = scraped

    def missing():
        gone = [
            f"{job}: {series}"
            for job, names in KEY_SERIES.items()
            for series in names
            if not prometheus.query(_with_job(series, job))
        ]
        return gone or None

    def none_missing():
        return missing() is None

    try:
        await asyncio.to_thread(_until, none_missing, 30, "every key series scraped")
    except AssertionError:
        pytest.fail(f"series missing from Prometheus: {await asyncio.to_thread(missing)}")
    # The job really went through every service.
    assert float(prometheus.query('sum(gateway_jobs_total{outcome="succeeded"})')[0]["value"][1]) >= 1
    assert float(prometheus.query("sum(gateway_tiles_redrawn_total)")[0]["value"][1]) >= 1
    assert float(prometheus.query("sum(diffusion_denoise_step_duration_seconds_count)")[0]["value"][1]) >= 1
    assert float(prometheus.query("sum(captioning_captions_total)")[0]["value"][1]) >= 1


def _with_job(series: str, job: str) -> str:
    if "{" in series:
        return series.replace("{", f'{{job="{job}",', 1)
    return f'{series}{{job="{job}"}}'


@pytest.mark.parametrize("service", SERVICES)
async def test_promtool_finds_nothing_to_lint_in_the_metrics(scraped, service):
    _, promtool = _tools()
    _, _, targets = scraped
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{targets[service]}/metrics")
    result = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"promtool on {service}'s /metrics:\n{result.stdout}{result.stderr}"


async def test_every_dashboard_query_is_valid_promql_over_series_that_exist(scraped):
    _, prometheus, _ = scraped
    names = set(_api(prometheus.url, "/api/v1/label/__name__/values"))
    for panel, expr in dashboard_queries():
        concrete = expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")
        await asyncio.to_thread(prometheus.query, concrete)  # raises unless Prometheus parses it
        for metric in metric_names(expr):
            assert metric in names or metric.startswith("DCGM_FI_"), f"panel {panel!r}: no series {metric}"
