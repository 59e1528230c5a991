"""Tilesmith on Kubernetes: images (docker/), manifests (k8s/), a dashboard (grafana/) and the
`python -m deploy` tool (render, apply, diff, status) on the kubernetes Python client.

See deploy/README.md for the step-by-step guide.
"""

from deploy.render import DeployError, render

__all__ = ["DeployError", "render"]
