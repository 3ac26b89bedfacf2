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


def test_readme_example_figures_are_the_recorded_result():
    """docs/benchmarks.md's full-size README-example figures are the medians in the JSON it links."""
    text = _section((DOCS / "benchmarks.md").read_text(), "The README's Python example against `runtime.infer`")
    record = re.search(r"\]\(\.\./benchmarks/results/([^)]+-readme-example-[^)]+\.json)\)", text)
    assert record, "no link to a readme-example result"
    data = json.loads((REPO / "benchmarks" / "results" / record.group(1)).read_text())
    assert not data["quick"] and data["within_5_percent"]
    medians = data["median_wall_seconds"]
    assert f"example took {medians['example']:.2f} s" in text
    assert f"`runtime.infer --labels-dir` {medians['infer']:.2f} s" in text
    assert f"a ratio of {data['example_over_infer']:.2f}" in text
    assert f"on all {data['agreement']['frames_written']} frames" in text and data["agreement"]["same_road_shares"]


def _table_rows(text: str) -> list[list[str]]:
    """The body cells of the first markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]


def test_cpu_accuracy_table_is_the_recorded_result():
    """docs/cpu.md's accuracy per precision: every mIoU, and each row's largest drop below
    onnxruntime FP32, is computed from the JSON it links."""
    text = _section((DOCS / "cpu.md").read_text(), "Accuracy per precision")
    record = "2026-12-04-cpu-precision-accuracy.json"
    assert f"](../benchmarks/results/{record})" in text
    data = json.loads((REPO / "benchmarks" / "results" / record).read_text())
    keys = ["onnxruntime", "openvino", "openvino_bf16", "onnxruntime_int8", "openvino_int8"]
    rows = _table_rows(text)
    assert len(rows) == len(keys)

    def measured(key: str) -> list[float]:
        by_d = data[f"camvid_sequence_{key}"]["rows"]["gsvnet"]["miou_by_distance"]
        assert list(by_d) == [str(d) for d in range(6)]
        return [100 * data[f"camvid_{key}"]["miou"], *(100 * v for v in by_d.values())]

    reference = measured("onnxruntime")
    for key, cells in zip(keys, rows):
        values = measured(key)
        assert cells[1:8] == [f"{v:.2f}" for v in values], (key, cells)
        drop = max(r - v for r, v in zip(reference, values))
        assert cells[8] == f"{drop:.2f}", (key, cells[8], drop)


def test_cpu_without_amx_table_is_the_recorded_result():
    """docs/cpu.md's end-to-end table on the machine without AMX: each FPS is the JSON's median,
    and the target ratios quoted are the JSON's."""
    text = _section((DOCS / "cpu.md").read_text(), "On this machine, without AMX")
    record = "2026-12-07-e2e-cpu-amd-epyc.json"
    assert f"](../benchmarks/results/{record})" in text
    data = json.loads((REPO / "benchmarks" / "results" / record).read_text())
    names = ["default", "onnxruntime fp32", "onnxruntime int8", "openvino f32", "openvino bf16",
             "per-frame openvino bf16", "default labels-only", "onnxruntime fp32 labels-only", "I/O ceiling", "torch"]
    rows = _table_rows(text)
    assert len(rows) == len(names)
    for name, cells in zip(names, rows):
        (interval, fps), = data["fps"][name].items()
        assert cells[2] == f"{fps:.2f}", (name, cells, fps)
        assert cells[1] in (interval, "-"), (name, cells)
    targets, text = data["targets"], " ".join(text.split())
    assert f"is {targets['default_vs_onnxruntime_fp32']:.2f}x onnxruntime FP32" in text
    assert f"{targets['default_vs_per_frame_openvino']:.2f}x per-frame OpenVINO" in text
    assert f"{round(100 * targets['default_share_of_io_ceiling'])}% of the I/O" in text
    assert f"labels only, {targets['labels_only_default_vs_onnxruntime_fp32']:.2f}x" in text


def test_cpu_auto_choice_agreement_is_the_recorded_result():
    """docs/cpu.md's whole-clip agreement of the automatic choice with FP32 is the JSON's."""
    text = " ".join(_section((DOCS / "cpu.md").read_text(), "Accuracy per precision").split())
    record = "2026-12-07-auto-choice-agreement.json"
    assert f"](../benchmarks/results/{record})" in text
    data = json.loads((REPO / "benchmarks" / "results" / record).read_text())
    agreement = data["pixel_agreement"]
    assert f"{100 * agreement['min']:.3f}% of the pixels of the worst of its {data['frames']} frames" in text
    assert f"(frame {agreement['worst_frame']})" in text and f"{100 * agreement['mean']:.3f}% on average" in text
    assert agreement["min"] >= data["guard_per_frame"]
    assert data["auto_choice"] == {"backend": "openvino", "precision": "bf16"} and "OpenVINO bf16" in text


def test_own_segmenter_measurement_is_the_recorded_result():
    """docs/own-segmenter.md's agreement and speed table is the JSON it links."""
    text = _section((DOCS / "own-segmenter.md").read_text(), "Measuring it: agreement and speed against your model on every frame")
    record = "2026-12-07-imported-swiftnet-video.json"
    assert f"](../benchmarks/results/{record})" in text
    section = json.loads((REPO / "benchmarks" / "results" / record).read_text())["video_solidWhiteRight_onnxruntime"]
    rows = {cells[0]: cells for cells in _table_rows(text)}
    for name, key in (("GSVNet", "gsvnet"), ("warp-only", "warp_only"), ("hold", "hold")):
        by_d = section["rows"][key]["miou_by_distance"]
        assert rows[name][1:5] == [f"{100 * by_d[str(d)]:.1f}" for d in range(1, 5)], name
    speed = section["speed"]
    assert rows["GSVNet"][5] == f"{speed['fps']['4']:.1f} vs {speed['fps']['1']:.1f}: {speed['vs_every_frame']['4']:.2f}x"
    for l in ("2", "3"):
        assert f"{speed['vs_every_frame'][l]:.2f}x at l = {l}" in " ".join(text.split())


def test_erfnet_measurement_is_the_recorded_result():
    """docs/own-segmenter.md's ERFNet table is the JSON it links, clip by clip."""
    text = _section((DOCS / "own-segmenter.md").read_text(), "Measured with a published architecture: ERFNet on the two highway clips")
    record = "2026-12-07-erfnet-video-e2e.json"
    assert f"](../benchmarks/results/{record})" in text
    data = json.loads((REPO / "benchmarks" / "results" / record).read_text())
    rows = {(cells[0], cells[1]): cells for cells in _table_rows(text)}
    assert len(rows) == 6
    for clip in ("solidWhiteRight", "project_video_short"):
        section = data[f"video_{clip}_onnxruntime"]
        for name, key in (("GSVNet", "gsvnet"), ("warp-only", "warp_only"), ("hold", "hold")):
            by_d = section["rows"][key]["miou_by_distance"]
            assert rows[clip, name][2:6] == [f"{100 * by_d[str(d)]:.1f}" for d in range(1, 5)], (clip, name)
        speed = section["speed"]
        assert rows[clip, "GSVNet"][6] == (f"{speed['fps']['4']:.1f} vs {speed['fps']['1']:.1f}: "
                                           f"{speed['vs_every_frame']['4']:.2f}x")
    assert f"CamVid test mIoU {data['setup']['model']['camvid_test_miou']:.1f}" in " ".join(text.split())
