"""The Dockerfile builds what Kubernetes and a careful operator expect, checked without a Docker
engine: stages and targets, a pinned base, a numeric user, the CLI in the engine image, the
simulator only in its own target, 0.0.0.0 inside the container, OCI labels, and a build context
that leaves the virtualenv and the history out."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in instructions():
        if keyword == "FROM":
            current = rest.split(" AS ")[-1].strip()
            result[current] = [(keyword, rest)]
        elif current is not None:
            result[current].append((keyword, rest))
    return result


def build_args() -> dict[str, str]:
    return dict(rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest)


def test_the_image_is_multi_stage_with_the_engine_as_default_and_the_simulator_apart() -> None:
    names = list(stages())
    assert {"build", "runtime", "simulator", "engine"} <= set(names)
    assert names[-1] == "engine", "the last stage is what a plain `docker build .` produces"
    assert stages()["engine"][0][1].startswith("runtime AS")
    assert stages()["simulator"][0][1].startswith("runtime AS")


def test_the_base_image_is_pinned_to_a_patch_release() -> None:
    base = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in stages()["runtime"] if keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users
    for stage in ("engine", "simulator"):
        assert not [rest for keyword, rest in stages()[stage] if keyword == "USER"]


def test_the_engine_listens_on_every_interface_of_its_container() -> None:
    env = " ".join(rest for keyword, rest in stages()["runtime"] if keyword == "ENV")
    assert "WCE_HTTP_HOST=0.0.0.0" in env


def test_the_engine_image_has_the_cli_and_not_the_simulator() -> None:
    build = " ".join(f"{keyword} {rest}" for keyword, rest in stages()["build"])
    assert "COPY wce_cli ./wce_cli" in build
    assert 'mv "$site/tools" /opt/sim/tools' in build
    engine = " ".join(rest for _, rest in stages()["engine"])
    assert "/opt/sim" not in engine
    simulator = " ".join(f"{keyword} {rest}" for keyword, rest in stages()["simulator"])
    assert "COPY --from=build /opt/sim/tools" in simulator and "tools.twilio_sim" in simulator
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["wce"].startswith("wce_cli.")
    assert "wce_cli*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    imports = {
        line.split()[1].split(".")[0]
        for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py"), *ROOT.glob("wce_cli/*.py")]
        for line in path.read_text().splitlines()
        if line.startswith(("from ", "import "))
    }
    assert "tools" not in imports, "the engine image has no tools package"


def test_every_stage_image_has_oci_labels_and_health_checks() -> None:
    labels = " ".join(rest for keyword, rest in stages()["runtime"] if keyword == "LABEL")
    for key in ("title", "description", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    for stage, path in (("engine", "/healthz"), ("simulator", "8010/healthz")):
        checks = [rest for keyword, rest in stages()[stage] if keyword == "HEALTHCHECK"]
        assert checks and path in checks[0]


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            pattern = line.lstrip("!").rstrip("/")
            regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
            rules.append((re.compile(regex + r"\Z"), negate))
    parts = path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for regex, negate in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_the_build_context_leaves_out_the_virtualenv_history_and_caches() -> None:
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/test_x.py",
        "bench/results/latest.json",
        "shared/__pycache__/db.cpython-311.pyc",
        ".env",
        "var/log.txt",
        "deploy/k8s/x.yaml",
    ):
        assert dockerignore_excludes(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "shared/db.py",
        "shared/migrations/0001_init.sql",
        "services/sender/app.py",
        "wce_cli/app.py",
        "tools/twilio_sim/app.py",
    ):
        assert not dockerignore_excludes(path), path
    copied = [rest.split()[0] for keyword, rest in stages()["build"] if keyword == "COPY"]
    for source in copied:
        assert not dockerignore_excludes(source), f"{source} is copied but left out of the context"
