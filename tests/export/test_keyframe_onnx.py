"""``build_engines --keyframe-onnx``: a segmenter that is not one of ours becomes the keyframe net.

- A model written here with other conventions (BGR, inputs on -1..1, a fixed 96x160 input, 5
  classes, softmax probabilities at 1/4 of its input), exported to ONNX by PyTorch's TorchScript
  exporter at opset 17: it builds, and at l = 1 every CPU backend's labels equal the argmax of
  its own output computed here with torch.nn.functional (not with gsvnet).
- The shipped SwiftNet exported alone to a plain ONNX file and imported, with the shipped
  propagation nets: the labels equal the native build's on the real clip at l = 4.
- What the graph contradicts, or cannot be, is one line naming the flag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsvnet import load_checkpoint
from gsvnet.model import key_size
from gsvnet.pretrained import default_checkpoint
from tests.conftest import ENGINE_SIZE, clip_frames, run_module
from tests.runtime.output_checks import read_label_pngs
from tests.runtime.videos import write_lossless_frames

FRAMES = 6
INPUT = (96, 160)


class Foreign(nn.Module):
    """BGR NCHW input on -1..1, 5 classes, softmax probabilities at stride 4."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 5, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.body(x), dim=1)


def export_legacy(module: nn.Module, path: Path, shape: tuple[int, ...], names=("pixels", "probs")) -> Path:
    with torch.no_grad():
        torch.onnx.export(module.eval(), (torch.randn(*shape),), str(path), input_names=[names[0]],
                          output_names=[names[1]], dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}},
                          opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> tuple[Foreign, Path]:
    torch.manual_seed(7)
    net = Foreign().eval()
    return net, export_legacy(net, tmp_path_factory.mktemp("foreign") / "foreign.onnx", (2, 3, *INPUT))


@pytest.fixture(scope="module")
def clip_video(real_clip_path, tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """The first frames of the real clip at the engine size, in a lossless video (decoded exactly)."""
    frames = [f[0] for f in clip_frames(real_clip_path, FRAMES, ENGINE_SIZE)]
    path = tmp_path_factory.mktemp("clip") / "clip.mov"
    write_lossless_frames(frames, path)
    return path, frames


@pytest.fixture(scope="module")
def real_clip_path() -> Path:
    from tests.conftest import CLIP, shared_data

    return shared_data(CLIP, "real clip")


def reference_labels(net: Foreign, frame: np.ndarray) -> np.ndarray:
    """The model's own labels for a frame, resized as the keyframe graph resizes: torch only."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate((x - 0.5) / 0.5, size=INPUT, mode="bilinear", align_corners=False).flip(1)
    with torch.no_grad():
        scores = torch.log(net(x).clamp_min(1e-6))
    grid = (ENGINE_SIZE[0] // 8, ENGINE_SIZE[1] // 8)
    scores = F.interpolate(F.interpolate(scores, size=grid, mode="bilinear", align_corners=False),
                           size=ENGINE_SIZE, mode="bilinear", align_corners=False)
    return scores.argmax(dim=1)[0].numpy().astype(np.uint8)


def build(tmp: Path, model: Path, *flags: str) -> Path:
    out = tmp / "eng"
    proc = run_module("export.build_engines", "--keyframe-onnx", str(model), "--size",
                      f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}", "--backend", "onnx", "--out", str(out), *flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def foreign_engines(foreign, tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("foreign-engines"), foreign[1], "--bgr", "--mean", "0.5", "0.5", "0.5",
                 "--std", "0.5", "0.5", "0.5")


def test_the_manifest_records_what_the_model_takes_and_gives(foreign_engines):
    import json

    model = json.loads((foreign_engines / "manifest.json").read_text())["model"]
    spec = model["keyframe_import"]
    assert model["keyframe_net"] == "onnx" and model["num_classes"] == 5
    assert spec["input_size"] == list(INPUT) and spec["layout"] == "NCHW" and spec["bgr"] is True
    assert spec["output"] == "probabilities" and spec["output_stride"] == 4.0 and spec["opset"] == 17
    assert spec["mean"] == [0.5, 0.5, 0.5] and spec["input_name"] == "pixels"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_a_foreign_segmenter_gives_its_own_labels_at_interval_1(foreign, foreign_engines, clip_video, backend, tmp_path):
    if backend == "openvino":
        from tests.requirements import require_module

        require_module("openvino", "the openvino backend is one of the package's CPU backends")
    net, _ = foreign
    video, frames = clip_video
    labels = tmp_path / "labels"
    proc = run_module("runtime.infer", "--video", str(video), "--engines", str(foreign_engines), "--backend", backend,
                      "--interval", "1", "--labels-dir", str(labels), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for k, (got, frame) in enumerate(zip(read_label_pngs(labels, FRAMES), frames)):
        want = reference_labels(net, frame)
        agree = float((got == want).mean())
        assert agree >= 0.999, f"{backend} frame {k}: {100 * agree:.3f}% of the pixels agree with the model's own labels"
        assert len(np.unique(want)) > 1  # the reference is not trivially one class


def test_the_shipped_swiftnet_imported_as_onnx_labels_as_the_native_build(shipped_engines, clip_video, tmp_path):
    model, _ = load_checkpoint(default_checkpoint("swiftnet_r18"))
    size = key_size(ENGINE_SIZE, model.config.key_scale)
    onnx_file = tmp_path / "swiftnet.onnx"  # as a user exports it with today's PyTorch: torch.export, opset 18
    with torch.no_grad():
        torch.onnx.export(model.keyframe.eval(), (torch.randn(2, 3, *size),), str(onnx_file), dynamo=True,
                          input_names=["input"], output_names=["logits"], external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    norm = model.config.normalization  # what the shipped net was trained with, stated on 0..1 as a user would
    imported = build(tmp_path, onnx_file, "--mean", *(f"{v / 255:.10g}" for v in norm["mean"]),
                     "--std", *(f"{v / 255:.10g}" for v in norm["std"]))  # RGB; the shipped propagation nets
    video, _ = clip_video
    out = {}
    for name, folder in (("native", shipped_engines), ("imported", imported)):
        out[name] = tmp_path / f"{name}-labels"
        proc = run_module("runtime.infer", "--video", str(video), "--engines", str(folder), "--backend", "onnxruntime",
                          "--interval", "4", "--labels-dir", str(out[name]), "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for k, (a, b) in enumerate(zip(read_label_pngs(out["native"], FRAMES), read_label_pngs(out["imported"], FRAMES))):
        assert float((a == b).mean()) >= 0.999, f"frame {k}"


@pytest.mark.parametrize("flags, needle", [
    (["--input-size", "64x64"], "--input-size 64x64 contradicts the model, whose input is fixed to 96x160"),
    (["--mean", "123", "116", "103"], "--mean/--std are on 0..1 RGB values"),
    (["--precision", "int8", "--calibration", "."], "--precision int8 does not go with it"),
])
def test_contradictions_are_one_line(foreign, tmp_path, flags, needle):
    proc = run_module("export.build_engines", "--keyframe-onnx", str(foreign[1]), "--out", str(tmp_path / "e"),
                      "--size", "136x240", "--backend", "onnx", *flags)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]


def test_a_fixed_batch_model_is_refused_with_the_fix(tmp_path):
    net = Foreign().eval()
    path = tmp_path / "fixed.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (torch.randn(1, 3, *INPUT),), str(path), opset_version=17, dynamo=False)
    proc = run_module("export.build_engines", "--keyframe-onnx", str(path), "--out", str(tmp_path / "e"),
                      "--size", "136x240", "--backend", "onnx")
    assert proc.returncode == 2 and "re-export with a dynamic batch axis" in proc.stderr, proc.stderr[-2000:]


def test_evaluation_video_measures_an_imported_folder_against_its_own_model(foreign_engines, clip_video, tmp_path):
    """``python -m evaluation video --engines`` on an imported folder: GSVNet on the backend, warp-only
    and hold on the reference, every row's keyframes from the folder's keyframe graph; at the
    keyframe itself (d = 0) each row is the model's own labels."""
    import json

    video, _ = clip_video
    out = tmp_path / "eval.json"
    proc = run_module("evaluation", "video", "--video", str(video), "--engines", str(foreign_engines), "--backend",
                      "onnxruntime", "--holdout", "0.5", "--max-distance", "2", "--fps", "2", "--json", str(out),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (section,) = [v for k, v in json.loads(out.read_text()).items() if k.startswith("video_")]
    assert set(section["rows"]) == {"gsvnet", "warp_only", "hold"}
    for name, row in section["rows"].items():
        assert row["miou_by_distance"]["0"] == pytest.approx(1.0), name
    assert "keyframe graph of" in section["rows"]["hold"]["backend"]
    speed = section["speed"]  # the same backend at l = 1 (the model on every frame) and l = 2, same run
    assert speed["rounds"] == 2 and set(speed["fps"]) == {"1", "2"} and min(speed["fps"].values()) > 0
    assert speed["vs_every_frame"]["1"] == 1.0
    assert speed["vs_every_frame"]["2"] == pytest.approx(speed["fps"]["2"] / speed["fps"]["1"])


def test_an_imported_folder_compiles_to_engines_held_to_the_users_model(foreign, foreign_engines, monkeypatch, tmp_path):
    """The TensorRT build of an imported folder, with stand-ins for TensorRT's own calls (a "plan"
    runs its ONNX file in onnxruntime; tests/export/test_tensorrt_build.py): every stage gets an
    engine; the keyframe engine's graph is the user's FP32 model with FP16 scores out (the type the
    FP16 propagation engines take), equal to the model within FP16 rounding on real frames; a
    keyframe engine that disagrees with the user's model is refused and never listed."""
    import shutil

    from engine_format.compat import ENGINE_STAGES
    from engine_format.manifest import read_manifest
    from engine_format.sessions import make_session
    from engine_format.verification_set import engine_frames, read_verification_set
    from export.build_errors import BuildError
    from tests.export.test_tensorrt_build import _build_with_fakes

    def folder(name: str):
        copy = tmp_path / name
        shutil.copytree(foreign_engines, copy)
        return read_manifest(copy), load_checkpoint(copy / "model.pt")[0].eval()

    lines: list[str] = []
    built = _build_with_fakes(monkeypatch, folder("ok"), set(), lines.append)
    assert set(built.engines) == set(ENGINE_STAGES)
    graph = built.data["graphs_fp16"]["keyframe"]
    assert graph["precision"] == built.engines["keyframe"]["precision"] == "fp32-fp16-output"
    assert graph["outputs"][0]["dtype"] == "float16" and built.engines["keyframe"]["outputs"][0]["dtype"] == "float16"
    assert any("stays FP32 inside its engine" in line for line in lines), lines
    # the FP16-output graph against the user's own model (torch, not our graphs), on the real frames
    net, _ = foreign
    frames = engine_frames(read_verification_set(built.file(built.data["verification"]["file"]))["frames"], ENGINE_SIZE)
    got = make_session(built.file(graph["file"])).run(None, {graph["inputs"][0]["name"]: frames})[0]
    want = make_session(built.file(built.graphs["keyframe"]["file"])).run(None, {graph["inputs"][0]["name"]: frames})[0]
    assert got.dtype == np.float16 and float(np.abs(want).max()) > 0.1
    assert np.abs(got.astype(np.float64) - want).max() <= 1e-3 * (1 + np.abs(want).max())
    own = np.stack([reference_labels(net, f) for f in frames])
    upsampled = F.interpolate(torch.from_numpy(got.astype(np.float32)), size=ENGINE_SIZE, mode="bilinear", align_corners=False)
    assert float((upsampled.argmax(dim=1).numpy() == own).mean()) > 0.97

    with pytest.raises(BuildError, match="keyframe"):
        _build_with_fakes(monkeypatch, folder("bad"), {"keyframe"})
    assert "keyframe" not in read_manifest(tmp_path / "bad").engines


def test_torch_cuda_refuses_an_imported_folder_in_one_line(foreign_engines, shipped_engines):
    """torch-cuda runs PyTorch modules, and an imported keyframe net is only a graph: it says so
    before it looks for a GPU (the shipped folder gets the GPU's reason, or none)."""
    from engine_format.manifest import read_manifest
    from runtime.backends import unavailable_reason

    why = unavailable_reason("torch-cuda", read_manifest(foreign_engines))
    assert why is not None and why.startswith("its keyframe net is an imported ONNX model") and "tensorrt" in why
    assert "imported" not in (unavailable_reason("torch-cuda", read_manifest(shipped_engines)) or "")
