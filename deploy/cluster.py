"""The cluster side of `python -m deploy`, on the kubernetes client's DynamicClient.

    apply     server-side apply (field manager "tilesmith", conflicts forced: this tool owns the
              fields it sets) of every rendered object, in dependency order
    diff      a server-side dry-run apply of each object against the live one, as a unified diff
    rollouts  kubectl's rollout-status rules for Deployments, polled until done or a deadline
    status    pods, readiness, restarts, GPUs allocated, and each pod's queue depth read from its
              /metrics through the API server's pod proxy (no port-forward)

Every call goes through the API server's REST API; tests/deploy/fake_apiserver.py serves the few
endpoints used here.
"""

from __future__ import annotations

import contextlib
import difflib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

from deploy.render import DeployError, Manifest

__all__ = [
    "FIELD_MANAGER",
    "Applied",
    "Cluster",
    "ObjectDiff",
    "PodStatus",
    "Rollout",
    "connect",
    "parse_gauges",
]

FIELD_MANAGER = "tilesmith"
# Namespace first; NetworkPolicies before any pod exists; config, storage and Services before the
# Deployments that use them; what refers to a Deployment (PDB, autoscalers, monitors) after it.
_APPLY_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "Ingress",
    "ServiceMonitor",
    "ScaledObject",
)
# Server-set fields that say nothing about the desired state; left out of diffs.
_NOISE_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")
_NOISE_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
# What each service's /metrics says about its load: (waiting, running) gauge names.
_LOAD_GAUGES = {
    "gateway": ("gateway_queue_jobs", "gateway_running_jobs"),
    "tiling": ("tiling_queue_requests", "tiling_running_requests"),
    "diffusion": ("diffusion_queue_requests", "diffusion_running_requests"),
    "captioning": ("captioning_queue_requests", "captioning_running_requests"),
    "bridge": (None, "bridge_running_requests"),
}
_NAME_LABEL = "app.kubernetes.io/name"
_PART_OF = "app.kubernetes.io/part-of=tilesmith"


def connect(*, kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An API client from the kubeconfig (`--kubeconfig`, $KUBECONFIG, ~/.kube/config), or in-cluster."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (ConfigException, FileNotFoundError) as exc:
        if kubeconfig is not None or context is not None:
            raise DeployError(f"cannot load the kubeconfig: {exc}") from exc
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as in_cluster:
            raise DeployError(
                f"no cluster configured: no kubeconfig ({exc}) and not in a pod ({in_cluster})"
            ) from in_cluster
    return client.ApiClient(configuration)


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    namespace: str | None
    action: str  # created, configured, unchanged


@dataclass(frozen=True)
class ObjectDiff:
    kind: str
    name: str
    namespace: str | None
    text: str  # a unified diff; empty when the live object already matches


@dataclass(frozen=True)
class Rollout:
    name: str
    desired: int
    updated: int
    available: int
    done: bool
    failed: bool
    message: str


@dataclass(frozen=True)
class PodStatus:
    name: str
    service: str
    phase: str
    ready: str  # "1/1"
    restarts: int
    gpus: int
    node: str
    waiting: float | None  # calls (jobs, for the gateway) waiting, from /metrics; None: unknown
    running: float | None
    note: str  # why a pod is not ready, or why its metrics could not be read


def _key(obj: Manifest) -> tuple[str, str, str | None]:
    return obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")


class Cluster:
    """One API server, reached through `api_client` (see `connect`)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        # A fresh discovery cache per run: CRDs installed since the last run (KEDA, the Prometheus
        # operator) are then always seen.
        self._cache_dir = Path(tempfile.mkdtemp(prefix="tilesmith-deploy-"))
        try:
            self.dynamic = DynamicClient(api_client, cache_file=str(self._cache_dir / "discovery.json"))
        except Exception as exc:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            raise DeployError(
                f"cannot reach the API server at {api_client.configuration.host}: {exc}"
            ) from exc

    def close(self) -> None:
        shutil.rmtree(self._cache_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- objects -------------------------------------------------------------------------------

    def _resource(self, obj: Manifest) -> Any:
        return self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    def missing_kinds(self, objects: Iterable[Manifest]) -> list[str]:
        """`apiVersion/kind` of the objects whose API the cluster does not serve (CRD not installed)."""
        missing: list[str] = []
        for obj in objects:
            name = f"{obj['apiVersion']}/{obj['kind']}"
            if name in missing:
                continue
            try:
                self._resource(obj)
            except ResourceNotFoundError:
                missing.append(name)
        return missing

    def missing_secrets(self, objects: Iterable[Manifest]) -> list[str]:
        """The required (non-optional) Secret keys the pods refer to that the cluster lacks."""
        wanted: dict[tuple[str, str], set[str]] = {}
        for obj in objects:
            spec = obj.get("spec", {}).get("template", {}).get("spec", {})
            for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref is not None and not ref.get("optional", False):
                        wanted.setdefault((obj["metadata"]["namespace"], ref["name"]), set()).add(ref["key"])
        secrets = self.dynamic.resources.get(api_version="v1", kind="Secret")
        missing: list[str] = []
        for (namespace, name), keys in sorted(wanted.items()):
            try:
                data = secrets.get(name=name, namespace=namespace).to_dict().get("data") or {}
            except NotFoundError:
                data = {}
            missing += [f"{namespace}/{name}: {key}" for key in sorted(keys) if key not in data]
        return missing

    def get(self, obj: Manifest) -> Manifest | None:
        """The live object, or None."""
        _kind, name, namespace = _key(obj)
        try:
            return self._resource(obj).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def apply(self, obj: Manifest, *, dry_run: bool = False) -> Manifest:
        """Server-side apply of one object; the object as the server has it (or would, with dry_run)."""
        kind, name, namespace = _key(obj)
        try:
            result = self._resource(obj).server_side_apply(
                body=obj,
                name=name,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                dry_run="All" if dry_run else None,
            )
        except DynamicApiError as exc:
            raise DeployError(f"the API server refused {kind}/{name}: {exc.summary()}") from exc
        return result.to_dict()

    def apply_all(
        self, objects: list[Manifest], on_applied: Callable[[Applied], None] | None = None
    ) -> list[Applied]:
        """Apply every object in dependency order; what happened to each."""
        done: list[Applied] = []
        for obj in sorted(objects, key=_apply_rank):
            before = self.get(obj)
            after = self.apply(obj)
            if before is None:
                action = "created"
            elif before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion"):
                action = "unchanged"
            else:
                action = "configured"
            applied = Applied(*_key(obj), action)
            done.append(applied)
            if on_applied is not None:
                on_applied(applied)
        return done

    def diff(self, objects: list[Manifest]) -> list[ObjectDiff]:
        """For each object: the live object against a server-side dry-run apply of the rendered one."""
        diffs: list[ObjectDiff] = []
        for obj in sorted(objects, key=_apply_rank):
            kind, name, namespace = _key(obj)
            live = self.get(obj)
            merged = self.apply(obj, dry_run=True)
            label = f"{kind}/{name}" if namespace is None else f"{namespace}/{kind}/{name}"
            text = "".join(
                difflib.unified_diff(
                    _comparable(live).splitlines(keepends=True) if live is not None else [],
                    _comparable(merged).splitlines(keepends=True),
                    fromfile=f"live/{label}",
                    tofile=f"rendered/{label}",
                )
            )
            diffs.append(ObjectDiff(kind, name, namespace, text))
        return diffs

    # ---- rollouts ------------------------------------------------------------------------------

    def rollouts(self, namespace: str, names: Iterable[str]) -> list[Rollout]:
        deployments = self.dynamic.resources.get(api_version="apps/v1", kind="Deployment")
        return [_rollout(deployments.get(name=name, namespace=namespace).to_dict()) for name in names]

    def wait_for_rollouts(
        self,
        namespace: str,
        names: list[str],
        *,
        timeout: float,
        interval: float = 2.0,
        on_update: Callable[[list[Rollout]], None] | None = None,
    ) -> list[Rollout]:
        """Poll until every Deployment has rolled out, one has failed, or `timeout` passes; the last states."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.rollouts(namespace, names)
            if on_update is not None:
                on_update(states)
            if all(state.done for state in states) or any(state.failed for state in states):
                return states
            if time.monotonic() >= deadline:
                return states
            time.sleep(interval)

    def pod_problems(self, namespace: str, service: str) -> list[str]:
        """Why the pods of `service` are not ready: waiting reasons, scheduling failures."""
        problems: list[str] = []
        for pod in self._pods(namespace, f"{_NAME_LABEL}={service}"):
            note = _pod_note(pod)
            if note:
                problems.append(f"{pod['metadata']['name']}: {note}")
        return problems

    # ---- status --------------------------------------------------------------------------------

    def _pods(self, namespace: str, selector: str) -> list[Manifest]:
        pods = self.dynamic.resources.get(api_version="v1", kind="Pod")
        found = pods.get(namespace=namespace, label_selector=selector).to_dict()
        return sorted(found.get("items") or [], key=lambda pod: pod["metadata"]["name"])

    def status(self, namespace: str) -> list[PodStatus]:
        """Every Tilesmith pod in `namespace`, with its load read from its /metrics."""
        rows: list[PodStatus] = []
        for pod in self._pods(namespace, _PART_OF):
            service = pod["metadata"].get("labels", {}).get(_NAME_LABEL, "?")
            statuses = pod.get("status", {}).get("containerStatuses") or []
            containers = pod["spec"]["containers"]
            gpus = sum(
                int((c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in containers
            )
            waiting = running = None
            note = _pod_note(pod)
            gauges = _LOAD_GAUGES.get(service)
            metrics_port = _metrics_port(containers)
            if gauges is not None and metrics_port is not None and pod.get("status", {}).get("podIP"):
                try:
                    values = parse_gauges(self._scrape(namespace, pod["metadata"]["name"], metrics_port))
                except DynamicApiError as exc:
                    note = note or f"metrics unreadable through the pod proxy ({exc.status} {exc.reason})"
                else:
                    waiting = values.get(gauges[0]) if gauges[0] else None
                    running = values.get(gauges[1])
            rows.append(
                PodStatus(
                    name=pod["metadata"]["name"],
                    service=service,
                    phase=pod.get("status", {}).get("phase", "Unknown"),
                    ready=f"{sum(1 for s in statuses if s.get('ready'))}/{len(containers)}",
                    restarts=sum(s.get("restartCount", 0) for s in statuses),
                    gpus=gpus,
                    node=pod["spec"].get("nodeName") or "-",
                    waiting=waiting,
                    running=running,
                    note=note,
                )
            )
        return rows

    def _scrape(self, namespace: str, pod: str, port: int) -> str:
        response = self.dynamic.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics",
            header_params={"Accept": "text/plain"},
            serialize=False,
        )
        return response.data.decode("utf-8")


def parse_gauges(text: str) -> dict[str, float]:
    """Sample values of a Prometheus text exposition, summed over label sets, by metric name.

    Enough for the few gauges `status` reads (the deploy extra does not carry prometheus-client).
    """
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_and_labels, _, rest = line.rpartition("}") if "}" in line else line.partition(" ")
        name = name_and_labels.split("{", 1)[0].strip()
        with contextlib.suppress(ValueError, IndexError):
            values[name] = values.get(name, 0.0) + float(rest.split()[0])
    return values


def _apply_rank(obj: Manifest) -> tuple[int, str]:
    kind = obj["kind"]
    rank = _APPLY_ORDER.index(kind) if kind in _APPLY_ORDER else len(_APPLY_ORDER)
    return rank, obj["metadata"]["name"]


def _comparable(obj: Manifest) -> str:
    clean = {key: value for key, value in obj.items() if key != "status"}
    metadata = {key: value for key, value in clean.get("metadata", {}).items() if key not in _NOISE_METADATA}
    annotations = {
        key: value for key, value in metadata.get("annotations", {}).items() if key not in _NOISE_ANNOTATIONS
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    clean["metadata"] = metadata
    return yaml.safe_dump(clean, sort_keys=True)


def _rollout(deployment: Manifest) -> Rollout:
    """kubectl rollout status' rules for a Deployment."""
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    name = deployment["metadata"]["name"]
    desired = spec.get("replicas", status.get("replicas", 1))
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    total = status.get("replicas", 0)

    def state(done: bool, message: str, failed: bool = False) -> Rollout:
        return Rollout(name, desired, updated, available, done, failed, message)

    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return state(False, "waiting for the controller to see the new spec")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return state(False, f"progress deadline exceeded: {condition.get('message', '')}", failed=True)
    if updated < desired:
        return state(False, f"{updated} of {desired} replicas updated")
    if total > updated:
        return state(False, f"{total - updated} old replicas terminating")
    if available < updated:
        return state(False, f"{available} of {updated} updated replicas available")
    return state(True, "rolled out")


def _metrics_port(containers: list[Manifest]) -> int | None:
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == "metrics":
                return int(port["containerPort"])
    return None


def _pod_note(pod: Manifest) -> str:
    """Why a pod is not ready, in the words of its status, or ''."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"unschedulable: {condition.get('message', condition.get('reason', ''))}"
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing", "ContainerCreating"):
            return f"{container['name']}: {waiting['reason']} {waiting.get('message', '')}".strip()
        terminated = (container.get("lastState") or {}).get("terminated")
        if terminated and not container.get("ready"):
            return f"{container['name']}: last exit {terminated.get('exitCode')} ({terminated.get('reason', '')})"
    return ""
