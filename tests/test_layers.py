"""Imports go downward only: the portals layer (and the project package) never imports the events app
or the console."""

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
        if name.split(".")[0] in ("events", "console")  # events never imports the console: a cycle below
    }
    assert upward == set()


def test_the_scan_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from events.tasks import x\n")
    assert "events.tasks" in imported_modules(module)


PACKAGES = ("portals", "events", "examples", "bitrix_app", "console", "mirror", "api")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[dotted.removesuffix(".__init__")] = path
    return found


def _absolute(module: str, node: ast.ImportFrom, *, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def project_imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """The project modules ``module`` imports (relative imports resolved), at module level or anywhere."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level includes `if TYPE_CHECKING:` blocks' siblings, not their bodies
        nodes = [n for n in nodes if isinstance(n, ast.Import | ast.ImportFrom)]
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node, is_package=path.name == "__init__.py")
            names.add(target)
            names |= {f"{target}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] in PACKAGES}


def test_no_function_level_import_of_a_project_module_outside_app_loading():
    """Django's app loading is the one reason: AppConfig.ready() runs once the registry is ready."""
    late = []
    for module, path in _modules().items():
        if path.name == "apps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = ast.Module(body=node.body, type_ignores=[])
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        target = (
                            _absolute(module, sub, is_package=path.name == "__init__.py")
                            if isinstance(sub, ast.ImportFrom)
                            else sub.names[0].name
                        )
                        if target.split(".")[0] in PACKAGES:
                            late.append(f"{path.relative_to(ROOT)}:{sub.lineno} {target}")
    assert late == []


def test_project_modules_import_each_other_without_cycles():
    modules = _modules()
    graph = {
        module: {name for name in project_imports(module, path, top_level_only=True) if name in modules}
        for module, path in modules.items()
    }
    cycle = _find_cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_one():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
