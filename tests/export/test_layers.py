"""Layers import only downward: gsvnet, plugins -> export -> runtime -> benchmarks. Read from the
sources' import statements (module level and inside functions alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ORDER = ["gsvnet", "plugins", "export", "runtime", "benchmarks"]
LEVEL = {"gsvnet": 0, "plugins": 0, "export": 1, "runtime": 2, "benchmarks": 3}


def imports(path: Path) -> set[str]:
    """Top-level packages and same-package modules a file imports ('export.build_engines', 'runtime', ...)."""
    package = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: within the package
                base = f"{package}.{node.module}" if node.module else package
                found |= {base} | {f"{package}.{alias.name}" for alias in node.names if not node.module}
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("package", [p for p in ORDER if p != "gsvnet"])
def test_packages_import_only_downward(package):
    for path in sorted((REPO / package).rglob("*.py")):
        for name in imports(path):
            top = name.split(".")[0]
            if top in LEVEL and top != package:
                assert LEVEL[top] <= LEVEL[package], f"{path.relative_to(REPO)} imports {name} (a layer above {package})"


def test_the_onnx_and_tensorrt_builds_do_not_import_each_other_back():
    tensorrt_build = imports(REPO / "export" / "tensorrt_build.py")
    assert not any(name.startswith("export.build_engines") for name in tensorrt_build), tensorrt_build
    verify = imports(REPO / "export" / "verify.py")
    assert not any(name.split(".")[0] == "runtime" for name in verify), verify
