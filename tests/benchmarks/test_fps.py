import json

import pytest

from benchmarks import environment, fps
from benchmarks.environment import REPO
from benchmarks.flops import count_macs
from benchmarks.fps_options import FpsOptions


def test_quick_benchmark_runs_and_reports_ratios(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "CACHE", tmp_path / "cache")
    lines: list[str] = []
    result = fps.run(FpsOptions(quick=True, out_dir=tmp_path / "results", threads=2), log=lines.append)
    assert result["baseline"] == "torch" or result["baseline"].startswith("torch")
    assert set(result["stages"]["onnxruntime"]) == set(fps.STAGES)
    for name, per_l in result["end_to_end"].items():
        assert [int(l) for l in per_l] == [1, 2, 3, 4, 5]
        assert all(v["median"] > 0 for v in per_l.values())
    assert set(result["ratios_vs_baseline"]["onnxruntime"]) == {"1", "2", "3", "4", "5"}
    written = sorted((tmp_path / "results").iterdir())
    assert [p.suffix for p in written] == [".json", ".png"]
    data = json.loads(written[0].read_text())
    assert len(data["stages_raw_ms"]["onnxruntime"]["keyframe"]) == 2  # every raw sample is kept
    assert data["environment"]["threads"] == 2 and data["environment"]["cpu"]
    report = "\n".join(lines)
    assert "onnxruntime vs torch" in report and "interval l" in report


def test_the_command_line_fills_the_typed_options(capsys):
    assert fps.parse_options([]) == FpsOptions()
    argv = ["--backends", "onnxruntime, torch", "--intervals", "1,4", "--scaling-sizes", "", "--precisions", "fp32",
            "--size", "64x112", "--end-to-end", "--e2e-eager-intervals", "1"]
    assert fps.parse_options(argv) == FpsOptions(backends=("onnxruntime", "torch"), intervals=(1, 4), scaling_sizes=(),
                                                 precisions=("fp32",), size=(64, 112), end_to_end=True,
                                                 e2e_eager_intervals=(1,))
    with pytest.raises(ValueError, match=r"^--intervals must be >= 1, got 0$"):
        FpsOptions(intervals=(1, 0))
    with pytest.raises(ValueError, match=r"^--backends: unknown tensorflow; choose from auto, "):
        FpsOptions(backends=("tensorflow",))
    assert fps.main(["--intervals", "1,0"]) == 2
    assert capsys.readouterr().err == "error: --intervals must be >= 1, got 0\n"


def test_macs_match_the_paper_scaling(engines):
    # at the paper's 1024x2048 with key scale 0.75, SwiftNet-R18 is 58.5 G (MACs, as ptflops counts them);
    # MACs scale with pixels, so the test engines (keyframe input 104x176) must give 58.5 G * ratio
    macs = count_macs(engines / "keyframe.onnx")
    expected = 58.5e9 * (104 * 176) / (768 * 1536)
    assert abs(macs - expected) / expected < 0.15, macs


def test_frames_fall_back_to_synthetic_ones_without_pyav(tmp_path):
    # the lent GPU machines have no PyAV: with the clip present, the benchmark must still get frames
    import subprocess
    import sys

    clip = tmp_path / "solidWhiteRight.mp4"
    clip.write_bytes(b"not decodable without PyAV anyway")
    code = ("import sys; sys.modules['av'] = None\n"  # import av -> ImportError, as where PyAV is not installed
            "from pathlib import Path\n"
            "from benchmarks import fps\n"
            f"fps.CLIP = Path({str(clip)!r})\n"
            "frames, size, source = fps.clip_frames((16, 32), 3)\n"
            "assert len(frames) == 3 and frames[0].shape == (1, 16, 32, 3) and size == (16, 32)\n"
            "print(source)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("synthetic random frames (the video reader does not import:") and "\n" == proc.stdout[-1]


def _result(backends: list[str]) -> dict:
    """A hand-made benchmark result (what fps.run returns) for the report."""
    stages = {b: {s: {"median": 2.0, "p90": 3.0} for s in fps.STAGES} for b in backends}
    return {"baseline": backends[0], "stages": stages, "intervals": [1],
            "end_to_end": {b: {"1": {"median": 10.0}} for b in backends}, "scaling": [],
            "macs": {"keyframe": 1e9}, "non_keyframe_gmacs": 0.5, "parameters": {"keyframe": 1e6}}


def test_torch_cuda_per_stage_figures_are_labelled_as_pytorch_ops():
    # torch-cuda's run(stage) is TorchBackend's: grid_sample and the unfused filter, not the kernels its steps run
    text = fps.report(_result(["torch-eager-cuda", "torch-cuda", "tensorrt"]))
    assert "torch-cuda*" in text.splitlines()[0].split()  # the stage table's header marks the column
    footnote = next(line for line in text.splitlines() if line.startswith("* "))
    assert footnote.startswith("* torch-cuda's per-stage figures time PyTorch ops, not the fused kernels the steps run:")
    assert "grid_sample" in footnote and "chunk_filter kernel" in footnote
    assert "interval l" in text.split("\n\n")[1]  # the end-to-end table (which runs the kernels) is not marked
    assert "torch-cuda*" not in text.split("\n\n")[1]
    plain = fps.report(_result(["torch", "onnxruntime"]))
    assert "*" not in plain
