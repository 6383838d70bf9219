"""The Grafana dashboard and Prometheus config under deploy/ use only names the code exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskloop.monitor.metrics import METRIC_NAMES, make_metrics
from tests.monitor import exported_samples, touch_all

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "taskloop-dashboard.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip
_NAME = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions or
    aggregations (followed by '('), keywords, label names or Grafana variables."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors ([5m], [$__rate_interval])
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in _NAME.finditer(expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    """The extractor finds the series names and nothing else, so a misspelt metric in the
    dashboard is caught below."""
    expr = (
        "histogram_quantile(0.99, sum by (route, le) (rate(taskloop_request_seconds_bucket"
        '{instance=~"$instance", route!="/metrics"}[$__rate_interval])))'
        " / on (route) group_left sum without (status) (taskloop_nope_total offset 5m) > bool 1e-3"
    )
    assert metric_names(expr) == {"taskloop_request_seconds_bucket", "taskloop_nope_total"}


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_names(dashboard: dict[str, Any]) -> dict[str, str]:
    """Metric name -> title of a panel (or variable) that uses it."""
    used: dict[str, str] = {}
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                used.setdefault(name, panel["title"])
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        for metric in re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)", text):
            used.setdefault(metric, f"variable {var['name']}")
    return used


def test_every_dashboard_metric_is_exported(dashboard: dict[str, Any]) -> None:
    """Each name in a panel expression is a sample name of make_metrics()'s output (after
    every metric got one series), suffixes included: _bucket/_sum/_count, _total."""
    m = make_metrics()
    touch_all(m)
    exported = exported_samples(m)
    used = dashboard_names(dashboard)
    assert used, "no metric names found in the dashboard"
    missing = {name: title for name, title in used.items() if name not in exported}
    assert not missing, f"dashboard uses metrics the code does not export: {missing}"


def test_every_exported_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    """The other direction: no taskloop metric is left off the dashboard."""
    used = dashboard_names(dashboard)
    for name in METRIC_NAMES:
        variants = {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        assert variants & set(used), f"{name} has no panel"


def test_dashboard_is_a_provisionable_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in walk_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in walk_panels(dashboard["panels"]):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_prometheus_scrapes_the_metrics_endpoint() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["taskloop"]["metrics_path"] == "/metrics"
    assert jobs["taskloop"]["static_configs"][0]["targets"]
