"""The README a newcomer reads: short, every link resolves, its figures are the recorded ones, its
layout is the tree, its test command is CI's, its flags exist, and its Python example runs as
written and sees exactly the labels ``python -m runtime.infer --labels-dir`` writes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from benchmarks.readme_example import readme_example, with_paths
from tests.conftest import REPO, run_module
from tests.docs_checks import broken_links, flags_in, project_flags
from tests.runtime.output_checks import read_label_pngs
from tests.runtime.videos import write_lossless_frames

README = REPO / "README.md"
EXAMPLE_FRAMES = 40


def readme() -> str:
    return README.read_text()


def section(name: str) -> str:
    text = readme()
    assert f"\n## {name}\n" in text, f"the README has no '## {name}' section"
    return text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_is_at_most_200_lines():
    lines = readme().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move detail into docs/"


def test_every_relative_link_in_the_readme_resolves():
    text = readme()
    assert len(re.findall(r"\]\(docs/[^)]+\.md\)", text)) >= 10, "the README links the documents in docs/"
    assert not broken_links(README), f"README links that resolve to nothing: {broken_links(README)}"


def test_readme_links_every_document_in_docs():
    text = readme()
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if f"](docs/{p.name}" not in text]
    assert not unlinked, f"documents the README does not link: {unlinked}"


#: the README's figure table: (text in the row, figure as printed, result file, path to the value, scale)
FIGURES = [
    ("default flags (it measured and chose OpenVINO bf16)", "25.1 FPS", "2026-12-07-e2e-cpu-amd-epyc.json", ["fps", "default", "4"], 1.0),
    ("`runtime.infer --backend onnxruntime`, FP32 engines", "16.9 FPS", "2026-12-07-e2e-cpu-amd-epyc.json", ["fps", "onnxruntime fp32", "4"], 1.0),
    ("engines with the INT8 keyframe graph, l = 4", "24.7 FPS", "2026-12-07-e2e-cpu-amd-epyc.json", ["fps", "onnxruntime int8", "4"], 1.0),
    ("OpenVINO bf16 on every frame (l = 1)", "11.4 FPS", "2026-12-07-e2e-cpu-amd-epyc.json", ["fps", "per-frame openvino bf16", "1"], 1.0),
    ("PyTorch eager, every frame a keyframe", "4.3 FPS", "2026-12-07-e2e-cpu-amd-epyc.json", ["fps", "torch", "1"], 1.0),
    ("CamVid test mIoU", "53.2 /", "accuracy-2026-11-25.json", ["camvid", "miou"], 100.0),
    ("CamVid test mIoU", "/ 53.1", "accuracy-2026-11-25.json", ["camvid_onnxruntime_int8", "miou"], 100.0),
    ("CamVid val sequence", "58.2 /", "accuracy-2026-11-25.json", ["camvid_sequence", "rows", "gsvnet", "miou_by_distance", "0"], 100.0),
    ("CamVid val sequence", "/ 56.6", "accuracy-2026-11-25.json", ["camvid_sequence", "rows", "gsvnet", "miou_by_distance", "4"], 100.0),
    ("CamVid val sequence", "warping alone: 53.6", "accuracy-2026-11-25.json",
     ["camvid_sequence", "rows", "warp_only", "miou_by_distance", "4"], 100.0),
]


@pytest.mark.parametrize("row_text, printed, result_file, key, scale", FIGURES, ids=[f[1] for f in FIGURES])
def test_each_figure_is_the_recorded_one_and_links_its_record(row_text, printed, result_file, key, scale):
    rows = [line for line in readme().splitlines() if line.startswith("|") and row_text in line]
    assert len(rows) == 1, f"one README table row mentions {row_text!r}: {rows}"
    (row,) = rows
    assert f"](benchmarks/results/{result_file})" in row, f"the row does not link its record {result_file}"
    value = json.loads((REPO / "benchmarks" / "results" / result_file).read_text())
    for part in key:
        value = value[part]
    number = re.search(r"\d+\.\d+", printed).group(0)
    assert printed in row, f"{printed!r} is not in the row {row!r}"
    assert f"{value * scale:.{len(number.split('.')[1])}f}" == number, f"{result_file} {key} is {value}, the README says {number}"


def test_the_figure_table_says_what_machine():
    header = next(line for line in readme().splitlines() if line.startswith("| measured on"))
    assert "2-core AMD EPYC, no GPU" in header
    env = json.loads((REPO / "benchmarks/results/2026-12-07-e2e-cpu-amd-epyc.json").read_text())["environment"]
    assert env["cpu"] == "AMD EPYC" and env["cores"] == 2 and env["gpu"] is None


def test_the_first_commands_need_no_data_folder():
    run = section("Run")
    first_block = re.search(r"```bash\n(.*?)```", run, re.S).group(1)
    assert "export.build_engines" in first_block and "runtime.infer" in first_block
    assert "shared" not in first_block and "--calibration" not in first_block and "int8" not in first_block


def test_layout_lists_the_real_top_level_folders():
    listed = re.findall(r"^- `([^`/]+)/`", section("Layout"), re.M)
    missing = [name for name in listed if not (REPO / name).is_dir()]
    assert not missing, f"the README's layout lists folders that do not exist: {missing}"
    packages = re.search(r'include = \[(.*?)\]', (REPO / "pyproject.toml").read_text()).group(1)
    unlisted = [name.strip('" *') for name in packages.split(",") if name.strip('" *') not in listed]
    assert not unlisted, f"packages the README's layout leaves out: {unlisted}"
    assert {"tests", "docs", "engines"} <= set(listed)


def test_readme_commands_are_the_ci_commands():
    """.ci/run installs what the README's set-up installs and ends by running the README's test command."""
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    tests = re.search(r"```bash\n(.*?)```", section("Tests"), re.S).group(1).strip().splitlines()
    assert tests == [ci_lines[-1]], f"the README's test command {tests} is not what .ci/run runs last ({ci_lines[-1]!r})"
    setup = re.search(r"```bash\n(.*?)```", section("Set up"), re.S).group(1)
    install = [line for line in setup.splitlines() if line.startswith("pip install")]
    assert install == ["pip install -e '.[dev]'"], install
    assert "python -m pip install -q -e '.[dev]'" in ci_lines


def test_every_flag_the_readme_names_exists():
    unknown = flags_in(readme()) - project_flags()
    assert not unknown, f"the README names flags no command has: {sorted(unknown)}"


def test_the_python_example_is_short():
    code = readme_example(readme())
    assert code.startswith("from runtime import Segmenter\n")
    assert len(code.strip().splitlines()) <= 12


def test_the_python_example_runs_as_written_and_equals_runtime_infer(shipped_engines, real_clip, tmp_path, monkeypatch,
                                                                      capsys):
    """The README's 'Use from Python' example, its VIDEO and ENGINES lines pointed at a 40-frame cut of the
    real clip and engines of the shipped weights, run as it is: the labels it sees and the road shares it
    prints are those of ``runtime.infer --labels-dir`` on the same video, pixel for pixel."""
    from runtime import Segmenter
    from runtime.video import VideoReader

    reader = VideoReader(real_clip)
    frames = [d.rgb for _, d in zip(range(EXAMPLE_FRAMES), reader)]
    reader.close()
    video = tmp_path / "cut.mov"
    write_lossless_frames(frames, video)
    code = with_paths(readme_example(readme()), video, shipped_engines)
    seen: list[np.ndarray] = []
    stream = Segmenter.stream

    def recording(self, source, scores=False):
        for result in stream(self, source, scores):
            seen.append(result.labels)
            yield result

    monkeypatch.setattr(Segmenter, "stream", recording)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("frame ")]

    labels = tmp_path / "labels"
    proc = run_module("runtime.infer", "--video", str(video), "--engines", str(shipped_engines), "--labels-dir",
                      str(labels), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = list(read_label_pngs(labels, EXAMPLE_FRAMES))
    assert len(seen) == len(expected) == EXAMPLE_FRAMES
    for k, (got, png) in enumerate(zip(seen, expected)):
        assert got.shape == png.shape == (540, 960)
        assert np.array_equal(got, png), f"frame {k} differs from runtime.infer --labels-dir"
    assert printed == [f"frame {k}: {100 * (png == 3).mean():.0f}% road{' (keyframe)' * (k % 4 == 0)}"
                       for k, png in enumerate(expected)]


def test_the_default_row_names_what_the_default_run_chose():
    row = next(line for line in readme().splitlines() if line.startswith("|") and "default flags (it measured" in line)
    runs = json.loads((REPO / "benchmarks/results/2026-12-07-e2e-cpu-amd-epyc.json").read_text())["runs"]["default"]["4"]
    chosen = {(r["backend"], r["precision"]) for r in runs}
    assert len(chosen) == 1, f"the default run chose differently between repeats: {chosen}"
    ((backend, precision),) = chosen
    assert f"chose {'OpenVINO' if backend == 'openvino' else backend} {precision}" in row
