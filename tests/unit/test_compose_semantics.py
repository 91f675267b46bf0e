"""docker-compose.yml behaves as its header says: it refuses to start without its secrets,
publishes nothing beyond 127.0.0.1, keeps the simulator and the monitoring stack behind
profiles, health-checks every long-running container and starts the services only once the
database, the broker and the migrations are ready."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.unit.compose_model import (
    ROOT,
    MissingRequiredVariable,
    active_services,
    interpolate,
    raw_compose,
    required_variables,
)

ENGINE = ("segmenter", "tracker", "dispatcher", "sender")
SECRETS = {
    "WCE_ENCRYPTION_KEYS": "q4FbE5-M3rY6tN0pS9xJ1kZ8vW2cH7uL4gD6aB0eR3I=",
    "WCE_OPERATOR_TOKEN": "an-operator-token-of-some-length",
    "WCE_POSTGRES_PASSWORD": "pg-secret",
    "WCE_RABBITMQ_PASSWORD": "mq-secret",
    "WCE_CONSOLE_SESSION_KEYS": "h8kL2mN4pQ6rS8tV0wX2yZ4aB6cD8eF0gH2iJ4kL6mN=",
}


def rendered(env: dict[str, str] | None = None) -> dict:
    return interpolate(raw_compose(), SECRETS if env is None else env)


def test_the_file_refuses_to_start_without_each_of_its_secrets() -> None:
    assert required_variables(raw_compose()) == set(SECRETS)
    for name in SECRETS:
        env = {key: value for key, value in SECRETS.items() if key != name}
        with pytest.raises(MissingRequiredVariable) as missing:
            rendered(env)
        assert missing.value.name == name
        with pytest.raises(MissingRequiredVariable):
            rendered({**env, name: ""})


def test_the_services_get_the_secrets_given_and_no_empty_setting() -> None:
    config = rendered()
    for name in ENGINE:
        env = config["services"][name]["environment"]
        assert env["WCE_ENCRYPTION_KEYS"] == SECRETS["WCE_ENCRYPTION_KEYS"]
        assert env["WCE_OPERATOR_TOKEN"] == SECRETS["WCE_OPERATOR_TOKEN"]
        assert "pg-secret@postgres:5432" in env["WCE_DATABASE_URL"]
        assert env["WCE_AMQP_URL"].startswith("amqp://wce:mq-secret@rabbitmq:5672")
        assert env["WCE_HTTP_HOST"] == "0.0.0.0"
        assert all(value != "" for value in env.values()), name


def test_the_rendered_file_is_valid_against_the_compose_schema() -> None:
    schema = json.loads((ROOT / "tests/contracts/compose-spec.schema.json").read_text())
    jsonschema.validate(rendered(), schema)


def test_every_published_port_is_bound_to_the_loopback_interface() -> None:
    for name, service in rendered()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_simulator_runs_only_under_the_dev_profile_and_monitoring_under_its_own() -> None:
    config = rendered()
    assert active_services(config, set()) == {
        "rabbitmq",
        "postgres",
        "migrate",
        "audience-vacuum",
        "console",
        *ENGINE,
    }
    assert active_services(config, {"dev"}) - active_services(config, set()) == {"twilio-sim"}
    assert active_services(config, {"monitoring"}) - active_services(config, set()) == {
        "prometheus",
        "grafana",
    }


def test_every_long_running_container_has_a_health_check_of_its_own_port() -> None:
    services = rendered()["services"]
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        if name == "audience-vacuum":
            # It serves no port (it only listens for the segmenter's requests on the database), so
            # there is nothing to probe; compose restarts it when it exits.
            assert service["healthcheck"] == {"disable": True}
            assert service["restart"] == "unless-stopped"
            continue
        test = service["healthcheck"]["test"]
        assert test and not service["healthcheck"].get("disable"), name
    for name, port in zip(ENGINE, ("8000", "8001", "8002", "8003"), strict=True):
        assert services[name]["environment"]["WCE_HEALTH_PORT"] == port
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert "8010/healthz" in " ".join(services["twilio-sim"]["healthcheck"]["test"])


def test_the_services_start_after_the_database_the_broker_and_the_migrations() -> None:
    services = rendered()["services"]
    for name in ENGINE:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["WCE_MIGRATE_AT_START"] == "false"
    assert services["migrate"]["command"] == ["python", "-m", "shared.migrate"]


def test_engine_containers_run_read_only_without_capabilities_from_the_engine_target() -> None:
    services = rendered()["services"]
    for name in (*ENGINE, "migrate"):
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]
        assert services[name]["build"]["target"] == "engine"
        assert not services[name]["image"].endswith(":latest")
    assert services["twilio-sim"]["build"]["target"] == "simulator"
    for service in services.values():
        assert ":" in service["image"] and not service["image"].endswith(":latest")


def mounted(service: dict, target: str) -> Path:
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def test_prometheus_loads_the_alert_rules_and_scrapes_every_service() -> None:
    prometheus = rendered()["services"]["prometheus"]
    config_path = mounted(prometheus, "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/alerts.yml"]
    assert mounted(prometheus, "/etc/prometheus/rules/alerts.yml") == ROOT / "deploy/prometheus/alerts.yml"
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    for name, port in zip(ENGINE, (8000, 8001, 8002, 8003), strict=True):
        assert jobs[name] == {"names": [name], "type": "A", "port": port}


def test_promtool_accepts_the_monitoring_profiles_prometheus_config(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    (tmp_path / "alerts.yml").write_text((ROOT / "deploy/prometheus/alerts.yml").read_text())
    config = (ROOT / "deploy/compose/prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/rules/alerts.yml", str(tmp_path / "alerts.yml"))
    )
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = (ROOT / "deploy/prometheus/alerts.yml").read_text().count("- alert:")
    assert f"SUCCESS: {alerts} rules found" in result.stdout


def test_grafana_provisions_the_dashboard_from_the_mounted_directory() -> None:
    grafana = rendered()["services"]["grafana"]
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    dashboard = mounted(grafana, "/var/lib/grafana/dashboards/wce-overview.json")
    assert dashboard == ROOT / "deploy/grafana/wce-overview.json"
    provider = yaml.safe_load((provisioning / "dashboards/wce.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_agrees_when_the_compose_plugin_is_present(tmp_path: Path) -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    refused = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert refused.returncode != 0 and "WCE_" in refused.stderr
    accepted = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--profile",
            "dev",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env={**env, **SECRETS},
        cwd=tmp_path,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "twilio-sim" in json.loads(accepted.stdout)["services"]
