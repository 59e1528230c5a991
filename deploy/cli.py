"""`python -m deploy`: render, apply, diff and watch Tilesmith on a Kubernetes cluster.

    python -m deploy render --overlay gpu                       the manifests, as YAML on stdout
    python -m deploy diff   --overlay gpu                       what apply would change (exit 1 if anything)
    python -m deploy apply  --overlay gpu --wait                server-side apply, then wait for rollouts
    python -m deploy status [--namespace tilesmith]             pods, readiness, GPUs, queue depth

render, diff and apply take --namespace, --registry and --tag (see deploy/render.py); the cluster
commands take --kubeconfig and --context. Exit codes: 0 done, 1 a diff found / a rollout that did
not finish, 2 an operator error (bad overlay, missing CRD or Secret, refused object).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from deploy.cluster import Cluster, PodStatus, Rollout, connect
from deploy.render import DeployError, overlay_names, render, to_yaml

__all__ = ["main"]

DEFAULT_NAMESPACE = "tilesmith"


def main(argv: Sequence[str] | None = None, *, cluster: Cluster | None = None) -> int:
    """Run one command; the exit code. `cluster` replaces the kubeconfig's (tests)."""
    args = _parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    try:
        if args.command == "render":
            objects = render(args.overlay, namespace=args.namespace, registry=args.registry, tag=args.tag)
            sys.stdout.write(to_yaml(objects))
            return 0
        own = cluster is None
        cluster = cluster or Cluster(connect(kubeconfig=args.kubeconfig, context=args.context))
        try:
            return _COMMANDS[args.command](args, cluster, console)
        finally:
            if own:
                cluster.close()
    except DeployError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2


def _apply(args: argparse.Namespace, cluster: Cluster, console: Console) -> int:
    # 1. Render, and check the cluster can take every object before changing anything.
    objects = render(args.overlay, namespace=args.namespace, registry=args.registry, tag=args.tag)
    namespace = _namespace_of(objects)
    _preflight(cluster, objects, check_secrets=not args.skip_secret_check)
    # 2. Apply, in dependency order.
    console.print(f"Applying overlay [bold]{args.overlay}[/bold] to namespace [bold]{namespace}[/bold]")
    cluster.apply_all(
        objects,
        on_applied=lambda a: console.print(f"  {a.kind.lower()}/{a.name} [dim]{a.action}[/dim]"),
    )
    if not args.wait:
        return 0
    # 3. Wait for the Deployments to roll out, with a progress bar per Deployment.
    names = [obj["metadata"]["name"] for obj in objects if obj["kind"] == "Deployment"]
    states = _watch_rollouts(cluster, console, namespace, names, args.timeout, args.poll_interval)
    pending = [state for state in states if not state.done]
    for state in pending:
        console.print(f"[red]{state.name}[/red]: {escape(state.message)}")
        for problem in cluster.pod_problems(namespace, state.name):
            console.print(f"    {escape(problem)}")
    if pending:
        console.print(f"[red]{len(pending)} Deployment(s) did not roll out within {args.timeout:.0f} s[/red]")
        return 1
    console.print("[green]Every Deployment rolled out.[/green]")
    return 0


def _diff(args: argparse.Namespace, cluster: Cluster, console: Console) -> int:
    objects = render(args.overlay, namespace=args.namespace, registry=args.registry, tag=args.tag)
    _preflight(cluster, objects, check_secrets=False)
    changed = [d for d in cluster.diff(objects) if d.text]
    for found in changed:
        sys.stdout.write(found.text)
    console.print(f"{len(changed)} of {len(objects)} objects differ from the cluster")
    return 1 if changed else 0


def _status(args: argparse.Namespace, cluster: Cluster, console: Console) -> int:
    rows = cluster.status(args.namespace or DEFAULT_NAMESPACE)
    out = Console() if sys.stdout.isatty() else Console(width=200)  # piped: no truncated pod names
    out.print(_status_table(rows, args.namespace or DEFAULT_NAMESPACE))
    for row in rows:
        if row.note:
            out.print(f"[yellow]{row.name}[/yellow]: {escape(row.note)}")
    return 0


_COMMANDS = {"apply": _apply, "diff": _diff, "status": _status}


def _preflight(cluster: Cluster, objects: list, *, check_secrets: bool) -> None:
    missing = cluster.missing_kinds(objects)
    if missing:
        raise DeployError(
            "the cluster does not serve " + ", ".join(missing) + ": install the operator that defines it "
            "(monitoring.coreos.com: prometheus-operator / kube-prometheus-stack; keda.sh: KEDA) "
            "or choose an overlay without it (dev)"
        )
    if check_secrets:
        absent = cluster.missing_secrets(objects)
        if absent:
            raise DeployError(
                "required Secret keys are missing: "
                + "; ".join(absent)
                + ". Create them first, e.g. `kubectl -n tilesmith create secret generic tilesmith-secrets "
                "--from-literal=gateway-token=$(openssl rand -hex 32)` (deploy/README.md, step 2)"
            )


def _namespace_of(objects: list) -> str:
    for obj in objects:
        if obj["kind"] == "Namespace":
            return obj["metadata"]["name"]
    return next(
        (obj["metadata"]["namespace"] for obj in objects if "namespace" in obj["metadata"]), "default"
    )


def _watch_rollouts(
    cluster: Cluster, console: Console, namespace: str, names: list[str], timeout: float, interval: float
) -> list[Rollout]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[name]:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks = {name: progress.add_task(name, name=name, message="", total=1) for name in names}

        def update(states: list[Rollout]) -> None:
            for state in states:
                ready = min(state.updated, state.available)
                progress.update(
                    tasks[state.name],
                    total=max(state.desired, 1),
                    completed=state.desired if state.done else ready,
                    message=escape(state.message),
                )

        return cluster.wait_for_rollouts(
            namespace, names, timeout=timeout, interval=interval, on_update=update
        )


def _status_table(rows: list[PodStatus], namespace: str) -> Table:
    table = Table(title=f"Tilesmith in namespace {namespace}")
    for column in ("pod", "service", "phase", "ready", "restarts", "GPUs", "node", "waiting", "running"):
        table.add_column(
            column, justify="right" if column in ("restarts", "GPUs", "waiting", "running") else "left"
        )
    for row in rows:
        table.add_row(
            row.name,
            row.service,
            row.phase,
            row.ready,
            str(row.restarts),
            str(row.gpus),
            row.node,
            _number(row.waiting),
            _number(row.running),
        )
    table.caption = "waiting / running: calls (jobs on the gateway) read from each pod's /metrics"
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def rendering(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--overlay", required=True, choices=overlay_names(), help="deploy/k8s/overlays/<name>"
        )
        sub.add_argument(
            "--namespace", help="deploy into this namespace instead of the overlay's (tilesmith)"
        )
        sub.add_argument("--registry", help="image registry/repository prefix, e.g. registry.example.com/ml")
        sub.add_argument("--tag", help="image tag for every Tilesmith image")

    def cluster_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
        sub.add_argument("--context", help="kubeconfig context (default: the current one)")

    rendering(commands.add_parser("render", help="print the rendered manifests"))
    apply = commands.add_parser("apply", help="server-side apply the rendered manifests")
    rendering(apply)
    cluster_options(apply)
    apply.add_argument("--wait", action="store_true", help="wait for every Deployment to roll out")
    apply.add_argument(
        "--timeout", type=float, default=900.0, help="seconds --wait waits (GPU pods load models for minutes)"
    )
    apply.add_argument("--poll-interval", type=float, default=2.0, help="seconds between rollout checks")
    apply.add_argument(
        "--skip-secret-check", action="store_true", help="apply even if a required Secret key is missing"
    )
    diff = commands.add_parser("diff", help="diff the rendered manifests against the cluster")
    rendering(diff)
    cluster_options(diff)
    status = commands.add_parser("status", help="pods, readiness, GPUs and queue depth")
    status.add_argument("--namespace", help=f"namespace (default {DEFAULT_NAMESPACE})")
    cluster_options(status)
    return parser
