"""The import graph keeps its shape: no cycles, and each package imports only what it may.

* `interface_spec` is the standard: it imports nothing of ours.
* `simulators` are equipment built on the standard: they import `interface_spec`, never `gateway`
  (a vendor could have written them from the docs alone).
* No import cycles anywhere, counting imports inside functions too (a function-level import that
  only dodges a cycle is still one). Imports under `if TYPE_CHECKING:` are annotations only and
  do not count for cycles; they do count for the layering rules.

The checker reads the source with `ast`, so it sees what Python would import without importing it.
Tests at the end show it fails on a synthetic tree with a cycle and with a forbidden import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("interface_spec", "gateway", "simulators")
# package -> the packages of ours it must never import (at any level)
FORBIDDEN = {
    "interface_spec": ("gateway", "simulators"),
    "simulators": ("gateway",),
}


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    runtime: dict[str, set[str]] = field(default_factory=dict)  # imports that run (any level): these make cycles
    anywhere: dict[str, set[str]] = field(default_factory=dict)  # every import, TYPE_CHECKING too: the layering rules


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, module: str, is_package: bool) -> tuple[list[str], list[str]]:
    """(imports that run, all imports) of one module, as absolute candidate names."""
    run: list[str] = []
    every: list[str] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base_parts = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from pkg import name`: an edge to pkg.name when that is a module, else to pkg (resolved later).
        return [f"{base}|{a.name}" for a in node.names]

    annotation_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            annotation_only |= {id(inner) for sub in node.body for inner in ast.walk(sub)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = targets(node)
            every.extend(names)
            if id(node) not in annotation_only:
                run.extend(names)
    return run, every


def build_graph(root: Path, packages: tuple[str, ...]) -> Graph:
    graph = Graph()
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            graph.modules[_module_name(root, path)] = path
    for name, path in graph.modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        run, every = _imports(tree, name, path.name == "__init__.py")

        def resolve(candidates: list[str], name: str = name) -> set[str]:
            out = set()
            for c in candidates:
                base, _, member = c.partition("|")
                if member and f"{base}.{member}" in graph.modules:
                    c = f"{base}.{member}"
                else:
                    c = base
                # the longest of our modules the name starts with
                parts = c.split(".")
                for n in range(len(parts), 0, -1):
                    head = ".".join(parts[:n])
                    if head in graph.modules:
                        if head != name:
                            out.add(head)
                        break
            return out

        graph.runtime[name] = resolve(run)
        graph.anywhere[name] = resolve(every)
    return graph


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component with more than one module, as one readable cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_cycle_in(sorted(c), edges) for c in components]


def _cycle_in(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first module: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, ())):
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component  # unreachable for a strongly connected component


def forbidden_imports(graph: Graph, rules: dict[str, tuple[str, ...]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.anywhere.items()):
        pkg = module.split(".")[0]
        for target in sorted(targets):
            if target.split(".")[0] in rules.get(pkg, ()):
                found.append(f"{module} imports {target} ({graph.modules[module].relative_to(ROOT) if graph.modules[module].is_relative_to(ROOT) else graph.modules[module]})")
    return found


# --- the project ---------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    cycles = find_cycles(build_graph(ROOT, PACKAGES).runtime)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_each_package_imports_only_what_it_may() -> None:
    found = forbidden_imports(build_graph(ROOT, PACKAGES), FORBIDDEN)
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_the_graph_is_read_at_all() -> None:
    # A checker that finds no modules or no edges would pass everything.
    graph = build_graph(ROOT, PACKAGES)
    assert len(graph.modules) > 100
    assert "interface_spec.modbus_codec" in graph.runtime["gateway.adapters.modbus.adapter"]
    assert "interface_spec.spec" in graph.anywhere["simulators.machine"] or any(
        t.startswith("interface_spec") for t in graph.anywhere["simulators.machine"])


# --- the checker on synthetic trees ---------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_cycle_through_relative_and_submodule_imports(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "app/__init__.py": "",
        "app/a.py": "from . import b\n",
        "app/b.py": "from app.sub import c\n",
        "app/sub/__init__.py": "",
        "app/sub/c.py": "from ..a import thing\n",
        "app/d.py": "import app.a\n",
        "app/e.py": "def late():\n    from app import f\n",  # a function-level import closes a cycle too
        "app/f.py": "import app.e\n",
    })
    cycles = find_cycles(build_graph(tmp_path, ("app",)).runtime)
    assert cycles == [["app.a", "app.b", "app.sub.c", "app.a"], ["app.e", "app.f", "app.e"]]


def test_checker_ignores_type_checking_imports_for_cycles_but_not_for_layers(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "std/__init__.py": "",
        "std/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from std import y\n",
        "std/y.py": "from std import x\n",
        "std/z.py": "def f():\n    from gw import core\n",
        "gw/__init__.py": "",
        "gw/core.py": "",
    })
    graph = build_graph(tmp_path, ("std", "gw"))
    assert find_cycles(graph.runtime) == []
    found = forbidden_imports(graph, {"std": ("gw",)})
    assert len(found) == 1 and found[0].startswith("std.z imports gw.core")
