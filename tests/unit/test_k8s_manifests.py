"""deploy/k8s renders and is what an operator can apply: each overlay renders with
`kubectl kustomize`, every object validates against the Kubernetes API schemas of a pinned
version and the operators' CRD schemas (tests/contracts, unknown fields refused), and the
policies hold — probes, limits, a numeric non-root user, pinned images, every setting provided,
only the flows and routes the engine needs."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet

from shared import topology
from shared.settings import ConsoleSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
CONTRACTS = ROOT / "tests/contracts"
OVERLAYS = ("dev", "production")
ENGINE = ("segmenter", "tracker", "dispatcher", "sender")
SECRET_SETTINGS = {"WCE_DATABASE_URL", "WCE_AMQP_URL", "WCE_ENCRYPTION_KEYS", "WCE_OPERATOR_TOKEN"}
SETTINGS = {f"WCE_{name.upper()}" for name in Settings.model_fields}
# Settings whose default is right where they are absent, with the reason.
MAY_BE_ABSENT = {
    "WCE_MIGRATION_DATABASE_URL": "only the migration Job migrates (WCE_MIGRATE_AT_START=false)",
    "WCE_DB_MAX_CONNECTIONS": "without a pooler the budget reads the server's limit",
    "WCE_CLOCK_OFFSET_FILE": "tests move the clock with it; refused outside development",
}

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [doc for doc in render(overlay) if kind is None or doc["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in objects(overlay, kind) if doc["metadata"]["name"] == name]
    assert matches, f"{overlay}: no {kind} {name}"
    return matches[0]


def workloads(overlay: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every Deployment, StatefulSet, Job and CronJob."""
    for doc in render(overlay):
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob"):
            yield doc, pod_template(doc)["spec"]


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    template: dict[str, Any] = spec["template"]
    return template


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


# --- schemas -------------------------------------------------------------------------------------


@cache
def kubernetes_schemas() -> dict[str, Any]:
    [path] = CONTRACTS.glob("kubernetes-v*-strict.schema.json")
    return json.loads(path.read_text())


def strict(schema: Any) -> Any:
    """An operator's CRD schema as `kubectl apply --validate=strict` applies it: fields the schema
    does not name are refused, except where it preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def crd_schemas() -> dict[str, Any]:
    schemas = {}
    for path in CONTRACTS.glob("crd-*.schema.json"):
        schema = json.loads(path.read_text())
        gvk = schema.pop("x-kubernetes-group-version-kind")
        schemas[f"{gvk['group']}/{gvk['version']}/{gvk['kind']}"] = strict(schema)
    return schemas


def validation_errors(doc: dict[str, Any]) -> list[str]:
    key = f"{doc['apiVersion']}/{doc['kind']}"
    bundle = kubernetes_schemas()
    if key in bundle["kinds"]:
        schema: dict[str, Any] = {"$defs": bundle["$defs"], "$ref": bundle["kinds"][key]}
        validator: Any = jsonschema.Draft202012Validator(schema)
    elif key in crd_schemas():
        validator = jsonschema.Draft7Validator(crd_schemas()[key])
    else:
        return [f"no schema for {key}: vendor it under tests/contracts (see its README)"]
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    return [
        f"{name} at {'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_the_overlay_validates_against_its_schema(overlay: str) -> None:
    errors = [error for doc in render(overlay) for error in validation_errors(doc)]
    assert not errors, "\n".join(errors)


@needs_kubectl
def test_the_schemas_refuse_a_misspelt_field_and_a_wrong_type() -> None:
    deployment = json.loads(json.dumps(named("production", "Deployment", "wce-sender")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert any("livenesProbe" in error for error in validation_errors(deployment))
    cluster = json.loads(json.dumps(named("production", "RabbitmqCluster", "wce-rabbitmq")))
    cluster["spec"]["replica"] = 3
    assert any("replica" in error for error in validation_errors(cluster))
    pooler = json.loads(json.dumps(named("production", "Pooler", "wce-postgres-pooler")))
    pooler["spec"]["pgbouncer"]["poolMode"] = "statement-ish"
    assert validation_errors(pooler)


# --- policies ------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_limits_a_numeric_non_root_user_and_a_pinned_image(overlay: str) -> None:
    for doc, pod in workloads(overlay):
        pod_security = pod.get("securityContext", {})
        for container in containers(pod):
            where = f"{overlay} {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert (tag and tag != "latest" and "@" not in tag) or "@sha256:" in image, f"{where}: {image}"
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                assert kind in resources.get("limits", {}), f"{where}: no {kind} limit"
                assert kind in resources.get("requests", {}), f"{where}: no {kind} request"
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, where
            assert isinstance(security.get("runAsUser"), int) and security["runAsUser"] > 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            if doc["kind"] not in ("Job", "CronJob"):
                assert "livenessProbe" in container and "readinessProbe" in container, f"{where}: probes"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_engine_pods_are_locked_down_and_spread(overlay: str) -> None:
    for name in ENGINE:
        pod = named(overlay, "Deployment", f"wce-{name}")["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        [container] = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["command"] == ["python", "-m", f"services.{name}"]
        keys = {constraint["topologyKey"] for constraint in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        pdb = named(overlay, "PodDisruptionBudget", f"wce-{name}")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(overlay, f"wce-{name}").items()
    account = named(overlay, "ServiceAccount", "wce")
    assert account["automountServiceAccountToken"] is False


def pod_labels(overlay: str, deployment: str) -> dict[str, str]:
    return named(overlay, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def test_the_base_settings_name_every_setting_but_the_secrets_and_nothing_else() -> None:
    lines = (K8S / "base/settings.env").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    missing = SETTINGS - SECRET_SETTINGS - MAY_BE_ABSENT.keys() - names
    assert not missing, f"add {sorted(missing)} to deploy/k8s/base/settings.env (with its default)"
    assert not names - SETTINGS, f"deploy/k8s/base/settings.env names unknown settings {names - SETTINGS}"
    assert not names & SECRET_SETTINGS, "secrets belong in Secrets, not in the ConfigMap"


def container_environment(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    """Names the container gets, each with where it comes from; `$(VAR)` references resolved
    against the variables defined before them, as the kubelet does."""
    found: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = named(overlay, "ConfigMap", source["configMapRef"]["name"])
        found.update({key: f"configmap {value}" for key, value in config_map["data"].items()})
    for variable in container.get("env", []):
        if "value" in variable:
            for reference in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", variable["value"]):
                assert reference in found, f"{variable['name']} uses $({reference}) before it is defined"
            found[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            found[variable["name"]] = f"secret {ref['name']}/{ref['key']}"
    return found


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_services_read_is_provided_to_every_service(overlay: str) -> None:
    for name in ENGINE:
        [container] = named(overlay, "Deployment", f"wce-{name}")["spec"]["template"]["spec"]["containers"]
        environment = container_environment(overlay, container)
        missing = SETTINGS - MAY_BE_ABSENT.keys() - environment.keys()
        assert not missing, f"{overlay} {name} lacks {missing}"
        assert environment["WCE_MIGRATE_AT_START"] == "configmap false"
        if overlay == "production":
            assert "WCE_DB_MAX_CONNECTIONS" in environment, "the pooler's limit"
        unknown = {key for key in environment if key.startswith("WCE_")} - SETTINGS
        assert not unknown, f"{overlay} {name} sets settings no service reads: {unknown}"
        assert environment["WCE_HTTP_HOST"] == "configmap 0.0.0.0"


@needs_kubectl
def test_dev_secrets_hold_every_key_the_pods_read_and_production_uses_the_operators_secrets() -> None:
    secrets = {doc["metadata"]["name"]: doc for doc in objects("dev", "Secret")}
    for _doc, pod in workloads("dev"):
        for container in containers(pod):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = secrets[ref["name"]]
                    assert ref["key"] in {**secret.get("data", {}), **secret.get("stringData", {})}
    [sender] = named("production", "Deployment", "wce-sender")["spec"]["template"]["spec"]["containers"]
    environment = container_environment("production", sender)
    assert environment["WCE_DATABASE_URL"] == "postgresql://wce_sender@wce-postgres-pooler:5432/wce"
    assert environment["PGPASSWORD"] == "secret wce-postgres-sender/password"
    assert environment["WCE_AMQP_URL"] == "secret wce-rabbitmq-default-user/connection_string"
    assert not objects("production", "Secret"), "production secrets are never rendered from the repository"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_the_migrations_on_the_primary_not_through_the_pooler(overlay: str) -> None:
    job = named(overlay, "Job", "wce-migrate")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "shared.migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    environment = container_environment(overlay, container)
    url = environment["WCE_MIGRATION_DATABASE_URL"]
    assert "pooler" not in url
    if overlay == "production":
        assert url == "secret wce-postgres-app/uri"


# --- database roles ------------------------------------------------------------------------------

OWNER = "wce"  # the owner CloudNativePG creates (bootstrap.initdb.owner); its Secret wce-postgres-app
OWNER_SECRET = "wce-postgres-app"


def database_user(environment: dict[str, str]) -> str | None:
    """The role a container connects as: the user of its WCE_DATABASE_URL written out, or the
    owner's when the URL comes from the owner's Secret."""
    source = environment.get("WCE_DATABASE_URL")
    if source is None:
        return None
    if source.startswith("secret "):
        return OWNER if source.startswith(f"secret {OWNER_SECRET}/") else source
    return urlsplit(source).username


def managed_roles() -> dict[str, dict[str, Any]]:
    cluster = named("production", "Cluster", "wce-postgres")["spec"]
    return {role["name"]: role for role in cluster.get("managed", {}).get("roles", [])}


@needs_kubectl
def test_no_production_deployment_but_the_migration_and_vacuum_jobs_uses_the_owners_credentials() -> None:
    # Given every workload production renders
    # When each container's database credentials are traced to their source
    # Then only the migration Job and the audience vacuum job (VACUUM needs the owner) read the
    # owner's Secret, and each service is its own role
    owner_jobs = {("Job", "wce-migrate"), ("CronJob", "wce-audience-vacuum")}
    for doc, pod in workloads("production"):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for container in containers(pod):
            environment = container_environment("production", container)
            owner_secret = [key for key, source in environment.items() if f"secret {OWNER_SECRET}/" in source]
            if (doc["kind"], doc["metadata"]["name"]) in owner_jobs:
                assert owner_secret == ["WCE_MIGRATION_DATABASE_URL"], where
                assert "ports" not in container, f"{where} holds the owner's credentials: it serves nothing"
                continue
            assert not owner_secret, f"{where} reads the owner's Secret: {owner_secret}"
            assert "WCE_MIGRATION_DATABASE_URL" not in environment, where
            user = database_user(environment)
            assert user != OWNER, f"{where} connects as the owner {OWNER}"
    for name in ENGINE:
        pod = named("production", "Deployment", f"wce-{name}")["spec"]["template"]["spec"]
        [container] = pod["containers"]
        environment = container_environment("production", container)
        assert database_user(environment) == f"wce_{name}", f"{name} connects as its own runtime role"
        assert environment["PGPASSWORD"] == f"secret wce-postgres-{name}/password"
        assert urlsplit(environment["WCE_DATABASE_URL"]).hostname == "wce-postgres-pooler"


@needs_kubectl
def test_every_runtime_role_a_deployment_uses_is_declared_with_its_cross_tenant_role() -> None:
    # Given the roles the CloudNativePG Cluster declares
    roles = managed_roles()
    # When each Deployment's role is looked up among them
    # Then it logs in with the password the pod reads and may switch to its cross-tenant role
    pooler = named("production", "Pooler", "wce-postgres-pooler")["spec"]
    assert "authQuerySecret" not in pooler.get("pgbouncer", {}), "the operator's auth_query finds the roles"
    for doc, pod in workloads("production"):
        for container in containers(pod):
            environment = container_environment("production", container)
            user = database_user(environment)
            if user is None or doc["kind"] in ("Job", "CronJob"):
                continue
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            # The pooler's auth_query (pg_shadow) only finds a role that logs in with a password,
            # and the password the pod reads is the one the operator sets.
            assert user in roles, f"{where} connects as {user}, which managed.roles does not declare"
            role = roles[user]
            assert role.get("login") is True and role.get("ensure", "present") == "present", where
            assert not role.get("superuser") and not role.get("bypassrls"), f"{user} skips row-level security"
            assert not role.get("createrole") and not role.get("createdb"), user
            secret = role["passwordSecret"]["name"]
            assert environment["PGPASSWORD"] == f"secret {secret}/password", where
            # Migration 1000 needs the cross-tenant role to exist and the runtime role to be a
            # member of it; the owner, no superuser, can create neither.
            cross_tenant = f"{user}_all_tenants"
            assert role.get("inRoles") == [cross_tenant], user
            assert roles[cross_tenant].get("bypassrls") is True, cross_tenant
            assert roles[cross_tenant].get("login") is False, f"{cross_tenant} never logs in"
            assert "passwordSecret" not in roles[cross_tenant], cross_tenant
    declared_runtime = {name for name in roles if not name.endswith("_all_tenants")}
    assert declared_runtime == {f"wce_{name}" for name in ENGINE}, "the roles of migration 0850"
    migration = (ROOT / "shared/migrations/0850_service_roles.sql").read_text()
    for name in declared_runtime:
        assert f"'{name}'" in migration, f"{name} is not a role the migrations grant to"


def test_the_policy_refuses_a_deployment_connected_as_the_owner() -> None:
    # Given a container connected through the pooler as the owner, or with the owner's Secret
    written_out = {"WCE_DATABASE_URL": "postgresql://wce@wce-postgres-pooler:5432/wce"}
    from_secret = {"WCE_DATABASE_URL": f"secret {OWNER_SECRET}/uri"}
    runtime = {"WCE_DATABASE_URL": "postgresql://wce_sender@wce-postgres-pooler:5432/wce"}
    # When the policy reads their role / Then it names the owner for both, and the runtime role
    assert database_user(written_out) == OWNER
    assert database_user(from_secret) == OWNER
    assert database_user(runtime) == "wce_sender"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_budgets_select_pods_that_exist_on_named_ports(overlay: str) -> None:
    pods = [(pod_template(doc)["metadata"]["labels"], pod) for doc, pod in workloads(overlay)]
    for service in objects(overlay, "Service"):
        selector = service["spec"]["selector"]
        matching = [pod for labels, pod in pods if selector.items() <= labels.items()]
        assert matching, f"Service {service['metadata']['name']} selects no pod"
        port_names = {
            port["name"] for pod in matching for c in pod["containers"] for port in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{service['metadata']['name']}: {port}"


# --- network policies and ingress ----------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
    return True


def allowed_egress(overlay: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        rule
        for policy in objects(overlay, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("egress", [])
    ]


def egress_ports(rules: list[dict[str, Any]], peer_labels: dict[str, str]) -> set[int]:
    ports: set[int] = set()
    for rule in rules:
        for peer in rule.get("to", []):
            if "podSelector" in peer and selects(peer["podSelector"], peer_labels):
                ports |= {port["port"] for port in rule.get("ports", [])}
    return ports


@needs_kubectl
def test_network_policies_allow_the_database_the_broker_twilio_and_webhook_endpoints_only() -> None:
    database = named("dev", "StatefulSet", "wce-postgres")["spec"]["template"]["metadata"]["labels"]
    broker = named("dev", "StatefulSet", "wce-rabbitmq")["spec"]["template"]["metadata"]["labels"]
    simulator = named("dev", "Deployment", "wce-twilio-sim")["spec"]["template"]["metadata"]["labels"]
    for name in ENGINE:
        rules = allowed_egress("dev", pod_labels("dev", f"wce-{name}"))
        assert egress_ports(rules, database) == {5432}, name
        assert egress_ports(rules, broker) == {5672}, name
        assert egress_ports(rules, simulator) == ({8010} if name in ("segmenter", "sender") else set()), name
        external = [rule for rule in rules for peer in rule.get("to", []) if "ipBlock" in peer]
        # Twilio for the segmenter and the senders; tenants' webhook endpoints for the tracker.
        if name in ("segmenter", "sender", "tracker"):
            assert [port["port"] for rule in external for port in rule["ports"]] == [443]
            assert "10.0.0.0/8" in external[0]["to"][0]["ipBlock"]["except"]
        else:
            assert not external, f"{name} may not reach outside the cluster"
    job_labels = named("dev", "Job", "wce-migrate")["spec"]["template"]["metadata"]["labels"]
    assert egress_ports(allowed_egress("dev", job_labels), broker) == set()
    default_deny = named("dev", "NetworkPolicy", "wce-default-deny")["spec"]
    assert default_deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in default_deny
    production_pods = [
        named("production", "Cluster", "wce-postgres")["spec"]["inheritedMetadata"]["labels"],
        named("production", "Pooler", "wce-postgres-pooler")["spec"]["template"]["metadata"]["labels"],
    ]
    for labels in production_pods:
        assert labels["wce.io/database"] == "true"
    override = named("production", "RabbitmqCluster", "wce-rabbitmq")["spec"]["override"]
    assert override["statefulSet"]["spec"]["template"]["metadata"]["labels"]["wce.io/broker"] == "true"


def segmenter_routes() -> list[str]:
    from services.segmenter.app import create_app

    return sorted(create_app(Settings()).openapi()["paths"])


@needs_kubectl
def test_the_ingress_exposes_the_tenant_api_and_the_webhooks_over_tls_and_nothing_else() -> None:
    ingress = named("production", "Ingress", "wce")["spec"]
    hosts = {rule["host"]: rule["http"]["paths"] for rule in ingress["rules"]}
    assert set(ingress["tls"][0]["hosts"]) == set(hosts)
    backends = {
        (host, path["path"]): path["backend"]["service"]["name"]
        for host, paths in hosts.items()
        for path in paths
    }
    for (_host, path), service in backends.items():
        assert not path.startswith(("/v1/operator", "/metrics", "/docs", "/healthz", "/readyz", "/admin"))
        assert path != "/", "no catch-all route"
        assert service in {"wce-segmenter", "wce-tracker"}
    api = [path for (host, path), service in backends.items() if service == "wce-segmenter"]
    for route in segmenter_routes():
        exposed = any(
            route == prefix or route.startswith(prefix + "/") or route.startswith(prefix + ":")
            for prefix in api
        )
        assert exposed == (not route.startswith("/v1/operator")), route
    tracker = {path for (host, path), service in backends.items() if service == "wce-tracker"}
    assert tracker == {"/twilio", "/v1/campaigns"}
    [tracker_host] = {host for (host, _), service in backends.items() if service == "wce-tracker"}
    settings = named("production", "ConfigMap", production_settings_name())["data"]
    assert settings["WCE_PUBLIC_BASE_URL"] == f"https://{tracker_host}"


def production_settings_name() -> str:
    [name] = [
        doc["metadata"]["name"]
        for doc in objects("production", "ConfigMap")
        if doc["metadata"]["name"].startswith("wce-settings")
    ]
    return name


# --- production operators ------------------------------------------------------------------------


@needs_kubectl
def test_production_runs_three_broker_nodes_three_database_instances_and_a_transaction_pooler() -> None:
    assert named("production", "RabbitmqCluster", "wce-rabbitmq")["spec"]["replicas"] == 3
    cluster = named("production", "Cluster", "wce-postgres")["spec"]
    assert cluster["instances"] == 3
    pooler = named("production", "Pooler", "wce-postgres-pooler")["spec"]
    assert pooler["cluster"]["name"] == "wce-postgres" and pooler["type"] == "rw"
    assert pooler["pgbouncer"]["poolMode"] == "transaction"


@needs_kubectl
def test_keda_scales_senders_on_the_send_queue_and_the_tracker_on_the_status_queue() -> None:
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]: doc["spec"] for doc in objects("production", "ScaledObject")
    }
    assert set(scaled) == {"wce-sender", "wce-tracker"}
    queues = {name: spec["triggers"][0]["metadata"]["queueName"] for name, spec in scaled.items()}
    assert queues == {"wce-sender": topology.SEND_QUEUE, "wce-tracker": topology.STATUS_QUEUE}
    for name, spec in scaled.items():
        assert spec["triggers"][0]["type"] == "rabbitmq"
        assert spec["minReplicaCount"] >= 2
        assert "replicas" not in named("production", "Deployment", name)["spec"], "KEDA owns the count"
        auth = named("production", "TriggerAuthentication", spec["triggers"][0]["authenticationRef"]["name"])
        assert auth["spec"]["secretTargetRef"][0]["name"] == "wce-rabbitmq-default-user"


def test_the_prometheus_rule_and_the_dashboard_match_their_sources() -> None:
    from scripts.render_k8s_monitoring import DASHBOARD, DASHBOARD_COPY, RULE_FILE, prometheus_rule

    hint = "run `python -m scripts.render_k8s_monitoring`"
    assert RULE_FILE.read_text() == prometheus_rule(), hint
    assert DASHBOARD_COPY.read_text() == DASHBOARD.read_text(), hint
    rule = yaml.safe_load(RULE_FILE.read_text())
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]


@needs_kubectl
def test_production_monitors_every_service_and_ships_the_dashboard_to_grafana() -> None:
    [monitor] = objects("production", "ServiceMonitor")
    for name in ENGINE:
        service = named("production", "Service", f"wce-{name}")
        assert selects(monitor["spec"]["selector"], service["metadata"]["labels"]), name
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    dashboard = named("production", "ConfigMap", "wce-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["wce-overview.json"])["uid"] == "wce-overview"
    assert named("production", "PrometheusRule", "wce-alerts")["spec"]["groups"]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_accept_the_settings_each_overlay_gives_them(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Production's secrets are created by the operator and the operators; stand-ins of their shape.
    stand_ins = {
        "wce-secrets/encryption-keys": Fernet.generate_key().decode(),
        "wce-secrets/operator-token": "an-operator-token-that-is-long-enough-0123",
        **{f"wce-postgres-{name}/password": f"{name}-password" for name in ENGINE},
        "wce-postgres-app/uri": "postgresql://wce:pg-password@wce-postgres-rw.wce:5432/wce",
        "wce-rabbitmq-default-user/connection_string": "amqp://user:pass@wce-rabbitmq.wce.svc:5672/",
    }
    secrets = {doc["metadata"]["name"]: doc for doc in objects(overlay, "Secret")}
    pods = [named(overlay, "Deployment", f"wce-{name}") for name in ENGINE]
    for workload in [*pods, named(overlay, "Job", "wce-migrate")]:
        [container] = workload["spec"]["template"]["spec"]["containers"]
        for key in [key for key in os.environ if key.startswith("WCE_")]:
            monkeypatch.delenv(key)
        for key, source in container_environment(overlay, container).items():
            value = source
            if source.startswith("configmap "):
                value = source.removeprefix("configmap ")
            elif source.startswith("secret "):
                secret_name, _, secret_key = source.removeprefix("secret ").partition("/")
                if secret_name in secrets:
                    value = base64.b64decode(secrets[secret_name]["data"][secret_key]).decode()
                else:
                    value = stand_ins[f"{secret_name}/{secret_key}"]
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.migrate_at_start is False
        assert settings.http_host == "0.0.0.0"
        assert settings.environment == ("development" if overlay == "dev" else "production")


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_gets_its_own_settings_and_none_of_the_engines_secrets(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [container] = named(overlay, "Deployment", "wce-console")["spec"]["template"]["spec"]["containers"]
    environment = container_environment(overlay, container)
    assert not (SECRET_SETTINGS | {"PGPASSWORD"}) & environment.keys()
    assert set(environment) == {f"WCE_{name.upper()}" for name in ConsoleSettings.model_fields}
    assert re.fullmatch(
        r"secret wce-console-secrets(-\w+)?/session-keys", environment["WCE_CONSOLE_SESSION_KEYS"]
    )
    secrets = {doc["metadata"]["name"]: doc for doc in objects(overlay, "Secret")}
    for key in [key for key in os.environ if key.startswith("WCE_")]:
        monkeypatch.delenv(key)
    for key, source in environment.items():
        if source.startswith("secret "):
            name, _, secret_key = source.removeprefix("secret ").partition("/")
            value = (
                base64.b64decode(secrets[name]["data"][secret_key]).decode()
                if name in secrets
                else Fernet.generate_key().decode()
            )
        else:
            value = source.removeprefix("configmap ")
        monkeypatch.setenv(key, value)
    settings = ConsoleSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.console_cookie_secure is True
    assert settings.console_api_url == "http://wce-segmenter:8000"
    assert settings.console_tracker_url == "http://wce-tracker:8001"


@needs_kubectl
def test_the_console_reaches_the_two_apis_and_nothing_else_and_they_accept_it() -> None:
    console = pod_labels("dev", "wce-console")
    rules = allowed_egress("dev", console)
    peers = {
        "segmenter": pod_labels("dev", "wce-segmenter"),
        "tracker": pod_labels("dev", "wce-tracker"),
        "database": named("dev", "StatefulSet", "wce-postgres")["spec"]["template"]["metadata"]["labels"],
        "broker": named("dev", "StatefulSet", "wce-rabbitmq")["spec"]["template"]["metadata"]["labels"],
        "simulator": named("dev", "Deployment", "wce-twilio-sim")["spec"]["template"]["metadata"]["labels"],
    }
    assert {name: egress_ports(rules, labels) for name, labels in peers.items()} == {
        "segmenter": {8000},
        "tracker": {8001},
        "database": set(),
        "broker": set(),
        "simulator": set(),
    }
    assert not [peer for rule in rules for peer in rule.get("to", []) if "ipBlock" in peer]
    for api in ("segmenter", "tracker"):
        admitted = [
            peer
            for policy in objects("dev", "NetworkPolicy")
            if selects(policy["spec"]["podSelector"], peers[api])
            for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", [])
            if "podSelector" in peer and selects(peer["podSelector"], console)
        ]
        assert admitted, f"the {api} refuses the console's calls"
    [monitor] = objects("production", "ServiceMonitor")
    expressions = monitor["spec"]["selector"]["matchExpressions"]
    assert {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["console"]} in expressions
    ingress = named("production", "Ingress", "wce-console")["spec"]
    assert ingress["tls"][0]["hosts"] == [rule["host"] for rule in ingress["rules"]]
