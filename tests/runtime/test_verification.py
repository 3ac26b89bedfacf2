"""First-use verification (runtime/verification.py, runtime/loading.py): a backend whose numbers
are wrong is caught before it segments anything, ``auto`` moves on, a verdict costs once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from engine_format.manifest import load_manifest
from runtime import backends, verification
from runtime.backends import BackendEntry
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.errors import UserError
from runtime.loading import load_backend
from tests.conftest import private_engines, run_module
from tests.runtime.cpu_timings import fake_cpu_timings


@pytest.fixture(autouse=True)
def onnxruntime_measured_fastest(monkeypatch) -> None:
    """``auto`` takes the CPU engine measured fastest; here that is onnxruntime, whatever this
    machine would measure (tests/runtime/test_cpu_choice.py tests the choice itself)."""
    fake_cpu_timings(monkeypatch, {"onnxruntime": 1.0, "openvino": 2.0})


@pytest.fixture
def folder(engines, tmp_path) -> Path:
    """A private copy of the session's random-weight engines (without any kept verdict, or
    timings another test measured on this machine: those would decide ``auto`` instead of the
    fake timings above)."""
    return private_engines(engines, tmp_path / "eng")


def alter_keyframe_graph(folder: Path) -> None:
    """Negate the weights of the keyframe graph's last convolution and record the new sha256 in
    the manifest, so every file check passes and only the numbers are wrong."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["graphs"]["keyframe"]
    path = folder / entry["file"]
    model = onnx.load(str(path))
    last_conv = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    weights = {i.name: i for i in model.graph.initializer}[last_conv.input[1]]
    weights.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weights), weights.name))
    onnx.save(model, str(path))
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_clean_folder_passes_once_and_is_not_checked_again(folder, monkeypatch):
    calls = []
    real = verification.check_labels
    monkeypatch.setattr(verification, "check_labels", lambda *a: calls.append(1) or real(*a))
    lines: list[str] = []
    first = load_backend("auto", load_manifest(folder), log=lines.append)
    assert first.backend.name == "onnxruntime" and first.verdict.status == "passed" and not first.verdict.cached
    assert min(first.verdict.agreement) >= 0.995 and len(first.verdict.agreement) == 4
    assert any(line.startswith("verification: onnxruntime passed:") for line in lines), lines
    second = load_backend("auto", load_manifest(folder), log=lines.append)
    assert second.verdict.status == "passed" and second.verdict.cached and len(calls) == 1
    kept = json.loads((folder / verification.VERDICTS).read_text())
    ident = next(iter(kept.values()))["identity"]
    assert ident["backend"] == "onnxruntime" and "keyframe.onnx" in ident["files"] and ident["versions"]["onnxruntime"]
    forced = load_backend("auto", load_manifest(folder), verify="force", log=lines.append)
    assert not forced.verdict.cached and len(calls) == 2
    # another CPU (other kernels) is checked again
    monkeypatch.setattr(OnnxRuntimeBackend, "device_identity", lambda self: {"cpu": "another CPU"})
    assert not load_backend("auto", load_manifest(folder), log=lines.append).verdict.cached and len(calls) == 3


def test_an_altered_graph_with_a_matching_hash_is_caught_and_auto_moves_on(folder):
    alter_keyframe_graph(folder)
    lines: list[str] = []
    loaded = load_backend("auto", load_manifest(folder), log=lines.append)
    assert loaded.backend.name == "torch" and loaded.verdict.status == "reference"
    refused = [line for line in lines if line.startswith("verification: onnxruntime failed:")]
    assert len(refused) == 1 and "of the pixels of frame" in refused[0] and refused[0].endswith("trying the next backend")
    assert "onnxruntime: failed verification" in loaded.why
    with pytest.raises(UserError, match=r"^verification: onnxruntime failed \(kept verdict\): labels equal on only [0-9.]+% .* not using it"):
        load_backend("onnxruntime", load_manifest(folder), log=lines.append)


def test_explicit_backend_that_fails_verification_exits_2_with_one_line(folder, real_clip, tmp_path):
    alter_keyframe_graph(folder)
    out = tmp_path / "labels"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(folder), "--labels-dir", str(out),
                      "--max-frames", "4", "--backend", "onnxruntime", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: verification: onnxruntime failed: labels equal on only") and "Traceback" not in proc.stderr
    assert not out.exists()
    # --no-verify runs it anyway and says so in the stats
    stats = tmp_path / "stats.json"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(folder), "--stats", str(stats),
                      "--max-frames", "4", "--backend", "onnxruntime", "--no-verify", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(stats.read_text())["verification"]["status"] == "skipped"


class PerturbedScores(OnnxRuntimeBackend):
    """A stand-in GPU backend whose keyframe scores are wrong (as a broken plugin or kernel would be)."""

    name = "tensorrt"
    precision = "fp16"

    def run(self, stage, *inputs):
        out = super().run(stage, *inputs)
        if stage == "keyframe":
            out = np.roll(out, 1, axis=1)  # every pixel's class shifted by one
        return out


def test_a_gpu_backend_with_wrong_scores_makes_auto_fall_back_with_one_line(folder, monkeypatch):
    fake = BackendEntry("tensorrt", lambda m: None, lambda m, threads, profile, plan, precision: PerturbedScores(m),
                        gpu=True)
    monkeypatch.setitem(backends.REGISTRY, "tensorrt", fake)
    lines: list[str] = []
    loaded = load_backend("auto", load_manifest(folder), log=lines.append)
    assert loaded.backend.name == "onnxruntime" and loaded.verdict.status == "passed"
    refused = [line for line in lines if "tensorrt" in line and "failed" in line]
    assert refused == [next(line for line in lines if line.startswith("verification: tensorrt failed: labels equal on only"))]
    assert "(needs 99.5%)" in refused[0] and "FP32 reference labels" in refused[0]


def test_a_folder_without_a_verification_set_runs_and_says_so(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["verification"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []
    loaded = load_backend("auto", load_manifest(folder), log=lines.append)
    assert loaded.backend.name == "onnxruntime" and loaded.verdict.status == "unavailable"
    assert any("has no verification set" in line and "python -m export.build_engines" in line for line in lines)


def test_the_verification_set_holds_real_frames_and_the_pytorch_labels(engines):
    """The stored labels are the checkpoint's own (recomputed here with PyTorch), on non-trivial frames."""
    import torch

    from engine_format.verification_set import engine_frames, read_verification_set
    from gsvnet import load_checkpoint

    manifest = load_manifest(engines)
    data = read_verification_set(engines / manifest.data["verification"]["file"])
    frames = engine_frames(data["frames"], manifest.frame_size)
    assert frames.shape == (4, *manifest.frame_size, 3) and frames.std() > 20  # real pictures, not flat
    model, _ = load_checkpoint(engines / "model.pt")
    model.eval()
    with torch.inference_mode():
        state = model.keyframe_step(torch.from_numpy(frames[:1]))
        for k in range(1, 4):
            state = model.propagation_step(state, torch.from_numpy(frames[k:k + 1]))
        last = model.labels(state, manifest.frame_size)[0].numpy()
    assert np.array_equal(last, data["labels_fp32"][3])
    assert len(np.unique(data["labels_fp32"])) > 1


class KernelDisagrees(OnnxRuntimeBackend):
    """A stand-in GPU backend whose labels agree but one of whose own kernels does not."""

    name = "torch-cuda"

    def kernel_checks(self, frames):
        assert frames.shape[0] == 4 and frames.shape[1:3] == self.frame_size and frames.std() > 20  # real frames
        return ["our chunk_filter kernel differs from gsvnet.ops by 0.5 on real intermediates (limit 0.001)"]


def test_a_kernel_that_disagrees_with_the_reference_ops_fails_verification(folder, monkeypatch):
    fake = BackendEntry("torch-cuda", lambda m: None, lambda m, threads, profile, plan, precision: KernelDisagrees(m),
                        gpu=True)
    monkeypatch.setitem(backends.REGISTRY, "torch-cuda", fake)
    lines: list[str] = []
    loaded = load_backend("auto", load_manifest(folder), log=lines.append)
    assert loaded.backend.name == "onnxruntime"
    assert ("verification: torch-cuda failed: our chunk_filter kernel differs from gsvnet.ops by 0.5 on real "
            "intermediates (limit 0.001); trying the next backend") in lines
