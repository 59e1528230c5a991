"""A fake Kubernetes API server on 127.0.0.1: the few REST endpoints `python -m deploy` calls.

A real HTTP server (threading http.server) speaking enough of the API for the kubernetes client's
DynamicClient: discovery (/version, /api, /api/v1, /apis, /apis/<group>/<version>), server-side apply
(PATCH with `application/apply-patch+yaml`, `fieldManager`, `force`, `dryRun=All`), GET of single
objects and of pod lists (equality label selectors), and the pod proxy for /metrics. Objects are
stored as applied plus the server's fields (uid, resourceVersion, generation, managedFields) and one
default (a Deployment's progressDeadlineSeconds), so a diff has server-side noise to ignore.

Deployments roll out by themselves: `rollout_polls[name]` GETs after an apply (default 1) their
status says every replica is updated and available; `None` never rolls out.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml


@dataclass(frozen=True)
class ApiResource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CORE = [
    ApiResource("", "v1", "Namespace", "namespaces", namespaced=False),
    ApiResource("", "v1", "ConfigMap", "configmaps"),
    ApiResource("", "v1", "Secret", "secrets"),
    ApiResource("", "v1", "Service", "services"),
    ApiResource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ApiResource("", "v1", "Pod", "pods"),
    ApiResource("apps", "v1", "Deployment", "deployments"),
    ApiResource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ApiResource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    ApiResource("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ApiResource("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
]
PROMETHEUS_OPERATOR = [ApiResource("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors")]
KEDA = [ApiResource("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any


@dataclass
class FakeApiServer:
    resources: list[ApiResource] = field(default_factory=lambda: [*CORE, *PROMETHEUS_OPERATOR, *KEDA])
    objects: dict[tuple[str, str, str | None, str], dict] = field(default_factory=dict)
    metrics: dict[tuple[str, int], str] = field(default_factory=dict)  # (pod, port) -> /metrics text
    rollout_polls: dict[str, int | None] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._versions = itertools.count(1000)
        self._polls: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_PATCH(self) -> None:
                fake._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- seeding -------------------------------------------------------------------------------

    def put(self, obj: dict) -> None:
        """Store an object as if someone else had created it (Secrets, Pods)."""
        resource = self._by_kind(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        self.objects[(resource.group_version, resource.plural, meta.get("namespace"), meta["name"])] = obj

    def stored(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects.values() if obj["kind"] == kind]

    def patches(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH"]

    # ---- the API -------------------------------------------------------------------------------

    def _by_kind(self, api_version: str, kind: str) -> ApiResource:
        return next(r for r in self.resources if r.group_version == api_version and r.kind == kind)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type")
        body = yaml.safe_load(raw) if raw else None
        with self._lock:
            self.requests.append(Request(method, url.path, parse_qs(url.query), content_type, body))
            status, payload = self._route(method, url.path, parse_qs(url.query), content_type, body)
        if isinstance(payload, str):
            data, mime = payload.encode(), "text/plain; version=0.0.4"
        else:
            data, mime = json.dumps(payload).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", mime)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(
        self, method: str, path: str, query: dict, content_type: str | None, body: Any
    ) -> tuple[int, Any]:
        # 1. Discovery.
        if path == "/version":
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            return 200, self._groups()
        if path == "/api/v1" or re.fullmatch(r"/apis/[^/]+/[^/]+", path):
            return self._resource_list(path.removeprefix("/api/").removeprefix("/apis/"))
        # 2. The pod proxy.
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy/metrics", path)
        if match:
            text = self.metrics.get((match[2], int(match[3])))
            return (200, text) if text is not None else _status(503, "ServiceUnavailable", "no endpoint")
        # 3. Objects.
        match = re.fullmatch(
            r"/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
            r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?",
            path,
        )
        if match is None:
            return _status(404, "NotFound", f"no route {path}")
        group_version = match["core"] or f"{match['group']}/{match['version']}"
        resource = next(
            (r for r in self.resources if r.group_version == group_version and r.plural == match["plural"]),
            None,
        )
        if resource is None:
            return _status(404, "NotFound", f"the server could not find the requested resource {path}")
        key = (group_version, resource.plural, match["namespace"], match["name"])
        if method == "GET" and match["name"] is None:
            return 200, self._list(resource, match["namespace"], query.get("labelSelector", [""])[0])
        if method == "GET":
            obj = self.objects.get(key)
            if obj is None:
                return _status(404, "NotFound", f'{resource.plural} "{match["name"]}" not found')
            if resource.kind == "Deployment":
                self._advance_rollout(obj)
            return 200, obj
        if method == "PATCH":
            return self._apply(resource, key, query, content_type, body)
        return _status(405, "MethodNotAllowed", method)

    def _groups(self) -> dict:
        groups: dict[str, list[str]] = {}
        for r in self.resources:
            if r.group:
                groups.setdefault(r.group, [])
                if r.version not in groups[r.group]:
                    groups[r.group].append(r.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": name,
                    "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                    "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
                }
                for name, versions in groups.items()
            ],
        }

    def _resource_list(self, group_version: str) -> tuple[int, dict]:
        found = [r for r in self.resources if r.group_version == group_version]
        if not found:
            return _status(404, "NotFound", f"no API group version {group_version}")
        entries = []
        for r in found:
            entries.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "list", "patch", "create", "update", "delete"],
                }
            )
            if r.kind == "Pod":
                entries.append(
                    {"name": "pods/proxy", "namespaced": True, "kind": "PodProxyOptions", "verbs": ["get"]}
                )
        return 200, {"kind": "APIResourceList", "groupVersion": group_version, "resources": entries}

    def _list(self, resource: ApiResource, namespace: str | None, selector: str) -> dict:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        items = [
            obj
            for (gv, plural, ns, _), obj in self.objects.items()
            if gv == resource.group_version
            and plural == resource.plural
            and (namespace is None or ns == namespace)
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return {"kind": f"{resource.kind}List", "apiVersion": resource.group_version, "items": items}

    def _apply(self, resource: ApiResource, key: tuple, query: dict, content_type: str | None, body: Any):
        if content_type != "application/apply-patch+yaml":
            return _status(415, "UnsupportedMediaType", f"server-side apply expected, got {content_type}")
        if "fieldManager" not in query:
            return _status(422, "Invalid", "fieldManager is required for apply patch")
        if body["metadata"]["name"] != key[3] or body["metadata"].get("namespace") != key[2]:
            return _status(400, "BadRequest", "the name or namespace of the object does not match the URL")
        live = self.objects.get(key)
        merged = copy.deepcopy(body)
        if resource.kind == "Deployment":
            merged["spec"].setdefault("progressDeadlineSeconds", 600)
        meta = merged["metadata"]
        if live is not None and _desired(live) == _desired(merged):
            return 200, live
        meta["uid"] = live["metadata"]["uid"] if live else f"uid-{key[3]}"
        meta["creationTimestamp"] = "2026-11-21T00:00:00Z"
        meta["resourceVersion"] = str(next(self._versions))
        meta["managedFields"] = [{"manager": query["fieldManager"][0], "operation": "Apply"}]
        if resource.kind == "Deployment":
            meta["generation"] = (live["metadata"]["generation"] + 1) if live else 1
            merged["status"] = {"observedGeneration": meta["generation"] - 1}
        if query.get("dryRun") == ["All"]:
            return 200, merged
        self.objects[key] = merged
        if resource.kind == "Deployment":
            self._polls[key[3]] = 0
        return (200 if live else 201), merged

    def _advance_rollout(self, deployment: dict) -> None:
        name = deployment["metadata"]["name"]
        after = self.rollout_polls.get(name, 1)
        self._polls[name] = self._polls.get(name, 0) + 1
        replicas = deployment["spec"].get("replicas", 1)
        generation = deployment["metadata"].get("generation", 1)
        if after is not None and self._polls[name] > after:
            deployment["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        else:
            deployment["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": 0,
            }


def _desired(obj: dict) -> dict:
    clean = {k: v for k, v in obj.items() if k != "status"}
    meta = {
        k: v
        for k, v in clean["metadata"].items()
        if k not in ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation")
    }
    return {**clean, "metadata": meta}


def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
