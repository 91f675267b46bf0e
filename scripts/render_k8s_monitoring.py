"""Write the production overlay's monitoring objects from their sources of truth:
``deploy/prometheus/alerts.yml`` becomes a ``PrometheusRule`` and ``deploy/grafana/wce-overview.json``
is copied beside the overlay for its dashboard ConfigMap (Kustomize only reads files under the
overlay). ``python -m scripts.render_k8s_monitoring``; a unit test fails while they differ."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/wce-overview.json"
OVERLAY = ROOT / "deploy/k8s/production"
RULE_FILE = OVERLAY / "prometheusrule.yaml"
DASHBOARD_COPY = OVERLAY / "grafana-dashboard.json"

HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by `python -m scripts.render_k8s_monitoring`:\n"
    "# edit the alert rules there, then run it again.\n"
)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def prometheus_rule() -> str:
    rules = yaml.safe_load(ALERTS.read_text())
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "wce-alerts",
            "labels": {"app.kubernetes.io/part-of": "whatsapp-campaign-engine"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=100)


def main() -> None:
    RULE_FILE.write_text(prometheus_rule())
    DASHBOARD_COPY.write_text(DASHBOARD.read_text())
    print(f"wrote {RULE_FILE.relative_to(ROOT)} and {DASHBOARD_COPY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
