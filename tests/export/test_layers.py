"""Layers import only downward, and no package's modules import each other in a circle.

    gsvnet, plugins  ->  engine_format  ->  export  ->  runtime  ->  evaluation  ->  benchmarks, training

engine_format (the engines folder's contract) sits below both the exporter that writes a folder and
the runtime that reads it, so the runtime never imports the builder.

Read from the sources' import statements (module level and inside functions alike): a function-level
import is still a dependency, and a circle that only works because one side imports late is still a
circle. tests/ may import anything and is not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: each top-level package and the packages it may import (today's edges; nothing upward, and the two
#: bottom layers and the two top layers stay independent of each other)
MAY_IMPORT = {
    "gsvnet": set(),
    "plugins": set(),
    "engine_format": {"gsvnet", "plugins"},
    "export": {"gsvnet", "plugins", "engine_format"},
    "runtime": {"gsvnet", "plugins", "engine_format"},
    "evaluation": {"gsvnet", "plugins", "engine_format", "runtime"},
    "benchmarks": {"gsvnet", "plugins", "engine_format", "export", "runtime", "evaluation"},
    "training": {"gsvnet", "plugins", "engine_format", "export", "runtime", "evaluation"},
}


def module_name(path: Path) -> str:
    """'export/quantize.py' -> 'export.quantize'; 'benchmarks/gpu_acceptance/__init__.py' -> 'benchmarks.gpu_acceptance'."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every dotted name a file imports, relative ones made absolute; ``from X import a`` gives
    ``X.a`` (``a`` may be a module or a name defined in ``X``: ``resolve`` tells which)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            found |= {base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names}
    return found


def sources(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def resolve(name: str, modules: set[str]) -> str | None:
    """The module of ``modules`` that importing ``name`` means: its longest dotted prefix that is one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def module_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (a package means its __init__)."""
    files = {module_name(p): p for p in sources(package)}
    graph = {}
    for name, path in files.items():
        targets = {resolve(n, set(files)) for n in imports(path)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle as one path ``[a, b, ..., a]``, one per strongly connected group of modules
    (Tarjan), sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(path_around(group, graph) for group in groups)


def path_around(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle through the group's first module, staying inside the group."""
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & group):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    raise AssertionError(f"no circle through {start} in {sorted(group)}")


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_downward(package):
    upward = []
    for path in sources(package):
        for name in imports(path):
            top = name.split(".")[0]
            if top in MAY_IMPORT and top != package and top not in MAY_IMPORT[package]:
                upward.append(f"{path.relative_to(REPO)} imports {name}")
    assert not upward, f"{package} may import only {sorted(MAY_IMPORT[package]) or 'no project package'}:\n" + \
        "\n".join(sorted(set(upward)))


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_circle_inside_a_package(package):
    found = circles(module_graph(package))
    assert not found, f"import circles in {package}/:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_circle_finder_reports_each_circle_once():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a", "p.d"}, "p.d": set(), "p.e": {"p.f"}, "p.f": {"p.e"}}
    assert circles(graph) == [["p.a", "p.b", "p.c", "p.a"], ["p.e", "p.f", "p.e"]]
    assert circles({"p.a": {"p.b"}, "p.b": set()}) == []


def test_every_top_level_package_is_covered():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == set(MAY_IMPORT), packages ^ set(MAY_IMPORT)


def test_the_onnx_and_tensorrt_builds_do_not_import_each_other_back():
    tensorrt_build = imports(REPO / "export" / "tensorrt_build.py")
    assert not any(name.startswith(("export.build_engines", "export.builder")) for name in tensorrt_build), tensorrt_build
    verify = imports(REPO / "export" / "verify.py")
    assert not any(name.split(".")[0] == "runtime" for name in verify), verify
