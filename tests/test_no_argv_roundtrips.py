"""The command lines are thin shells over typed options: inside the project, only a command's own
argv-parsing function calls ``parse_args`` / ``parse_known_args``, nobody builds an argparse
``Namespace``, and nobody calls another command's ``main``/``parse_args``/``parse_options`` with an
argv list (callers fill the options dataclasses: runtime.options.InferOptions,
export.options.BuildOptions, evaluation.options, runtime.fleet.options.FleetOptions, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.export.test_layers import MAY_IMPORT, REPO

#: the functions of a command module that may turn argv into options, and only there
PARSING_FUNCTIONS = {"main", "parse_args", "parse_options", "cli"}
ARGV_ENTRIES = {"main", "parse_options", "cli"}  # parse_args itself: the rule above


def violations(path: Path) -> list[str]:
    """Each argv round trip in one source file, as 'file:line: what'."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    where = lambda node: f"{path.relative_to(REPO)}:{node.lineno}"  # noqa: E731

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("parse_args", "parse_known_args") and isinstance(func, ast.Attribute) \
                    and function not in PARSING_FUNCTIONS:
                found.append(f"{where(node)}: {name}() outside a command's argv-parsing function ({function})")
            if name == "Namespace":
                found.append(f"{where(node)}: builds an argparse Namespace")
            if isinstance(func, ast.Attribute) and name in ARGV_ENTRIES and node.args \
                    and isinstance(node.args[0], (ast.List, ast.Tuple)):
                found.append(f"{where(node)}: calls a command's {name}() with an argv list")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def package_sources() -> list[Path]:
    return sorted(p for package in MAY_IMPORT for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_argv_round_trips_inside_the_project():
    found = [v for path in package_sources() for v in violations(path)]
    assert not found, "\n".join(found)


def test_the_check_finds_each_kind_of_round_trip(tmp_path):
    planted = REPO / "runtime" / "_planted_for_test.py"
    try:
        planted.write_text("import argparse\nfrom runtime import infer\n\n\ndef run():\n"
                           "    infer.build_parser().parse_args(['--video', 'a.mp4'])\n"
                           "    argparse.Namespace(video=['a.mp4'])\n"
                           "    infer.main(['--video', 'a.mp4'])\n\n\n"
                           "def main(argv=None):\n    infer.build_parser().parse_args(argv)\n")
        found = violations(planted)
    finally:
        planted.unlink()
    assert [v.split(": ", 1)[1] for v in found] == [
        "parse_args() outside a command's argv-parsing function (run)", "builds an argparse Namespace",
        "calls a command's main() with an argv list"]


def test_tests_fill_options_rather_than_namespaces():
    """Tests build typed options too; a Namespace appears only where a foreign file format holds one
    (the official GSVNet checkpoint pickles its argparse arguments)."""
    allowed = {"tests/gsvnet/test_official.py"}  # writes an official-format checkpoint
    found = [v for path in sorted((REPO / "tests").rglob("*.py")) if str(path.relative_to(REPO)) not in allowed
             for v in violations(path) if "Namespace" in v]
    assert not found, "\n".join(found)
