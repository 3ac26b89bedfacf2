"""benchmarks.gpu_acceptance without a GPU: which checks it plans for a given machine and time
budget, how a failing or skipped check is reported, the JSON + PNG it writes, and its one-line
refusal on a machine without a GPU. The checks themselves need a GPU (docs/gpu.md)."""

from __future__ import annotations

import json

import pytest

from benchmarks.gpu_acceptance import checks, plan, report
from benchmarks.gpu_acceptance.plan import Machine, Outcome
from tests.conftest import run_module

NAMES = [name for name, _, _ in plan.CHECKS]
TOOLS = ("nvcc 13.0.88", "nvrtc-cu12 12.8 (ptxas 12.8.93)")
PASCAL = Machine("NVIDIA GeForce GTX 1080 Ti", (6, 1), (12, 8), True, "10.13.0.35", TOOLS, True)
HOPPER_NO_TRT = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, None, TOOLS, True)


def skips(checks_: list) -> dict[str, str | None]:
    return {c.name: c.skip for c in checks_}


def test_without_a_gpu_only_the_environment_is_planned():
    planned = plan.plan(Machine(None))
    assert [c.name for c in planned] == NAMES
    assert skips(planned) == {"environment": None, **{n: "no usable CUDA GPU" for n in NAMES[1:]}}


def test_pascal_skips_tensorrt_and_runs_everything_else_within_8_minutes():
    planned = plan.plan(PASCAL)
    why = skips(planned)
    assert why["tensorrt"] == "TensorRT 10 needs compute capability 7.5+, this GPU is 6.1"
    assert all(why[n] is None for n in NAMES if n != "tensorrt")
    assert sum(c.budget_s for c in planned if c.skip is None) == plan.TOTAL_BUDGET_S == 480
    fps = next(c for c in planned if c.name == "fps")
    assert fps.budget_s == 480 - (10 + 40 + 60 + 40 + 100)  # the benchmark gets all that is left (TensorRT's 100 s too)


def test_missing_pieces_are_named():
    assert skips(plan.plan(HOPPER_NO_TRT))["tensorrt"] == "TensorRT is not installed"
    no_torch = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), False, None, TOOLS, True)
    assert "CUDA build of torch" in skips(plan.plan(no_torch))["torch-cuda-clip"]
    no_clip = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, None, TOOLS, False)
    assert "solidWhiteRight.mp4" in skips(plan.plan(no_clip))["kernels-vs-cpu"]
    no_compiler = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, None, (), True)
    assert "nvidia-cuda-nvrtc-cu12" in skips(plan.plan(no_compiler))["kernels-build"]


def test_time_budget_and_only():
    small = skips(plan.plan(PASCAL, budget_s=120))
    assert small["kernels-build"] is None and small["kernels-vs-cpu"] is None  # 10 + 40 + 60 fit in 120
    assert small["torch-cuda-clip"].startswith("does not fit the time budget (10 s left of 120 s")
    only = skips(plan.plan(PASCAL, only=("fps",)))
    assert only["fps"] is None and only["environment"] is None
    assert all(only[n] == "not requested (--only)" for n in NAMES if n not in ("fps", "environment", "tensorrt"))


def test_a_check_that_raises_fails_alone_and_skips_are_reported(monkeypatch):
    def broken(ctx, check, machine):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    monkeypatch.setitem(checks.RUNNERS, "kernels-vs-cpu", broken)
    outcome = checks.run(plan.Check("kernels-vs-cpu", "", 60), ctx=None, machine=PASCAL)
    assert (outcome.status, outcome.summary) == ("fail", "RuntimeError: CUDA error: an illegal memory access was encountered")
    skipped = checks.run(plan.Check("tensorrt", "", 100, "TensorRT is not installed"), ctx=None, machine=PASCAL)
    assert (skipped.status, skipped.summary) == ("skip", "TensorRT is not installed")


def _outcomes() -> list[Outcome]:
    return [Outcome("environment", "pass", "NVIDIA GeForce GTX 1080 Ti (cc 6.1)", 0.4),
            Outcome("kernels-vs-cpu", "pass", "warp f32 rel 3.1e-07", 12.5, {"warp_float32": {"rel": 3.1e-07}}),
            Outcome("tensorrt", "skip", "TensorRT 10 needs compute capability 7.5+, this GPU is 6.1"),
            Outcome("fps", "fail", "timed out", 220.0)]


def test_report_verdicts_json_and_png(tmp_path):
    outcomes = _outcomes()
    lines = report.verdict_lines(outcomes)
    assert lines[1] == "PASS  kernels-vs-cpu     12.5 s  warp f32 rel 3.1e-07"
    assert lines[2].startswith("SKIP  tensorrt") and lines[3].startswith("FAIL  fps")
    assert lines[-1] == "acceptance: FAIL (2 passed, 1 failed, 1 skipped)"
    env = {"gpu": "NVIDIA GeForce GTX 1080 Ti", "driver": "580.95.05", "torch": "2.13.0+cu128"}
    json_path, png_path = report.write(outcomes, env, tmp_path / "results", "python -m benchmarks.gpu_acceptance", day="2026-12-01")
    assert json_path.name == "2026-12-01-gpu-acceptance-nvidia-geforce-gtx-1080-ti.json"
    data = json.loads(json_path.read_text())
    assert data["verdict"] == "FAIL" and data["environment"]["driver"] == "580.95.05"
    assert [c["name"] for c in data["checks"]] == ["environment", "kernels-vs-cpu", "tensorrt", "fps"]
    assert data["checks"][1]["figures"]["warp_float32"]["rel"] == 3.1e-07
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overall_verdict():
    passed = [Outcome("environment", "pass", ""), Outcome("fps", "pass", "")]
    assert report.overall(passed) == "PASS"
    assert report.overall([Outcome("environment", "pass", ""), Outcome("fps", "skip", "")]) == "NOTHING-RUN"


def test_without_a_gpu_the_command_stops_in_one_line(tmp_path):
    from plugins.launcher import gpu_unavailable_reason

    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is here: the command would run the checks")
    proc = run_module("benchmarks.gpu_acceptance", "--out", str(tmp_path / "results"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: no usable CUDA GPU here (") and "docs/gpu.md" in line
    assert not (tmp_path / "results").exists()
