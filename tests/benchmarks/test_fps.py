import json

from benchmarks import fps
from benchmarks.flops import count_macs


def test_quick_benchmark_runs_and_reports_ratios(tmp_path, monkeypatch):
    monkeypatch.setattr(fps, "CACHE", tmp_path / "cache")
    lines: list[str] = []
    args = fps.build_parser().parse_args(["--quick", "--out-dir", str(tmp_path / "results"), "--threads", "2"])
    result = fps.run(args, log=lines.append)
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


def test_macs_match_the_paper_scaling(engines):
    # at the paper's 1024x2048 with key scale 0.75, SwiftNet-R18 is 58.5 G (MACs, as ptflops counts them);
    # MACs scale with pixels, so the test engines (keyframe input 104x176) must give 58.5 G * ratio
    macs = count_macs(engines / "keyframe.onnx")
    expected = 58.5e9 * (104 * 176) / (768 * 1536)
    assert abs(macs - expected) / expected < 0.15, macs
