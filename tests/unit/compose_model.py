"""The parts of Compose's semantics the tests check without a Docker engine: variable
interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
``${VAR?error}``, ``$$``) as the Compose specification defines it, and profile selection."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

_PATTERN = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingRequiredVariable(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        empty = not env.get(name)
        if op == ":-":
            return arg if empty else env[name]
        if op == "-":
            return env[name] if present else arg
        if op == ":?":
            if empty:
                raise MissingRequiredVariable(name, arg)
            return env[name]
        if op == "?":
            if not present:
                raise MissingRequiredVariable(name, arg)
            return env[name]
        return env.get(name, "")

    return _PATTERN.sub(replace, value)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def required_variables(node: Any) -> set[str]:
    """Names used as ``${VAR:?…}`` or ``${VAR?…}`` anywhere in the file."""
    found: set[str] = set()
    if isinstance(node, str):
        for match in _PATTERN.finditer(node):
            if match.group("op") in (":?", "?"):
                found.add(match.group("braced"))
    elif isinstance(node, list):
        for item in node:
            found |= required_variables(item)
    elif isinstance(node, dict):
        for value in node.values():
            found |= required_variables(value)
    return found


def active_services(config: Mapping[str, Any], profiles: set[str]) -> set[str]:
    """Services ``docker compose --profile …`` starts: those without profiles, and those with
    one of the given profiles."""
    return {
        name
        for name, service in config["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & profiles
    }
