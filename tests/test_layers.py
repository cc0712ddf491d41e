"""Imports go downward only: the portals layer (and the project package) never imports the events app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_portals_and_the_project_never_import_the_events_app():
    modules = [
        path
        for package in ("portals", "bitrix_app")
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]
    assert len(modules) > 40
    upward = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules
        for name in imported_modules(path)
        if name == "events" or name.startswith("events.")
    }
    assert upward == set()


def test_the_scan_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from events.tasks import x\n")
    assert "events.tasks" in imported_modules(module)
