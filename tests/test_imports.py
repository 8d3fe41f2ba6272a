"""The layers: imports go one way (api/workers -> synthgen), synthgen/cli/ alone may start api/
or workers/, and no module of synthgen/ takes part in an import cycle.

Every import statement counts, wherever it is (top level, inside a function, under
``TYPE_CHECKING``): a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = ("api", "workers")
MAY_START_SERVICE = "synthgen.cli"


def module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules ``name`` imports: ``from a import b`` is ``a.b`` where that is a module."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")
                parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component."""
    inside = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(inside[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(inside):
        if v not in index:
            connect(v)
    found = []
    for component in components:
        start = min(component)
        path, seen = [start], {start}
        while True:  # walk inside the component until a module repeats
            nxt = min(w for w in inside[path[-1]] if w in component)
            if nxt in seen:
                found.append([*path[path.index(nxt):], nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return found


def service_imports(graph: dict[str, set[str]]) -> list[str]:
    """``module -> api...`` lines for each import of api/ or workers/ outside synthgen/cli/."""
    return sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if not (module == MAY_START_SERVICE or module.startswith(MAY_START_SERVICE + "."))
        for dep in deps
        if dep.split(".")[0] in SERVICE_PACKAGES
    )


@pytest.fixture(scope="module")
def synthgen_graph() -> dict[str, set[str]]:
    return import_graph(ROOT, "synthgen")


def test_no_import_cycle_in_synthgen(synthgen_graph: dict[str, set[str]]) -> None:
    found = cycles(synthgen_graph)
    assert found == [], "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_only_synthgen_cli_imports_api_or_workers(synthgen_graph: dict[str, set[str]]) -> None:
    assert service_imports(synthgen_graph) == []
    # ... and the CLI does start them (the walker sees lazy imports).
    assert {"api.main", "workers.celery_app"} <= synthgen_graph["synthgen.cli.service"]


def test_api_and_workers_never_import_the_cli() -> None:
    for package in SERVICE_PACKAGES:
        for module, deps in import_graph(ROOT, package).items():
            assert not any(d.startswith(MAY_START_SERVICE) for d in deps), module


def test_the_walker_finds_a_cycle_and_a_service_import(tmp_path: Path) -> None:
    """The checks above can fail: a planted cycle (through a lazy, relative import) and a
    planted api import are found."""
    pkg = tmp_path / "synthgen"
    (pkg / "service").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "service" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from synthgen import b\n")
    (pkg / "b.py").write_text("def f():\n    from .service import jobs\n")
    (pkg / "service" / "jobs.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from synthgen.a import x\n"
        "import api.main\n")
    graph = import_graph(tmp_path, "synthgen")
    assert cycles(graph) == [["synthgen.a", "synthgen.b", "synthgen.service.jobs",
                              "synthgen.a"]]
    assert service_imports(graph) == ["synthgen.service.jobs -> api.main"]
