"""What the README and docs/ tests share: the links of a Markdown file that resolve to nothing, and
the command-line flags a text names against those the project's commands accept."""

from __future__ import annotations

import re
from pathlib import Path

FENCE = re.compile(r"```.*?```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """The anchors of every heading of a Markdown file (outside code blocks)."""
    text = FENCE.sub("", markdown.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def broken_links(markdown: Path) -> list[str]:
    """Relative links (and images) of ``markdown`` whose file does not exist, or whose #anchor is
    not a heading of the Markdown file it points into; web and mail links are not followed."""
    broken = []
    for target in LINK.findall(FENCE.sub("", markdown.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (markdown.parent / path).resolve() if path else markdown
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    return broken


def flags_in(text: str) -> set[str]:
    """Every ``--flag`` written in code (inline code spans and fenced blocks) of a Markdown text."""
    code = " ".join(FENCE.findall(text) + re.findall(r"`([^`\n]+)`", FENCE.sub("", text)))
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", code))


def project_flags() -> set[str]:
    """The long options of the project's commands: runtime.infer, export.build_engines,
    runtime.fleet, benchmarks.gpu_acceptance, training.propagation and evaluation (every
    subcommand)."""
    import argparse

    from benchmarks.gpu_acceptance.__main__ import build_parser as acceptance_parser
    from evaluation.evaluate import build_parser as evaluation_parser
    from export.build_engines import build_parser as export_parser
    from runtime.fleet.cli import build_parser as fleet_parser
    from runtime.infer import build_parser as infer_parser
    from training.propagation import build_parser as propagation_parser

    parsers = [infer_parser(), export_parser(), fleet_parser(), acceptance_parser(), propagation_parser()]
    evaluation = evaluation_parser()
    parsers += [sub for action in evaluation._actions if isinstance(action, argparse._SubParsersAction)
                for sub in action.choices.values()]
    flags: set[str] = set()
    for parser in parsers:
        flags |= {option for action in parser._actions for option in action.option_strings if option.startswith("--")}
    return flags
