"""The README's Troubleshooting table quotes the real messages: each fixed fragment of every
quoted message must occur in the package's sources (so a changed message fails here)."""

import re

from tests.conftest import REPO

SOURCES = ["gsvnet", "export", "runtime", "plugins", "benchmarks"]


def _source_text() -> str:
    return "\n".join(p.read_text() for d in SOURCES for p in (REPO / d).rglob("*.py"))


def test_troubleshooting_messages_exist_in_the_code():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 20
    code = _source_text()
    missing = []
    for row in rows:
        first_cell = row.split(" | ")[0]
        for quoted in re.findall(r"`([^`]+)`", first_cell):
            for fragment in quoted.split("…"):
                fragment = fragment.strip(" `")
                if len(fragment) >= 6 and fragment not in code:
                    missing.append(fragment)
    assert not missing, f"README quotes messages the code no longer prints: {missing}"


def test_readme_commands_are_the_ci_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "python -m pytest -q" in readme and "python -m pytest -q" in ci
    assert "pip install -e '.[dev]'" in readme and "pip install -q -e '.[dev]'" in ci
