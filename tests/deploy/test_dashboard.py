"""deploy/grafana/tilesmith.json, statically: its panels and the PromQL helpers test_prometheus uses.

test_prometheus.py runs every query against a real Prometheus and checks the series exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tilesmith.json"
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


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and label names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):  # not a duration's unit
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        if text[: match.start()].rstrip().endswith("$"):
            continue
        found.add(match.group())
    return found


def test_metric_names_reads_selectors_not_functions_or_labels():
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(gateway_job_duration_seconds_bucket{namespace=~"$namespace",'
        ' kind!="x"}[$__rate_interval]))) / on (kind) group_left count(up) and DCGM_FI_DEV_GPU_UTIL offset 5m'
    )
    assert metric_names(expr) == {"gateway_job_duration_seconds_bucket", "up", "DCGM_FI_DEV_GPU_UTIL"}


def test_the_dashboard_has_the_panels_the_operators_need():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "tilesmith"
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queries = dashboard_queries()
    exprs = " ".join(expr for _, expr in queries)
    for needed in (
        "gateway_jobs_total",  # jobs by outcome
        "histogram_quantile(0.5, sum by (le, kind) (rate(gateway_job_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le, kind) (rate(gateway_job_duration_seconds_bucket",
        "diffusion_queue_requests",
        "rate(gateway_tiles_redrawn_total",
        "diffusion_denoise_step_duration_seconds_bucket",
        "DCGM_FI_DEV_GPU_UTIL",
    ):
        assert needed in exprs, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        assert all('namespace=~"$namespace"' in t["expr"] for t in panel["targets"])
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]
