"""Installs are reproducible: every dependency is pinned in pyproject.toml and locked with hashes,
every package the code imports is declared (runtime code needs only runtime dependencies), nothing
declared goes unused, and the licence is both a file and package metadata."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_CODE = ("shared", "services", "tools", "wce_cli")
# scripts/ is not packaged: the demo and maintenance scripts run from a development install.
DEVELOPMENT_CODE = ("tests", "bench", "scripts")
FIRST_PARTY = {"shared", "services", "tools", "wce_cli", "scripts", "tests", "bench"}
# Test helpers imported by sibling test modules by their bare name (a module file of the folder).
LOCAL_MODULES = {path.stem for folder in DEVELOPMENT_CODE for path in (ROOT / folder).rglob("*.py")}
# Needed without being imported: stubs for the type checker.
NOT_IMPORTED = {"types-pyyaml"}
# Runtime dependencies another dependency imports on the project's behalf: Starlette's form
# parser (the console's forms and CSV upload) imports python-multipart when a form is read;
# httpcore (the outbound webhook client) imports sniffio whenever it makes a lock — absent, every
# such import searches the whole path again (a fifth of the client's time per delivery, measured).
IMPORTED_FOR_US = {"python-multipart", "sniffio"}
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)$")
LOCKED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(requirements: list[str]) -> dict[str, str]:
    pinned = {}
    for requirement in requirements:
        match = PIN.match(requirement)
        assert match, f"{requirement!r} in pyproject.toml is not pinned with == to one version"
        pinned[normalise(match.group(1))] = match.group(3)
    return pinned


def lock(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {normalise(m.group(1)): m.group(2) for m in map(LOCKED.match, text.splitlines()) if m}


@cache
def distributions_of_modules() -> dict[str, list[str]]:
    return {module: [normalise(d) for d in dists] for module, dists in packages_distributions().items()}


def imported_modules(folders: tuple[str, ...]) -> dict[str, str]:
    """Top-level modules imported by the code in ``folders``, each with one file importing it."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def third_party(modules: dict[str, str]) -> dict[str, str]:
    skip = FIRST_PARTY | LOCAL_MODULES | set(sys.stdlib_module_names)
    return {module: where for module, where in modules.items() if module not in skip}


def test_every_dependency_is_pinned_and_locked_at_the_same_version_with_hashes() -> None:
    runtime = pins(project()["dependencies"])
    development = pins(project()["optional-dependencies"]["dev"])
    runtime_lock, development_lock = lock("requirements.lock"), lock("requirements-dev.lock")
    for name, version in runtime.items():
        assert runtime_lock.get(name) == version, f"{name}=={version}: run `make lock`"
    for name, version in {**runtime, **development}.items():
        assert development_lock.get(name) == version, f"{name}=={version}: run `make lock`"
    for name, version in runtime_lock.items():
        assert development_lock.get(name) == version, f"the two lock files disagree on {name}"
    for name in ("requirements.lock", "requirements-dev.lock"):
        entries = re.split(r"\n(?=[A-Za-z])", (ROOT / name).read_text())
        unhashed = [entry.split()[0] for entry in entries if "==" in entry and "--hash=sha256:" not in entry]
        assert not unhashed, f"{name} has entries without a hash: {unhashed}"


def test_installs_use_the_lock_files_with_hash_checking() -> None:
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "make install" in (ROOT / ".ci/run").read_text()


def test_runtime_code_imports_only_declared_runtime_dependencies() -> None:
    declared = set(pins(project()["dependencies"]))
    undeclared = {
        module: where
        for module, where in third_party(imported_modules(RUNTIME_CODE)).items()
        if not set(distributions_of_modules().get(module, [module])) & declared
    }
    assert not undeclared, f"imported but not a runtime dependency in pyproject.toml: {undeclared}"


def test_tests_and_benchmarks_import_only_declared_dependencies() -> None:
    declared = set(pins(project()["dependencies"])) | set(pins(project()["optional-dependencies"]["dev"]))
    undeclared = {
        module: where
        for module, where in third_party(imported_modules(DEVELOPMENT_CODE)).items()
        if not set(distributions_of_modules().get(module, [module])) & declared
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_imported() -> None:
    runtime = set(pins(project()["dependencies"]))
    development = set(pins(project()["optional-dependencies"]["dev"]))
    used_at_runtime = {
        dist
        for module in imported_modules(RUNTIME_CODE)
        for dist in distributions_of_modules().get(module, [])
    }
    used_anywhere = used_at_runtime | {
        dist
        for module in imported_modules(DEVELOPMENT_CODE)
        for dist in distributions_of_modules().get(module, [])
    }
    unused_runtime = sorted(runtime - used_at_runtime - IMPORTED_FOR_US)
    assert not unused_runtime, f"runtime dependencies the services never import: {unused_runtime}"
    tools = {"mypy", "ruff", "pytest-asyncio", "pytest-timeout", "honcho"}
    unused = sorted(development - used_anywhere - tools - NOT_IMPORTED)
    assert not unused, f"development dependencies nothing imports: {unused}"


def test_the_project_carries_its_licence() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    assert project()["license"] == "MIT"
    assert "LICENSE" in project()["license-files"]
