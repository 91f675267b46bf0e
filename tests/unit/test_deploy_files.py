"""The deployment files are valid without a Docker engine: docker-compose.yml against the Compose
JSON schema, and the Dockerfile/Procfile start every service the way the README says."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("segmenter", "dispatcher", "sender", "tracker")


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_schema() -> None:
    schema = json.loads((ROOT / "tests/contracts/compose-spec.schema.json").read_text())
    jsonschema.validate(load_compose(), schema)


def test_compose_runs_the_four_services_the_broker_the_database_and_the_simulator() -> None:
    services = load_compose()["services"]
    assert {"rabbitmq", "postgres", "twilio-sim", *SERVICES} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    for name in SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]


def test_every_process_of_the_procfile_runs_in_compose_too() -> None:
    """The Procfile is the list of what a deployment runs; compose leaves none of it out (the
    audience vacuum was once only in the Procfile and the Kubernetes CronJob)."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    procfile = {line.split(":", 1)[1].split("python -m", 1)[1].split()[0] for line in lines if line.strip()}
    compose = {
        service["command"][2]
        for service in load_compose()["services"].values()
        if service.get("command", [None])[:2] == ["python", "-m"]
    }
    # The simulator runs from its own image target, whose default command starts it.
    assert procfile - compose == {"tools.twilio_sim"}
    assert "twilio-sim" in load_compose()["services"]


def test_a_broken_compose_file_is_rejected_by_the_schema() -> None:
    schema = json.loads((ROOT / "tests/contracts/compose-spec.schema.json").read_text())
    broken = load_compose()
    broken["services"]["sender"]["comand"] = broken["services"]["sender"].pop("command")
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("schema accepted a misspelt service key")


def test_procfile_starts_every_service_and_the_simulator() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    commands = dict(line.split(":", 1) for line in lines if line.strip())
    for name in SERVICES:
        assert commands[name].strip() == f"python -m services.{name}"
    assert "tools.twilio_sim" in commands["simulator"]


def test_every_service_is_a_runnable_module() -> None:
    for name in SERVICES:
        assert (ROOT / "services" / name / "__main__.py").is_file(), name


def test_the_readme_documents_every_setting() -> None:
    from shared.settings import ConsoleSettings, Settings

    readme = (ROOT / "README.md").read_text()
    names = [*Settings.model_fields, *ConsoleSettings.model_fields]
    missing = [f"WCE_{name.upper()}" for name in names if f"WCE_{name.upper()}" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_the_readme_documents_every_metric() -> None:
    from prometheus_client import REGISTRY

    import services.dispatcher.metrics
    import services.sender.metrics  # noqa: F401
    import shared.metrics  # noqa: F401

    readme = (ROOT / "README.md").read_text()
    names = {metric.name for metric in REGISTRY.collect() if metric.name.startswith("wce_")}
    missing = sorted(name for name in names if name not in readme)
    assert not missing, f"README metrics table lacks {missing}"
