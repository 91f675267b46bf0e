"""The Prometheus alert rules and the Grafana dashboard: well-formed, on metrics that exist, with
a templated data source; checked and unit-tested by promtool when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from services.dispatcher import metrics as dispatcher_metrics
from services.sender import metrics as sender_metrics
from shared import metrics
from tests.support import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "wce-overview.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt: prometheus)")

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC = re.compile(r"\bwce_[a-z0-9_]+\b")
# Grafana's variables, replaced by values that make the expression plain PromQL.
_VARIABLES = {"$__rate_interval": "5m", "$tenant": ".*"}


def exposed_sample_names() -> set[str]:
    """Every sample name the services expose (counters' _total, histograms' _bucket…): the shared
    metrics and the dispatcher's and sender's own."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    names: set[str] = set()
    for module in (metrics, dispatcher_metrics, sender_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


# Prometheus' own per-target metric: the service-down alert and the service health panel read it.
_SCRAPE_HEALTH = re.compile(r'\bup\{job=~"wce-')


def uses_only_scrape_health(expr: str) -> bool:
    return bool(_SCRAPE_HEALTH.search(expr)) and not metric_names(expr)


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(_QUOTED.sub('""', expr)))


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _QUOTED.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return False
    return not stack


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def plain_promql(expr: str) -> str:
    for variable, value in _VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_every_alert_rule_has_an_expression_a_duration_a_severity_and_annotations() -> None:
    names = [rule["alert"] for rule in rules()]
    assert {"WceCampaignStalled", "WceSendErrorRateHigh", "WceDeadLetterQueueNotEmpty"} <= set(names)
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alert_expressions_are_balanced_and_use_only_metrics_the_services_expose() -> None:
    exposed = exposed_sample_names()
    for rule in rules():
        assert balanced(rule["expr"]), rule["alert"]
        if uses_only_scrape_health(rule["expr"]):
            continue
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exposed, (rule["alert"], used - exposed)


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")


def test_every_alert_links_to_its_section_of_the_operations_guide() -> None:
    headings = re.findall(r"^## (.+)$", OPERATIONS_GUIDE.read_text(), flags=re.MULTILINE)
    anchors = {anchor(heading) for heading in headings}
    for rule in rules():
        url = rule["annotations"].get("runbook_url", "")
        assert url.startswith("docs/operations.md#"), rule["alert"]
        assert url.split("#", 1)[1] in anchors, (rule["alert"], url)


def test_every_alert_has_a_promtool_test_that_expects_it_to_fire() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    missing = sorted({rule["alert"] for rule in rules()} - firing)
    assert not missing, f"alerts without a promtool test in alerts_test.yml: {missing}"


def test_the_dashboard_uses_the_templated_data_source_everywhere() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["tenant"]["datasource"] == DATASOURCE
    for panel in all_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["refId"] and target["expr"], panel["title"]


def test_dashboard_panels_have_unique_ids_fit_the_grid_and_query_existing_metrics() -> None:
    exposed = exposed_sample_names()
    panels = list(all_panels(dashboard()["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for target in panel.get("targets", []):
            assert balanced(target["expr"]), panel["title"]
            if uses_only_scrape_health(target["expr"]):
                continue
            used = metric_names(target["expr"])
            assert used and used <= exposed, (panel["title"], used - exposed)


def test_the_dashboard_has_the_panels_operators_need() -> None:
    titles = " | ".join(panel["title"].lower() for panel in all_panels(dashboard()["panels"]))
    for needed in (
        "throughput",
        "errors by code",
        "retries by tier",
        "queue depth",
        "p50 / p95 / p99",
        "progress",
        "auto-paused",
        "credits",
        "opt-outs",
        "reconciler",
        "parked messages",
        "rate applied",
        "service health",
        "http requests",
        "http latency",
    ):
        assert needed in titles, needed


def test_every_metric_the_services_expose_is_on_a_dashboard_panel() -> None:
    families = set()
    for module in (metrics, dispatcher_metrics, sender_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                families.update(family.name for family in value.describe())
    queries = " ".join(
        target["expr"] for panel in all_panels(dashboard()["panels"]) for target in panel.get("targets", [])
    )
    missing = sorted(
        name for name in families if not re.search(rf"\b{name}(_total|_bucket|_count|_sum)?\b", queries)
    )
    assert not missing, f"add a panel for {missing} to {DASHBOARD.relative_to(ROOT)}"


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_alerts_fire_on_the_situations_they_describe_and_not_otherwise() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Given each dashboard query as a recording rule (Grafana's variables filled in)
    assert PROMTOOL is not None
    queries = [
        target["expr"] for panel in all_panels(dashboard()["panels"]) for target in panel.get("targets", [])
    ]
    recorded = [{"record": f"dashboard:query_{i}", "expr": plain_promql(q)} for i, q in enumerate(queries)]
    rules_file = tmp_path / "dashboard_queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))

    # When promtool checks them, then every one parses
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_the_structural_checks_catch_a_broken_query_and_an_unknown_metric() -> None:
    assert not balanced('sum(rate(wce_messages_total{tenant="a"}[5m])')
    assert balanced('max by (queue) (wce_queue_depth{queue=~".+\\\\.dlq"})')
    assert metric_names('wce_queue_depth{queue="wce_not_a_metric"}') == {"wce_queue_depth"}
    assert "wce_messages_total" in exposed_sample_names()
    assert "wce_nonexistent_total" not in exposed_sample_names()
