"""The rendered overlays: schema validation for Kubernetes 1.30 and the deployment policies.

Every overlay (deploy/k8s/overlays/*) is rendered by kustomize (the venv's kubectl), every built-in
object is validated by kubernetes-validate --strict, custom resources (ServiceMonitor, ScaledObject)
by the vendored JSON Schemas in deploy/k8s/schemas, and the policies below hold for every overlay.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from deploy.render import K8S_DIR, containers, kubectl_path, render, to_yaml
from tests.deploy.conftest import OVERLAYS

K8S_VERSION = "1.30.0"
SCHEMAS = K8S_DIR / "schemas"
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject")}
BACKENDS = {"tiling", "diffusion", "captioning", "bridge"}
SERVICES = {"gateway", *BACKENDS, "ui"}
GPU_SERVICES = {"diffusion", "captioning"}
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
DEFAULT_GRACE_SECONDS = 10.0  # ServerSettings.grace_seconds


def _of(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def _deployments(objects: list[dict]) -> dict[str, dict]:
    return {obj["metadata"]["name"]: obj for obj in _of(objects, "Deployment")}


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels / matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression.get("values", []):
            return False
        if operator == "Exists" and expression["key"] not in labels:
            return False
        if operator == "DoesNotExist" and expression["key"] in labels:
            return False
    return True


def _pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


# ---- rendering and schemas ---------------------------------------------------------------------


def test_the_overlays_are_dev_gpu_and_gpu_hpa():
    assert set(OVERLAYS) == {"dev", "gpu", "gpu-hpa"}


def test_kubectl_is_the_venvs(rendered):
    assert kubectl_path() == Path(sys.executable).with_name("kubectl")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_builtin_object_validates_strictly_for_kubernetes_1_30(rendered, overlay):
    checked = 0
    for obj in rendered[overlay]:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises with the path of the error
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_kubernetes_validate_command_passes_the_rendered_file(rendered, overlay, tmp_path):
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(to_yaml(rendered[overlay]))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("kubernetes-validate")),
            "--strict",
            "-k",
            K8S_VERSION,
            "--quiet",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the custom resources lack a built-in schema.
    unknown = set(re.findall(r"schema for kind (\w+)", result.stdout + result.stderr))
    assert unknown <= {kind for _, kind in CUSTOM}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_the_vendored_crd_schemas(rendered, overlay):
    found = set()
    for obj in rendered[overlay]:
        if (obj["apiVersion"], obj["kind"]) not in CUSTOM:
            continue
        group = obj["apiVersion"].split("/")[0]
        version = obj["apiVersion"].split("/")[1]
        schema = json.loads((SCHEMAS / f"{obj['kind'].lower()}-{group}-{version}.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(obj)
        found.add(obj["kind"])
    expected = {"dev": set(), "gpu": {"ServiceMonitor", "ScaledObject"}, "gpu-hpa": {"ServiceMonitor"}}
    assert found == expected[overlay]


def test_the_crd_schemas_reject_unknown_and_misspelt_fields(rendered):
    (scaled,) = _of(rendered["gpu"], "ScaledObject")
    schema = json.loads((SCHEMAS / "scaledobject-keda.sh-v1alpha1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    typo = json.loads(json.dumps(scaled))
    typo["spec"]["maxReplicas"] = 3  # an HPA field, not a ScaledObject one
    assert not validator.is_valid(typo)
    typo = json.loads(json.dumps(scaled))
    typo["spec"]["triggers"][0]["metadata"]["treshold"] = typo["spec"]["triggers"][0]["metadata"].pop(
        "threshold"
    )
    assert not validator.is_valid(typo)
    monitor = _of(rendered["gpu"], "ServiceMonitor")[0]
    schema = json.loads((SCHEMAS / "servicemonitor-monitoring.coreos.com-v1.json").read_text())
    typo = json.loads(json.dumps(monitor))
    typo["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert not jsonschema.Draft202012Validator(schema).is_valid(typo)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_is_in_the_tilesmith_namespace(rendered, overlay):
    for obj in rendered[overlay]:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "tilesmith"
        else:
            assert obj["metadata"].get("namespace") == "tilesmith", f"{obj['kind']}/{obj['metadata']['name']}"


# ---- workloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_deployment_per_service_with_the_right_module(rendered, overlay):
    deployments = _deployments(rendered[overlay])
    assert set(deployments) == SERVICES
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        module = {"gateway": "gateway", "ui": "streamlit"}.get(name, f"services.{name}")
        assert container["args"][0] == module  # the images' ENTRYPOINT is `python -m`
        assert "command" not in container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_startup_readiness_and_liveness_probes_on_a_declared_numeric_port(
    rendered, overlay
):
    for deployment in _of(rendered[overlay], "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {port["containerPort"] for port in container["ports"]}
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_name)
                assert probe is not None, f"{container['name']} has no {probe_name}"
                (handler,) = [probe[k] for k in ("grpc", "httpGet", "tcpSocket") if k in probe]
                assert isinstance(handler["port"], int), (
                    f"{container['name']} {probe_name} port is not numeric"
                )
                assert handler["port"] in ports, f"{container['name']} {probe_name} probes an undeclared port"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_probed_with_grpc_health_and_metrics_ports_are_grpc_plus_1000(rendered, overlay):
    for name, deployment in _deployments(rendered[overlay]).items():
        if name == "ui":
            continue
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["metrics"] == ports["grpc"] + 1000
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe_name]["grpc"]["port"] == ports["grpc"]
        env = _config_env(rendered[overlay], container)
        prefix = f"TILESMITH_{name.upper()}_"
        assert env[f"{prefix}PORT"] == str(ports["grpc"])
        assert env[f"{prefix}METRICS_PORT"] == str(ports["metrics"])
        assert env[f"{prefix}LOG_JSON"] == "true"


def test_model_services_get_a_startup_probe_long_enough_for_the_model_load(rendered):
    for name in GPU_SERVICES:
        probe = _deployments(rendered["gpu"])[name]["spec"]["template"]["spec"]["containers"][0][
            "startupProbe"
        ]
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 600
    gateway = _deployments(rendered["gpu"])["gateway"]["spec"]["template"]["spec"]["containers"][0]
    # The gateway turns SERVING only once its backends do (it waits up to 600 s for them).
    assert gateway["startupProbe"]["periodSeconds"] * gateway["startupProbe"]["failureThreshold"] > 600


@pytest.mark.parametrize("overlay", ["gpu", "gpu-hpa"])
def test_gpu_pods_ask_for_a_gpu_and_go_to_gpu_nodes(rendered, overlay):
    for name, deployment in _deployments(rendered[overlay]).items():
        spec = deployment["spec"]["template"]["spec"]
        limits = spec["containers"][0]["resources"]["limits"]
        if name not in GPU_SERVICES:
            assert "nvidia.com/gpu" not in limits
            continue
        assert limits["nvidia.com/gpu"] == 1
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in spec["containers"][0]["volumeMounts"]
        env = _config_env(rendered[overlay], spec["containers"][0])
        assert env[f"TILESMITH_{name.upper()}_PROFILE"] == "production"
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .split("/")[-1]
            .startswith("tilesmith-gpu:")
        )


def test_dev_runs_the_tiny_models_on_cpu_one_replica_each(rendered):
    for name, deployment in _deployments(rendered["dev"]).items():
        spec = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 1
        assert "nodeSelector" not in spec
        assert "tolerations" not in spec
        for _, container in containers([deployment]):
            assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {})
            assert "tilesmith-gpu" not in container["image"]
        if name in GPU_SERVICES:
            env = _config_env(rendered["dev"], spec["containers"][0])
            assert env[f"TILESMITH_{name.upper()}_PROFILE"] == "tiny"
            assert env[f"TILESMITH_{name.upper()}_DEVICE"] == "cpu"
    assert all(
        claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        for claim in _of(rendered["dev"], "PersistentVolumeClaim")
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_unprivileged_on_a_read_only_root_with_limits(rendered, overlay):
    for deployment in _of(rendered[overlay], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for _, container in containers([deployment]):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"])
            assert {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_outlasts_the_servers_grace_and_the_pre_stop_sleep(rendered, overlay):
    for name, deployment in _deployments(rendered[overlay]).items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = _config_env(rendered[overlay], container)
        grace = float(env.get(f"TILESMITH_{name.upper()}_GRACE_SECONDS", DEFAULT_GRACE_SECONDS))
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        assert pod["terminationGracePeriodSeconds"] > grace + float(pre_stop[1]) + 5, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_tilesmith_images(rendered, overlay):
    for _, container in containers(rendered[overlay]):
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert tag != "latest", image
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), image
        assert name.split("/")[-1] in {"tilesmith-cpu", "tilesmith-cpu-models", "tilesmith-gpu"}


def test_the_gateway_reaches_every_backend_through_its_headless_service(rendered):
    objects = rendered["gpu"]
    env = _config_env(objects, _deployments(objects)["gateway"]["spec"]["template"]["spec"]["containers"][0])
    services = {svc["metadata"]["name"]: svc for svc in _of(objects, "Service")}
    for backend in BACKENDS:
        address = env[f"TILESMITH_GATEWAY_{backend.upper()}_ADDR"]
        match = re.fullmatch(r"dns:///([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)", address)
        assert match, address
        service = services[match[1]]
        assert service["spec"]["clusterIP"] == "None"
        assert int(match[2]) in {port["port"] for port in service["spec"]["ports"]}
    gateway = _deployments(objects)["gateway"]
    assert gateway["spec"]["replicas"] == 1
    assert gateway["spec"]["strategy"]["type"] == "Recreate"


# ---- services, disruption budgets, monitors, autoscalers ---------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backend_services_are_headless_and_the_gateway_and_ui_have_cluster_ips(rendered, overlay):
    deployments = _deployments(rendered[overlay])
    for service in _of(rendered[overlay], "Service"):
        name = service["metadata"]["name"]
        if name in BACKENDS:
            assert service["spec"]["clusterIP"] == "None", name
        else:
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
            assert "clusterIP" not in service["spec"]
        assert _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(deployments[name]))
        container_ports = {
            p["name"] for p in deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_pod_disruption_budget_selecting_exactly_its_pods(rendered, overlay):
    deployments = _deployments(rendered[overlay])
    covered = set()
    for budget in _of(rendered[overlay], "PodDisruptionBudget"):
        matched = [
            name for name, d in deployments.items() if _selects(budget["spec"]["selector"], _pod_labels(d))
        ]
        assert matched == [budget["metadata"]["name"]]
        covered.update(matched)
    assert covered == SERVICES


@pytest.mark.parametrize("overlay", ["gpu", "gpu-hpa"])
def test_service_monitors_scrape_the_metrics_port_of_every_grpc_service(rendered, overlay):
    services = {svc["metadata"]["name"]: svc for svc in _of(rendered[overlay], "Service")}
    deployments = _deployments(rendered[overlay])
    scraped = set()
    for monitor in _of(rendered[overlay], "ServiceMonitor"):
        selected = [
            name
            for name, svc in services.items()
            if _selects(monitor["spec"]["selector"], svc["metadata"].get("labels", {}))
        ]
        assert selected == [monitor["metadata"]["name"]]
        service = services[selected[0]]
        assert _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(deployments[selected[0]]))
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
            assert endpoint["path"] == "/metrics"
        scraped.add(selected[0])
    assert scraped == SERVICES - {"ui"}


def test_keda_scales_diffusion_on_its_queue_and_owns_the_replica_count(rendered):
    objects = rendered["gpu"]
    (scaled,) = _of(objects, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    diffusion = _deployments(objects)[target["name"]]
    assert target["name"] == "diffusion"
    assert target.get("kind", "Deployment") == "Deployment"
    assert "replicas" not in diffusion["spec"]  # KEDA's HPA sets it; an apply must not reset it
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "diffusion_queue_requests" in trigger["metadata"]["query"]
    assert 'namespace="tilesmith"' in trigger["metadata"]["query"]
    assert scaled["spec"]["minReplicaCount"] >= 1  # no cold start of a GPU pod for the first tile
    assert _of(objects, "HorizontalPodAutoscaler") == []


def test_the_hpa_alternative_scales_diffusion_on_the_same_metric(rendered):
    objects = rendered["gpu-hpa"]
    (hpa,) = _of(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "diffusion",
    }
    assert "replicas" not in _deployments(objects)["diffusion"]["spec"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "diffusion_queue_requests"
    assert _of(objects, "ScaledObject") == []


# ---- storage, secrets, network -----------------------------------------------------------------


def test_gpu_storage_shares_the_lora_library_and_keeps_the_gateway_state(rendered):
    claims = {c["metadata"]["name"]: c for c in _of(rendered["gpu"], "PersistentVolumeClaim")}
    assert claims["tilesmith-models"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claims["gateway-state"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    deployments = _deployments(rendered["gpu"])
    diffusion = deployments["diffusion"]["spec"]["template"]["spec"]
    volume = next(v for v in diffusion["volumes"] if v.get("persistentVolumeClaim"))
    assert volume["persistentVolumeClaim"]["claimName"] == "tilesmith-models"
    mount = next(m for m in diffusion["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    env = _config_env(rendered["gpu"], diffusion["containers"][0])
    assert mount["mountPath"] == env["TILESMITH_DIFFUSION_MODELS_DIR"] + "/loras"
    gateway = deployments["gateway"]["spec"]["template"]["spec"]
    state = next(m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "state")
    assert (
        state["mountPath"]
        == _config_env(rendered["gpu"], gateway["containers"][0])["TILESMITH_GATEWAY_STATE_DIR"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_literal_secrets_anywhere(rendered, overlay):
    assert _of(rendered[overlay], "Secret") == []
    for config in _of(rendered[overlay], "ConfigMap"):
        assert not [key for key in config["data"] if SECRET_WORDS.search(key)], config["metadata"]["name"]
    for _, container in containers(rendered[overlay]):
        for env in container.get("env", []):
            if SECRET_WORDS.search(env["name"]):
                assert "value" not in env, env["name"]
                assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_only_the_gateway_token_is_required(rendered):
    required = {
        (env["name"], env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for _, container in containers(rendered["gpu"])
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {}) and not env["valueFrom"]["secretKeyRef"].get("optional")
    }
    assert required == {
        ("TILESMITH_GATEWAY_TOKEN", "tilesmith-secrets", "gateway-token"),
        ("TILESMITH_TOKEN", "tilesmith-secrets", "gateway-token"),
    }
    bridge = _deployments(rendered["gpu"])["bridge"]["spec"]["template"]["spec"]["containers"][0]
    keys = {env["name"] for env in bridge["env"]}
    assert {"FAL_KEY", "ZAI_API_KEY", "REPLICATE_API_TOKEN", "OPENROUTER_API_KEY"} <= keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_the_gateway_reach_the_backends_and_monitoring_the_metrics(
    rendered, overlay
):
    objects = rendered[overlay]
    policies = _of(objects, "NetworkPolicy")
    deployments = _deployments(objects)
    assert any(
        p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in policies
    )  # default deny
    gateway_labels = _pod_labels(deployments["gateway"])
    ui_labels = _pod_labels(deployments["ui"])

    def allowed(target: str, port: int, source_labels: dict | None, source_namespace: str) -> bool:
        for policy in policies:
            if not _selects(policy["spec"]["podSelector"], _pod_labels(deployments[target])):
                continue
            for rule in policy["spec"].get("ingress", []):
                if port not in [p["port"] for p in rule.get("ports", [])]:
                    continue
                if "from" not in rule:
                    return True
                for peer in rule["from"]:
                    ns_ok = (
                        _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source_namespace})
                        if "namespaceSelector" in peer
                        else source_namespace == "tilesmith"
                    )
                    pod_ok = "podSelector" not in peer or (
                        source_labels is not None and _selects(peer["podSelector"], source_labels)
                    )
                    if ns_ok and pod_ok:
                        return True
        return False

    for backend in BACKENDS:
        ports = {
            p["name"]: p["containerPort"]
            for p in deployments[backend]["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert allowed(backend, ports["grpc"], gateway_labels, "tilesmith")
        assert not allowed(backend, ports["grpc"], ui_labels, "tilesmith")
        assert not allowed(backend, ports["grpc"], _pod_labels(deployments["tiling"]), "tilesmith")
        assert not allowed(backend, ports["grpc"], None, "monitoring")
        assert allowed(backend, ports["metrics"], None, "monitoring")
        assert not allowed(backend, ports["metrics"], gateway_labels, "tilesmith")
    assert allowed("gateway", 50051, ui_labels, "tilesmith")
    assert allowed("gateway", 51051, None, "monitoring")
    assert not allowed("gateway", 51051, ui_labels, "tilesmith")
    assert allowed("ui", 8501, None, "ingress-nginx")


# ---- helpers -----------------------------------------------------------------------------------


def _config_env(objects: list[dict], container: dict) -> dict[str, str]:
    """The container's environment from its ConfigMaps (envFrom) and literal env values."""
    configs = {c["metadata"]["name"]: c["data"] for c in _of(objects, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configs[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def test_render_is_what_kustomize_prints(rendered):
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(K8S_DIR / "overlays" / "gpu")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.count("\nkind: ") + result.stdout.startswith("kind: ") == len(render("gpu"))
