"""How the Kubernetes and operator schemas in this directory were made (not run by the tests).

    python tests/contracts/vendor_k8s_schemas.py KUBERNETES_SCHEMA_DIR CRD.yaml...

KUBERNETES_SCHEMA_DIR is the ``v<version>-local-strict`` directory of JSON schemas that the
kubernetes-validate package ships (one file per kind plus ``_definitions.json``); each CRD file is
an operator's CustomResourceDefinition at a released tag. Only the kinds the manifests use are
kept, with only the definitions they reach, and descriptions are dropped to keep the files small:
``kubernetes-<version>-strict.schema.json`` and one ``crd-<group>-<kind>-<version>.schema.json`` per kind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

# (apiVersion, kind) -> definition name, for every built-in kind the manifests use.
KUBERNETES_KINDS = {
    ("v1", "Namespace"): "io.k8s.api.core.v1.Namespace",
    ("v1", "ServiceAccount"): "io.k8s.api.core.v1.ServiceAccount",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("v1", "Secret"): "io.k8s.api.core.v1.Secret",
    ("v1", "Service"): "io.k8s.api.core.v1.Service",
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("apps/v1", "StatefulSet"): "io.k8s.api.apps.v1.StatefulSet",
    ("batch/v1", "Job"): "io.k8s.api.batch.v1.Job",
    ("batch/v1", "CronJob"): "io.k8s.api.batch.v1.CronJob",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "io.k8s.api.networking.v1.NetworkPolicy",
    ("networking.k8s.io/v1", "Ingress"): "io.k8s.api.networking.v1.Ingress",
}
REF_PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")


def strip_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: strip_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def rewrite_refs(node: Any, found: set[str]) -> Any:
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            prefix = next((p for p in REF_PREFIXES if isinstance(value, str) and value.startswith(p)), None)
            if key == "$ref" and prefix is not None:
                name = value[len(prefix) :]
                found.add(name)
                result[key] = f"#/$defs/{name}"
            else:
                result[key] = rewrite_refs(value, found)
        return result
    if isinstance(node, list):
        return [rewrite_refs(item, found) for item in node]
    return node


def kubernetes_bundle(schema_dir: Path) -> dict[str, Any]:
    definitions = json.loads((schema_dir / "_definitions.json").read_text())["$defs"]
    wanted = list(KUBERNETES_KINDS.values())
    kept: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in kept:
            continue
        found: set[str] = set()
        kept[name] = rewrite_refs(strip_descriptions(definitions[name]), found)
        wanted.extend(found - kept.keys())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "kinds": {f"{api}/{kind}": f"#/$defs/{name}" for (api, kind), name in KUBERNETES_KINDS.items()},
        "$defs": dict(sorted(kept.items())),
    }


def crd_schemas(crd_path: Path) -> dict[str, dict[str, Any]]:
    crd = yaml.safe_load(crd_path.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas = {}
    for version in crd["spec"]["versions"]:
        schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
        schema["x-kubernetes-group-version-kind"] = {"group": group, "version": version["name"], "kind": kind}
        schemas[f"crd-{group}-{kind.lower()}-{version['name']}.schema.json"] = schema
    return schemas


def main() -> None:
    schema_dir, *crds = (Path(arg) for arg in sys.argv[1:])
    version = schema_dir.name.split("-")[0]
    (HERE / f"kubernetes-{version}-strict.schema.json").write_text(
        json.dumps(kubernetes_bundle(schema_dir), separators=(",", ":"), sort_keys=False) + "\n"
    )
    for crd in crds:
        for name, schema in crd_schemas(crd).items():
            (HERE / name).write_text(json.dumps(schema, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
