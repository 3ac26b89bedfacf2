"""benchmarks.fps --end-to-end: runtime.infer processes as users run them, interleaved, with their load average."""

from __future__ import annotations

import json

import pytest

from benchmarks import end_to_end, environment
from benchmarks.fps_options import FpsOptions


def _run(fps_value: float, load: float = 0.5, others: float = 0.0) -> dict:
    return {"fps": fps_value, "load_before": [load, 0, 0], "load_after": [load + 0.1, 0, 0], "others_cpu_share": others}


def test_summary_is_the_median_per_interval_over_eager_per_frame():
    raw = {"torch": {1: [_run(2.0), _run(2.4), _run(2.2)], 4: [_run(5.0)]},
           "onnxruntime fp32": {1: [_run(6.0), _run(7.0)], 4: [_run(28.0), _run(30.0), _run(29.0, load=1.5, others=0.3)]}}
    summary = end_to_end.summarise(raw)
    assert summary["fps"]["torch"] == {"1": 2.2, "4": 5.0}
    assert summary["fps"]["onnxruntime fp32"] == {"1": 6.5, "4": 29.0}
    assert summary["vs_eager_per_frame"]["onnxruntime fp32"]["4"] == pytest.approx(29.0 / 2.2)
    assert summary["vs_eager_per_frame"]["torch"]["4"] == pytest.approx(5.0 / 2.2)
    assert summary["load_average_1min"] == {"min": 0.5, "max": 1.6}
    assert summary["others_cpu_share"] == {"max": 0.3, "runs_over_5_percent": 1, "runs": 9}
    table = end_to_end.report(summary)
    assert "13.18x" in table and "1-minute load average around the runs: 0.50 .. 1.60" in table
    assert "SHARED: other processes took over 5% of the CPU during 1 of 9 runs" in table


def test_quick_end_to_end_runs_runtime_infer_for_every_configuration(tmp_path, monkeypatch, real_clip):
    monkeypatch.setattr(environment, "CACHE", tmp_path / "cache")
    lines: list[str] = []
    options = FpsOptions(end_to_end=True, quick=True, precisions=("fp32",), out_dir=tmp_path / "out")
    result = end_to_end.run(options, log=lines.append)
    names = [c["name"] for c in result["configs"]]
    assert names[:3] == ["torch", "default", "onnxruntime fp32"]
    assert names[-3:] == ["default labels-only", "onnxruntime fp32 labels-only", "I/O ceiling"]
    openvino = names[3:-3]
    if openvino:  # the package's dependency; absent only where its wheel does not exist
        assert openvino[0] == "openvino f32" and openvino[-1].startswith("per-frame openvino")
        assert set(result["runs"][openvino[-1]]) == {"1"}
        assert all(r["backend"] == "openvino" for n in openvino for rs in result["runs"][n].values() for r in rs)
    assert set(result["runs"]["torch"]) == {"1"} and set(result["runs"]["onnxruntime fp32"]) == {"1", "4"}
    assert set(result["runs"]["I/O ceiling"]) == {"4"}
    for name, per_l in result["runs"].items():
        for runs in per_l.values():
            (run,) = runs
            assert run["frames"] == 8 and run["fps"] > 0 and len(run["load_before"]) == 3
            assert 0.0 <= run["others_cpu_share"] <= 1.0
            if name != "I/O ceiling":
                assert "decode" in run["stages_ms"] and "write" in run["stages_ms"]  # video I/O was part of it
    targets = result["targets"]
    assert targets["interval"] == 4 and targets["default_vs_onnxruntime_fp32"] > 0
    assert targets["default_share_of_io_ceiling"] > 0 and targets["labels_only_default_vs_onnxruntime_fp32"] > 0
    ort = result["runs"]["onnxruntime fp32"]["4"][0]
    assert ort["keyframe_workers"] in (0, 2) and ort["threads"]["budget"] >= 1
    written = sorted((tmp_path / "out").iterdir())
    assert [p.suffix for p in written] == [".json", ".png"] and "-e2e-" in written[0].name
    assert json.loads(written[0].read_text())["vs_eager_per_frame"]["onnxruntime fp32"]["1"] > 0


def test_targets_are_ratios_of_the_medians_at_the_target_interval():
    fps = {"default": {"4": 60.0}, "onnxruntime fp32": {"4": 30.0}, "per-frame openvino bf16": {"1": 40.0},
           "I/O ceiling": {"4": 80.0}, "default labels-only": {"4": 90.0}, "onnxruntime fp32 labels-only": {"4": 30.0}}
    assert end_to_end.targets(fps, 4) == {
        "interval": 4, "default_vs_onnxruntime_fp32": 2.0, "default_vs_per_frame_openvino": 1.5,
        "default_share_of_io_ceiling": 0.75, "labels_only_default_vs_onnxruntime_fp32": 3.0}
    assert end_to_end.targets({"default": {"4": 60.0}}, 4)["default_vs_onnxruntime_fp32"] is None
