"""docs/: every link resolves; the troubleshooting table quotes the messages the code prints; the
fleet guide names only real flags; the benchmark tables are the recorded results; the architecture's
data flow names modules and names that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.docs_checks import broken_links, flags_in, project_flags

DOCS = REPO / "docs"
SOURCES = ["gsvnet", "engine_format", "export", "runtime", "evaluation", "plugins", "benchmarks", "training"]
MARKDOWN = sorted(DOCS.glob("*.md")) + sorted((REPO / "plugins").glob("*.md"))


def _source_text() -> str:
    return "\n".join(p.read_text() for d in SOURCES for p in (REPO / d).rglob("*.py"))


def _section(text: str, heading: str) -> str:
    assert f"\n## {heading}" in text, f"no '## {heading}' section"
    return text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("markdown", MARKDOWN, ids=[str(p.relative_to(REPO)) for p in MARKDOWN])
def test_every_relative_link_resolves(markdown: Path):
    assert not broken_links(markdown), f"{markdown.name} links to nothing: {broken_links(markdown)}"


def test_troubleshooting_messages_exist_in_the_code():
    """Each fixed fragment of every quoted message must occur in the package's sources (so a changed
    message fails here)."""
    text = (DOCS / "troubleshooting.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
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
    assert not missing, f"docs/troubleshooting.md quotes messages the code no longer prints: {missing}"


def test_fleet_guide_names_only_real_flags():
    """Every flag docs/fleet.md writes is one of the project's commands' (runtime.fleet's, or the
    runtime.infer outputs it mirrors) or of `ray start`."""
    text = (DOCS / "fleet.md").read_text()
    named = flags_in(text)
    assert {"--videos", "--retries", "--redo", "--address", "--cpus-per-worker"} <= named
    unknown = named - project_flags() - {"--head", "--port"}  # `ray start --head --port 6379`
    assert not unknown, f"docs/fleet.md names flags no command has: {sorted(unknown)}"


def test_fleet_guide_states_every_video_status_the_fleet_records():
    """The statuses a video can end with in summary.json (VideoOutcome(job, "...") and the worker's
    {"status": "..."} results) are each named in docs/fleet.md."""
    code = "\n".join(p.read_text() for p in (REPO / "runtime" / "fleet").glob("*.py"))
    statuses = set(re.findall(r'VideoOutcome\(\w+(?:\.\w+)?, "(\w+)"', code)) | set(re.findall(r'"status": "(\w+)"', code))
    assert {"skipped", "failed", "stopped"} <= statuses
    text = (DOCS / "fleet.md").read_text()
    unnamed = sorted(s for s in statuses if f"`{s}`" not in text)
    assert not unnamed, f"docs/fleet.md does not name the video statuses {unnamed}"


def test_end_to_end_table_is_the_recorded_result():
    """docs/benchmarks.md's end-to-end table: every FPS is the median recorded in its JSON."""
    text = _section((DOCS / "benchmarks.md").read_text(), "End to end, as users run it")
    record = "2026-11-25-e2e-cpu-amd-epyc.json"
    assert f"](../benchmarks/results/{record})" in text
    fps = json.loads((REPO / "benchmarks" / "results" / record).read_text())["fps"]
    columns = ["torch", "onnxruntime fp32", "onnxruntime int8"]
    rows = [line.split("|")[1:-1] for line in text.splitlines() if re.match(r"\| \d \|", line)]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    for cells in rows:
        interval = cells[0].strip()
        for name, cell in zip(columns, cells[1:4]):
            recorded = fps[name].get(interval)
            if cell.strip():
                assert recorded is not None and f"{recorded:.2f}" == cell.strip(), (name, interval, cell, recorded)
            else:
                assert recorded is None, (name, interval)


def test_fleet_scaling_table_is_the_recorded_result():
    text = _section((DOCS / "benchmarks.md").read_text(), "Fleet scaling")
    record = "2026-11-25-fleet-scaling-idle-cpu-amd-epyc.json"
    assert f"](../benchmarks/results/{record})" in text
    configs = json.loads((REPO / "benchmarks" / "results" / record).read_text())["configs"]
    rows = re.findall(r"^\| (\d) x (\d)[^|]* \| (\d+\.\d\d) \| (\d\.\d\d)x \|$", text, re.M)
    assert len(rows) == len(configs) == 3
    for workers, cores, fps, ratio in rows:
        recorded = configs[f"{workers}x{cores}"]
        assert (f"{recorded['median_frames_per_second']:.2f}", f"{recorded['vs_first']:.2f}") == (fps, ratio)


def test_architecture_data_flow_names_what_exists():
    """Every file of the data-flow table exists, and every name given for a module is defined in it."""
    text = _section((DOCS / "architecture.md").read_text(), "Data flow")
    table = "\n".join(line for line in text.splitlines() if line.startswith("| "))
    steps = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert steps == ["load", "frame", "schedule", "backend", "engines / kernels", "labels", "writer"]
    paths = re.findall(r"`((?:[\w.]+/)+[\w.]*)`", table)
    assert len(paths) >= 20
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    undefined = []
    for path, names in re.findall(r"`([\w/]+\.py)` \(([^)]*)\)", table):
        source = (REPO / path).read_text()
        for name in re.findall(r"`(\w+)`", names):
            if not re.search(rf"^(?:class |def )?{name}\b", source, re.M):
                undefined.append(f"{path}: {name}")
    assert not undefined, f"docs/architecture.md names what its module does not define: {undefined}"
