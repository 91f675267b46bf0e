"""The suite's own layout: pytest imports test modules outside packages by their file name, so two
such modules with one name stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _import_name(module: Path) -> str:
    parts = [module.stem]
    folder = module.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def test_every_test_module_has_an_import_name_of_its_own() -> None:
    names = Counter(_import_name(path) for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
