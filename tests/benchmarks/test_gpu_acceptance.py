"""benchmarks.gpu_acceptance without a GPU: which checks it plans for a given machine, time budget
and build times, how a failing, timed-out or skipped check is reported, the overall verdict, the
JSON + PNG it writes, its frames without PyAV, and a whole run on a simulated lent machine (no
GPU, no PyAV, no ../shared). The checks themselves need a GPU (docs/gpu.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_acceptance import builds, checks, plan, report
from benchmarks.gpu_acceptance.__main__ import AcceptanceOptions, main, run
from benchmarks.gpu_acceptance.builds import Build, Ledger
from benchmarks.gpu_acceptance.context import Context, TimedOut, read_video
from benchmarks.gpu_acceptance.plan import Machine, Outcome
from engine_format.manifest import STAGES
from tests.conftest import REPO

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


def test_pascal_first_run_budgets_include_the_builds_each_folder_once():
    planned = {c.name: c for c in plan.plan(PASCAL)}
    assert planned["tensorrt"].skip == "TensorRT 10 needs compute capability 7.5+, this GPU is 6.1"
    export_544 = builds.REUSE_S + builds.EXPORT_S * builds.export_scale((544, 960))
    # kernels-vs-cpu builds the 544x960 folder; torch-cuda-clip reuses it and pays nothing for it
    assert planned["kernels-vs-cpu"].budget_s == 30 + round(export_544) and planned["kernels-vs-cpu"].build_s > 0
    assert (planned["torch-cuda-clip"].budget_s, planned["torch-cuda-clip"].build_s) == (40, 0)
    assert planned["pytest-gpu"].build_s > 0  # its session fixtures export engines of their own
    # the benchmark's 1024x2048 folder does not fit what is left of 8 minutes on a first run: skipped, saying so
    spare = 480 - sum(c.budget_s for c in planned.values() if c.skip is None)
    assert planned["fps"].skip.startswith(f"does not fit the time budget ({spare} s left of 480 s, needs 120 s to run + ")
    assert "s to build its engines (documented estimates" in planned["fps"].skip
    # every planned check may run into the time no later check needs
    assert all(c.limit_s == c.budget_s + spare for c in planned.values() if c.skip is None)


def test_missing_pieces_are_named():
    assert skips(plan.plan(HOPPER_NO_TRT))["tensorrt"] == "TensorRT is not installed"
    no_torch = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), False, None, TOOLS, True)
    assert "CUDA build of torch" in skips(plan.plan(no_torch))["torch-cuda-clip"]
    no_frames = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, None, TOOLS, False)
    assert "gsvnet/samples/road.npz is missing" in skips(plan.plan(no_frames))["kernels-vs-cpu"]
    no_compiler = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, None, (), True)
    assert "nvidia-cuda-nvrtc-cu12" in skips(plan.plan(no_compiler))["kernels-build"]


def test_missing_cuda_torch_names_the_installed_release():
    cpu_torch = Machine("NVIDIA GeForce GTX 1080 Ti", (6, 1), (12, 8), False, None, TOOLS, True, torch_version="2.9.1+cpu")
    why = skips(plan.plan(cpu_torch))["torch-cuda-clip"]
    assert why == "PyTorch 2.9.1+cpu has no CUDA here (install the CUDA build of torch 2.9.1)"
    no_torch = Machine("NVIDIA GeForce GTX 1080 Ti", (6, 1), (12, 8), False, None, TOOLS, True)
    assert skips(plan.plan(no_torch))["fps"] == "PyTorch does not import here (install a CUDA build of torch)"
    assert checks.probe(None).torch_version == __import__("torch").__version__  # found at run time


def test_time_budget_and_only():
    small = skips(plan.plan(PASCAL, budget_s=200))
    assert small["kernels-build"] is None and small["kernels-vs-cpu"] is None  # 10 + 40 + 130 fit in 200
    assert small["torch-cuda-clip"] == "does not fit the time budget (20 s left of 200 s, needs 40 s to run; --budget raises it)"
    only = skips(plan.plan(PASCAL, only=("fps",)))
    assert only["fps"] is None and only["environment"] is None
    assert all(only[n] == "not requested (--only)" for n in NAMES if n not in ("fps", "environment", "tensorrt"))


def test_a_check_that_raises_fails_alone_and_skips_are_reported(monkeypatch):
    def broken(ctx, check, machine, deadline):
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
    assert lines[1] == "PASS     kernels-vs-cpu     12.5 s  warp f32 rel 3.1e-07"
    assert lines[2].startswith("SKIP     tensorrt") and lines[3].startswith("FAIL     fps")
    assert lines[-1] == "acceptance: FAIL (2 passed, 1 failed, 0 timed out, 1 skipped)"
    env = {"gpu": "NVIDIA GeForce GTX 1080 Ti", "driver": "580.95.05", "torch": "2.13.0+cu128"}
    built = [{"build": "544x960 ONNX graphs", "seconds": 41.2, "estimate_s": 100}]
    json_path, png_path = report.write(outcomes, env, tmp_path / "results", "python -m benchmarks.gpu_acceptance",
                                       day="2026-12-01", builds=built)
    assert json_path.name == "2026-12-01-gpu-acceptance-nvidia-geforce-gtx-1080-ti.json"
    data = json.loads(json_path.read_text())
    assert (data["verdict"], data["exit_status"], data["builds"]) == ("FAIL", 1, built)
    assert data["environment"]["driver"] == "580.95.05"
    assert [c["name"] for c in data["checks"]] == ["environment", "kernels-vs-cpu", "tensorrt", "fps"]
    assert data["checks"][1]["figures"]["warp_float32"]["rel"] == 3.1e-07
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _statuses(**status: str) -> list[Outcome]:
    return [Outcome("environment", "pass", "")] + [Outcome(name.replace("_", "-"), s, "") for name, s in status.items()]


def test_overall_verdict_is_pass_only_when_the_kernels_and_torch_cuda_checks_passed():
    assert report.overall(_statuses(kernels_build="pass", kernels_vs_cpu="pass", torch_cuda_clip="pass",
                                    tensorrt="skip", fps="skip")) == "PASS"
    # what the verdict used to call PASS: only the kernels' build and pytest ran
    only_build = _statuses(kernels_build="pass", kernels_vs_cpu="skip", torch_cuda_clip="skip", pytest_gpu="pass")
    assert report.overall(only_build) == "INCOMPLETE"
    assert report.overall(_statuses(kernels_vs_cpu="pass", torch_cuda_clip="skip")) == "INCOMPLETE"
    assert report.overall(_statuses(kernels_vs_cpu="pass", torch_cuda_clip="pass", fps="fail")) == "FAIL"
    assert report.overall(_statuses(kernels_vs_cpu="fail", torch_cuda_clip="timeout")) == "FAIL"
    assert report.overall(_statuses(kernels_vs_cpu="pass", torch_cuda_clip="pass", fps="timeout")) == "TIMEOUT"
    assert report.overall(_statuses(kernels_build="skip", kernels_vs_cpu="skip", torch_cuda_clip="skip")) == "NOTHING-RUN"
    assert report.overall([Outcome("environment", "skip", "no usable CUDA GPU here")]) == "NOTHING-RUN"
    assert report.EXIT == {"PASS": 0, "FAIL": 1, "NOTHING-RUN": 3, "INCOMPLETE": 4, "TIMEOUT": 5}
    line = report.verdict_lines(only_build)[-1]
    assert line == ("acceptance: INCOMPLETE (3 passed, 0 failed, 0 timed out, 2 skipped): PASS needs kernels-vs-cpu and "
                    "torch-cuda-clip to pass (kernels-vs-cpu skip: ; torch-cuda-clip skip: )")


# ---- builds: estimates, measured times, reuse ------------------------------------------------------------

HOPPER = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, "10.13.0.35", TOOLS, True)


def _write_manifest(folder: Path, size: tuple[int, int], engines: dict, fp16: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"frame_size": list(size), "graphs": {s: {} for s in STAGES}, "engines": engines,
            **({"graphs_fp16": {s: {} for s in STAGES}} if fp16 else {})}
    (folder / "manifest.json").write_text(json.dumps(data))


def _engine(seconds: float, opt: int = 1, gpu: str = HOPPER.gpu, sha: str = "a") -> dict:
    return {"sha256": sha, "build_seconds": seconds, "tensorrt": HOPPER.tensorrt, "gpu": gpu,
            "settings": {"opt_level": opt, "max_batch": 4}}


def test_measured_build_times_replace_the_documented_estimate(tmp_path):
    trt, fps = plan.needs("tensorrt", HOPPER)[0], plan.needs("fps", HOPPER)[0]
    assert (trt.folder, trt.opt_level, fps.folder, fps.opt_level) == ("544x960", 1, "1024x2048", 3)
    documented = Ledger(tmp_path / "engines", HOPPER.tensorrt, HOPPER.gpu).estimate(fps)
    # an earlier run with the same --out left the 544x960 engines, each built in 4 s on this GPU;
    # a folder built on another GPU says nothing about this one
    _write_manifest(tmp_path / "engines" / "544x960", (544, 960), {s: _engine(4.0) for s in STAGES})
    _write_manifest(tmp_path / "engines" / "other", (544, 960), {"keyframe": _engine(500.0, gpu="Tesla T4")})
    ledger = Ledger.scan(tmp_path / "engines", HOPPER.tensorrt, HOPPER.gpu)
    assert ledger.basis() == "scaled from 8 build time(s) measured on this machine"
    assert ledger.estimate(trt) == builds.REUSE_S  # everything is there with these settings
    export = builds.EXPORT_S * builds.export_scale((1024, 2048))
    engine = 4.0 * builds.engine_scale((1024, 2048), 3) / builds.engine_scale((544, 960), 1)
    assert ledger.estimate(fps) == pytest.approx(builds.REUSE_S + 2 * export + len(STAGES) * engine)  # FP32 + FP16 graphs
    assert ledger.estimate(fps) < documented
    # one engine measured at half its documented time: the others are expected at half theirs too
    one = Ledger(engines=[("keyframe", 30.0, (544, 960), 3)], exports=[(20.0, (544, 960))])
    others = sum(v for s, v in builds.ENGINE_BUILD_S.items() if s != "keyframe")
    assert one.estimate(Build("x", (544, 960), tensorrt=True)) == pytest.approx(builds.REUSE_S + 2 * 20 + 30 + others / 2)


@dataclass(frozen=True)
class _ScriptedBuild(Build):
    """A build whose command is a script (no TensorRT here): ``script`` gets the folder as argv[1]."""

    script: str = ""

    def argv(self, out: Path) -> list[str]:
        return ["-c", self.script, str(out)]


WRITES_ENGINES = f"""
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir(parents=True)
stages = {list(STAGES)!r}
engine = {{"sha256": "b", "build_seconds": 2.5, "tensorrt": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3",
          "settings": {{"opt_level": 1, "max_batch": 4}}}}
(out / "manifest.json").write_text(json.dumps({{"frame_size": [544, 960], "graphs": dict.fromkeys(stages, {{}}),
    "graphs_fp16": dict.fromkeys(stages, {{}}), "engines": dict.fromkeys(stages, engine)}}))
print("wrote")
"""


def test_builds_are_timed_recorded_and_reused(tmp_path):
    ledger = Ledger(tmp_path / "engines", HOPPER.tensorrt, HOPPER.gpu)
    lines: list[str] = []
    ctx = Context(tmp_path, None, lines.append, ledger)
    build = _ScriptedBuild("544x960", (544, 960), tensorrt=True, opt_level=1, script=WRITES_ENGINES)
    assert ctx.build(build, time.monotonic() + 120) == tmp_path / "engines" / "544x960"
    (entry,) = ledger.records
    assert entry["engines_built_s"] == dict.fromkeys(STAGES, 2.5) and entry["exit"] == 0 and not entry["reused"]
    assert entry["estimate_basis"].startswith("documented estimates") and entry["estimate_s"] > builds.REUSE_S
    assert lines[0].strip().startswith("544x960 ONNX graphs + TensorRT engines (opt level 1, max batch 4): built in ")
    assert (tmp_path / "logs" / "build-544x960-tensorrt.log").read_text() == "wrote\n"
    assert ledger.basis().startswith("scaled from") and ledger.estimate(build) == builds.REUSE_S  # the next check reuses it
    failing = _ScriptedBuild("1024x2048", (1024, 2048), script="import sys; sys.exit('error: no GPU for TensorRT')")
    with pytest.raises(RuntimeError, match=r"^1024x2048 ONNX graphs: build failed \(exit 1\): error: no GPU for TensorRT$"):
        ctx.build(failing, time.monotonic() + 120)
    assert ledger.records[-1]["exit"] == 1


# ---- time limits -------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_command_past_its_deadline_is_killed_with_everything_it_started(tmp_path):
    ctx = Context(tmp_path, None, print, Ledger())
    pid_file = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "print('started', flush=True)\n"
            "time.sleep(120)\n")
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"^`python -c \.\.\.` \(log: .*slow.log\) did not finish within 4 s$"):
        ctx.command("slow", ["-c", code], time.monotonic() + 4)
    assert time.monotonic() - started < 30
    assert (tmp_path / "logs" / "slow.log").read_text() == "started\n"
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild), "the command's own child outlived the timeout"


def test_a_check_out_of_time_reports_timeout_with_its_limit(tmp_path, monkeypatch):
    def sleeps(ctx, check, machine, deadline):
        ctx.command("pytest-gpu", ["-c", "import time; time.sleep(60)"], deadline)

    monkeypatch.setitem(checks.RUNNERS, "pytest-gpu", sleeps)
    check = plan.Check("pytest-gpu", "", budget_s=2, limit_s=3, build_s=1, build_basis="documented estimates")
    outcome = checks.run(check, Context(tmp_path, None, print, Ledger()), PASCAL)
    assert outcome.status == "timeout" and outcome.figures["limit_s"] == 3 and 2.5 < outcome.seconds < 20
    assert outcome.summary.endswith("did not finish within 3 s; the check had 3 s (1 s to run + 1 s to build "
                                    "(documented estimates) + 1 s spare); a rerun with the same --out reuses what was built")
    assert report.verdict_lines([outcome])[0].startswith("TIMEOUT  pytest-gpu")


def test_a_run_replans_before_each_check_and_reports_a_timeout(tmp_path, monkeypatch):
    hopper = Machine("NVIDIA H100 80GB HBM3", (9, 0), (13, 0), True, None, TOOLS, True, torch_version="2.13.0+cu128")
    monkeypatch.setattr(checks, "probe", lambda clip: hopper)
    seen: dict[str, plan.Check] = {}

    def passes(ctx, check, machine, deadline):
        seen[check.name] = check
        return Outcome(check.name, "pass", "ok")

    def late(ctx, check, machine, deadline):
        raise TimedOut("`python -m pytest`", check.limit)

    for name in ("kernels-build", "kernels-vs-cpu", "torch-cuda-clip", "fps"):
        monkeypatch.setitem(checks.RUNNERS, name, passes)
    monkeypatch.setitem(checks.RUNNERS, "pytest-gpu", late)
    lines: list[str] = []
    out = tmp_path / "out"
    assert run(AcceptanceOptions(out, budget=2000), log=lines.append) == 5
    assert lines[-2].startswith("acceptance: TIMEOUT (5 passed, 0 failed, 1 timed out, 1 skipped): pytest-gpu ran out "
                                "of time (not a verdict on the code) in ") and lines[-2].endswith("exit status 5")
    assert (out / "acceptance.log").read_text() == "".join(line + "\n" for line in lines)
    (report_json,) = out.glob("*-gpu-acceptance-nvidia-h100-80gb-hbm3.json")
    data = json.loads(report_json.read_text())
    assert data["verdict"] == "TIMEOUT" and [c["status"] for c in data["checks"]] == \
        ["pass", "pass", "pass", "pass", "skip", "timeout", "pass"]
    # re-planned from what is on disk: the stand-in kernels-vs-cpu built nothing, so torch-cuda-clip is budgeted for the build
    assert seen["torch-cuda-clip"].build_s == seen["kernels-vs-cpu"].build_s > 0
    # and from the time actually left: the stand-ins took none, so the last check may use nearly all 2000 s
    static = {c.name: c for c in plan.plan(hopper, 2000)}
    assert seen["fps"].limit_s >= 1990 > static["fps"].limit_s


# ---- frames without PyAV, and a whole run on a simulated lent machine ----------------------------------------------

def test_frames_default_to_the_shipped_sample_and_need_no_decoder(tmp_path, monkeypatch):
    from gsvnet.samples import resize_bilinear, sample_frames

    for module in ("av", "runtime.video", "cv2"):
        monkeypatch.setitem(sys.modules, module, None)  # import -> ImportError
    ctx = Context(tmp_path, None, print, Ledger())
    frames = ctx.frames()
    assert len(frames) == 8 and frames[0].shape == (1, 544, 960, 3) and frames[0].dtype == np.uint8
    assert np.array_equal(frames[3], resize_bilinear(sample_frames()[3:4], (544, 960)))
    assert ctx.frames_source.startswith("gsvnet/samples/road.npz")


def test_a_clip_is_read_with_opencv_where_pyav_is_missing(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")  # in the dev extra; the lent GPU machines have it
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    for bgr in ((0, 0, 255), (0, 255, 0), (255, 0, 0)):  # red, green, blue
        writer.write(np.full((64, 96, 3), bgr, np.uint8))
    writer.release()
    monkeypatch.setitem(sys.modules, "runtime.video", None)  # as without PyAV
    frames = read_video(path, 16, (32, 48))
    assert [f.shape for f in frames] == [(1, 32, 48, 3)] * 3
    assert [int(np.argmax(f[0].reshape(-1, 3).mean(axis=0))) for f in frames] == [0, 1, 2]  # RGB order
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(RuntimeError, match="neither PyAV nor OpenCV imports here"):
        read_video(path, 16, (32, 48))


def test_a_lent_machine_without_gpu_pyav_or_shared_data_gives_nothing_run(tmp_path):
    from plugins.launcher import gpu_unavailable_reason

    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is here: the checks would run")
    tree = tmp_path / "lent" / "repo"  # a copied working tree: no ../shared beside it
    from tests.export.test_layers import MAY_IMPORT  # every top-level package (that test guards the list)

    for part in MAY_IMPORT:
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("__pycache__", "results"))
    block = tmp_path / "site"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['av'] = None  # PyAV is not installed here\n")
    env = {**os.environ, "PYTHONPATH": str(block)}
    no_av = subprocess.run([sys.executable, "-c", "import av"], cwd=tree, env=env, capture_output=True, text=True)
    assert no_av.returncode == 1 and "import of av halted" in no_av.stderr  # the simulation holds, in every child too
    tree_before = sorted(p for p in tree.rglob("*") if "__pycache__" not in p.parts)
    out = tmp_path / "acceptance"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_acceptance", "--out", str(out)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr and proc.stderr == ""
    assert proc.stdout.splitlines()[0].startswith("SKIP     environment         0.0 s  no usable CUDA GPU here (")
    assert "acceptance: NOTHING-RUN (0 passed, 0 failed, 0 timed out, 7 skipped): no GPU check could run" in proc.stdout
    (report_json,) = out.glob("*-gpu-acceptance-no-gpu.json")
    data = json.loads(report_json.read_text())
    assert (data["verdict"], data["exit_status"]) == ("NOTHING-RUN", 3)
    assert data["environment"]["frames_source"].startswith("gsvnet/samples/road.npz")
    assert (out / "acceptance.log").read_text() == proc.stdout
    assert report_json.with_suffix(".png").is_file()
    assert sorted(p for p in tree.rglob("*") if "__pycache__" not in p.parts) == tree_before  # nothing outside --out


def test_a_clip_that_is_not_there_stops_in_one_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--out", str(out), "--clip", str(tmp_path / "missing.mp4")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: --clip {tmp_path / 'missing.mp4'} is not a file; omit --clip to use the real frames shipped in gsvnet/samples"
    assert not out.exists()
