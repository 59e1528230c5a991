"""`python -m deploy` against a fake API server on 127.0.0.1 (tests/deploy/fake_apiserver.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from kubernetes import client

from deploy.cli import main
from deploy.cluster import Cluster, parse_gauges
from deploy.render import DeployError, render
from tests.deploy.fake_apiserver import CORE, PROMETHEUS_OPERATOR, FakeApiServer

NAMESPACE = "tilesmith"


def _secret(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    server.put(_secret("tilesmith-secrets", **{"gateway-token": "t0ken"}))
    yield server
    server.stop()


def _cluster(fake: FakeApiServer) -> Cluster:
    return Cluster(client.ApiClient(client.Configuration(host=fake.url)))


def _run(fake: FakeApiServer, *argv: str) -> int:
    with _cluster(fake) as cluster:
        return main(list(argv), cluster=cluster)


def test_apply_creates_every_object_in_dependency_order_with_server_side_apply(fake, capsys):
    assert _run(fake, "apply", "--overlay", "gpu") == 0

    expected = render("gpu")
    patches = fake.patches()
    assert len(patches) == len(expected)
    for request in patches:
        assert request.content_type == "application/apply-patch+yaml"
        assert request.query["fieldManager"] == ["tilesmith"]
        assert request.query["force"] == ["True"] or request.query["force"] == ["true"]
        assert "dryRun" not in request.query
    kinds = [request.body["kind"] for request in patches]
    assert kinds[0] == "Namespace"
    assert max(i for i, k in enumerate(kinds) if k == "NetworkPolicy") < kinds.index("Deployment")
    assert max(i for i, k in enumerate(kinds) if k == "ConfigMap") < kinds.index("Deployment")
    assert kinds.index("ScaledObject") > max(i for i, k in enumerate(kinds) if k == "Deployment")
    # What was stored is what was rendered.
    stored = {d["metadata"]["name"]: d for d in fake.stored("Deployment")}
    rendered = {d["metadata"]["name"]: d for d in expected if d["kind"] == "Deployment"}
    assert set(stored) == set(rendered) == {"gateway", "tiling", "diffusion", "captioning", "bridge", "ui"}
    assert stored["diffusion"]["spec"]["template"] == rendered["diffusion"]["spec"]["template"]
    assert "deployment/diffusion created" in capsys.readouterr().err


def test_a_second_apply_changes_nothing(fake, capsys):
    assert _run(fake, "apply", "--overlay", "dev") == 0
    capsys.readouterr()
    assert _run(fake, "apply", "--overlay", "dev") == 0
    err = capsys.readouterr().err
    assert "created" not in err
    assert "configured" not in err
    assert err.count("unchanged") == len(render("dev"))


def test_apply_wait_follows_the_rollouts_to_the_end(fake, capsys):
    fake.rollout_polls["diffusion"] = 3  # the GPU pod "loads its models" for a few polls
    code = _run(fake, "apply", "--overlay", "gpu", "--wait", "--poll-interval", "0.01", "--timeout", "30")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Every Deployment rolled out" in err
    polls = [r for r in fake.requests if r.method == "GET" and r.path.endswith("/deployments/diffusion")]
    assert len(polls) >= 4


def test_apply_wait_reports_a_rollout_that_does_not_finish_and_why(fake, capsys):
    fake.rollout_polls["diffusion"] = None
    fake.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "diffusion-7d9f-abcde",
                "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/name": "diffusion", "app.kubernetes.io/part-of": "tilesmith"},
            },
            "spec": {"containers": [{"name": "diffusion"}]},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "diffusion",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}},
                    }
                ],
            },
        }
    )
    code = _run(fake, "apply", "--overlay", "gpu", "--wait", "--poll-interval", "0.01", "--timeout", "0.3")
    err = capsys.readouterr().err
    assert code == 1
    assert "0 of 1 updated replicas available" in err
    assert "diffusion-7d9f-abcde: diffusion: ImagePullBackOff pull access denied" in err
    assert "did not roll out" in err


def test_apply_refuses_before_changing_anything_when_a_crd_is_missing(fake, capsys):
    fake.resources = [*CORE, *PROMETHEUS_OPERATOR]  # no KEDA
    assert _run(fake, "apply", "--overlay", "gpu") == 2
    err = capsys.readouterr().err
    assert "keda.sh/v1alpha1/ScaledObject" in err
    assert "KEDA" in err
    assert fake.patches() == []
    # The dev overlay needs no CRD.
    assert _run(fake, "apply", "--overlay", "dev") == 0


def test_apply_refuses_without_the_gateway_token_secret(fake, capsys):
    fake.objects.clear()
    assert _run(fake, "apply", "--overlay", "dev") == 2
    err = capsys.readouterr().err
    assert "tilesmith/tilesmith-secrets: gateway-token" in err
    assert "create secret generic" in err
    assert fake.patches() == []
    # Optional keys (provider keys, backend token) are not required.
    fake.put(_secret("tilesmith-secrets", **{"gateway-token": "t0ken"}))
    assert _run(fake, "apply", "--overlay", "dev") == 0


def test_diff_shows_new_objects_then_nothing_then_only_what_changed(fake, capsys):
    assert _run(fake, "diff", "--overlay", "dev") == 1
    out = capsys.readouterr().out
    assert "+++ rendered/tilesmith/Deployment/gateway" in out
    assert all(r.query.get("dryRun") == ["All"] for r in fake.patches())
    assert fake.stored("Deployment") == []  # a dry run stores nothing

    assert _run(fake, "apply", "--overlay", "dev") == 0
    capsys.readouterr()
    assert _run(fake, "diff", "--overlay", "dev") == 0  # server-set fields and defaults are not differences
    assert capsys.readouterr().out == ""

    assert _run(fake, "diff", "--overlay", "dev", "--tag", "0.2.0") == 1
    out = capsys.readouterr().out
    changed = [line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed
    assert all("image: ghcr.io/tilesmith/tilesmith-" in line for line in changed), changed
    assert sum(line.startswith("+") for line in changed) == 7  # six containers and one init container


def _pod(name: str, service: str, *, gpus: int = 0, ready: bool = True, port: int | None = None) -> dict:
    container: dict = {
        "name": service,
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)} if gpus else {}},
    }
    if port is not None:
        container["ports"] = [
            {"name": "grpc", "containerPort": port - 1000},
            {"name": "metrics", "containerPort": port},
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "tilesmith"},
        },
        "spec": {"containers": [container], "nodeName": "gpu-node-1" if gpus else "cpu-node-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "containerStatuses": [{"name": service, "ready": ready, "restartCount": 2 if not ready else 0}],
        },
    }


def test_status_shows_pods_gpus_and_queue_depth_from_metrics(fake, capsys):
    fake.put(_pod("diffusion-a", "diffusion", gpus=1, port=51053))
    fake.put(_pod("diffusion-b", "diffusion", gpus=1, port=51053, ready=False))
    fake.put(_pod("gateway-a", "gateway", port=51051))
    fake.put(_pod("ui-a", "ui"))
    fake.metrics[("diffusion-a", 51053)] = (
        "# HELP diffusion_queue_requests Calls waiting for the GPU.\n"
        "# TYPE diffusion_queue_requests gauge\n"
        "diffusion_queue_requests 3.0\n"
        "diffusion_running_requests 1.0\n"
    )
    fake.metrics[("gateway-a", 51051)] = (
        'gateway_queue_jobs 5.0\ngateway_running_jobs 2.0\ngrpc_server_handled_total{grpc_code="OK"} 9.0\n'
    )

    with _cluster(fake) as cluster:
        rows = {row.name: row for row in cluster.status(NAMESPACE)}
    assert rows["diffusion-a"].gpus == 1
    assert rows["diffusion-a"].waiting == 3
    assert rows["diffusion-a"].running == 1
    assert rows["diffusion-a"].ready == "1/1"
    assert rows["diffusion-a"].node == "gpu-node-1"
    assert rows["diffusion-b"].ready == "0/1"
    assert rows["diffusion-b"].restarts == 2
    assert rows["diffusion-b"].waiting is None
    assert "503" in rows["diffusion-b"].note
    assert rows["gateway-a"].waiting == 5
    assert rows["gateway-a"].running == 2
    assert rows["gateway-a"].gpus == 0
    assert rows["ui-a"].waiting is None
    assert rows["ui-a"].note == ""
    proxied = [r.path for r in fake.requests if "/proxy/" in r.path]
    assert "/api/v1/namespaces/tilesmith/pods/diffusion-a:51053/proxy/metrics" in proxied

    assert _run(fake, "status") == 0
    out = capsys.readouterr().out
    assert "diffusion-a" in out
    assert "gpu-node-1" in out


def test_parse_gauges_sums_label_sets_and_skips_comments():
    text = (
        "# HELP x_total things\n# TYPE x_total counter\n"
        'x_total{a="1"} 2.0\nx_total{a="}"} 3.5\ny 1e3\nz{a="1"} 4 1700000000000\n'
    )
    assert parse_gauges(text) == {"x_total": 5.5, "y": 1000.0, "z": 4.0}


def test_render_overrides_namespace_registry_and_tag():
    objects = render("gpu", namespace="art-team", registry="registry.example.com/ml", tag="1.4.2")
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} == {"art-team"}
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"art-team"}
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {
        "registry.example.com/ml/tilesmith-cpu:1.4.2",
        "registry.example.com/ml/tilesmith-gpu:1.4.2",
    }
    (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
    assert 'namespace="art-team"' in scaled["spec"]["triggers"][0]["metadata"]["query"]


def test_render_names_the_overlays_it_knows():
    with pytest.raises(DeployError, match="overlay must be one of dev, gpu, gpu-hpa"):
        render("staging")


def test_render_command_prints_the_manifests(capsys):
    assert main(["render", "--overlay", "gpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("apiVersion: v1\nkind: Namespace")
    assert "kind: ScaledObject" in out
    assert "nvidia.com/gpu: 1" in out
