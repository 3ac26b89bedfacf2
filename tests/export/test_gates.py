"""Every accuracy gate of the build refuses a deliberately broken graph, in one line that names
what disagreed: the INT8 keyframe graph's class agreement (a quantised graph with a corrupted
scale), the FP16 graphs' tolerance (an FP16 graph with a flipped sign), and the FP32 export
verification (a stage graph with one perturbed weight, a labels graph held to another resize).
The broken graphs are made for real (the real exporter or quantiser, then one tensor changed);
the gates themselves run unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from export import BuildOptions, build, builder, graphs, quantize, tensorrt_build
from export.build_errors import BuildError
from engine_format.manifest import FORMAT, VERSION, Manifest, sha256_file
from export.onnx_export import export_stage
from engine_format.stages import stage_table
from gsvnet.stages import stage_functions
from export.verify import verify_stage
from gsvnet import GSVNet, GSVNetConfig, load_checkpoint
from gsvnet.pretrained import default_checkpoint
from tests.conftest import CAMVID, shared_data


def one_line(error: BaseException) -> str:
    """The error's text, asserted to be one line."""
    text = str(error)
    assert text and "\n" not in text.strip(), text
    return text


# ---- INT8 class agreement (export/quantize.py) ------------------------------------------------

INT8_SIZE = (96, 128)  # CamVid's 3:4 at a size the quantiser calibrates in seconds


def test_class_agreement_compares_the_class_of_every_cell():
    """Scores [N,C,h,w] built so that the class axis gives exactly 3/4; the batch, height or
    width axis would give another share (argmax over the batch of a batch of 1 is always 1.0)."""
    rng = np.random.default_rng(0)
    want = rng.standard_normal((2, 5, 4, 6)).astype(np.float32)
    got = want.copy()
    cls = want.argmax(1)
    flipped = np.zeros((2, 4, 6), bool)
    flipped[0, :2, :3] = flipped[1, 2:, :3] = True  # 12 of the 48 cells
    n, y, x = np.nonzero(flipped)
    got[n, (cls[n, y, x] + 1) % 5, y, x] = want[n, cls[n, y, x], y, x] + 0.1  # another class wins there
    assert quantize.class_agreement(want, got) == 0.75
    for axis in (0, 2, 3):  # the share any other axis would report
        assert np.mean(want.argmax(axis) == got.argmax(axis)) != 0.75, axis
    assert quantize.class_agreement(want[:1], want[:1] + 0.5) == 1.0  # a shift of every score: same classes
    with pytest.raises(BuildError, match=r"do not have the FP32 graph's shape"):
        quantize.class_agreement(want, got[:, :4])


@pytest.fixture(scope="module")
def keyframe_fp32(tmp_path_factory) -> tuple[Path, dict, tuple[list[Path], dict]]:
    """The shipped weights' FP32 keyframe graph at INT8_SIZE, its manifest entry, and 4 CamVid
    train images as calibration (files, record) the way build_engines records them."""
    train = shared_data(CAMVID / "train", "CamVid train split")
    shipped = default_checkpoint("swiftnet_r18")
    assert shipped is not None, "no shipped swiftnet_r18 weights in gsvnet/weights/"
    model, _ = load_checkpoint(shipped)
    stage = stage_table(model.num_classes, model.config.radius, INT8_SIZE)["keyframe"]
    path = tmp_path_factory.mktemp("keyframe") / "keyframe.onnx"
    export_stage(model, stage, stage_functions(INT8_SIZE)["keyframe"], path)
    entry = {"file": path.name, "sha256": sha256_file(path), "precision": "fp32",
             "inputs": [s.to_dict() for s in stage.inputs], "outputs": [s.to_dict() for s in stage.outputs]}
    files = quantize.calibration_files(train, 4)
    return path, entry, (files, {"folder": str(train), "frames": len(files), "sha256": quantize.files_digest(files)})


def corrupt_scale(path: Path, factor: float = 4.0) -> str:
    """Multiply the per-channel weight scales of the first quantised convolution of the QDQ
    graph at ``path`` by ``factor`` in place (a mis-written scale: those weights dequantise
    ``factor`` times too large); returns that scale's name. At 4x about half of the cells of
    the shipped keyframe net change class."""
    model = onnx.load(str(path))
    initializers = {i.name: i for i in model.graph.initializer}
    produced = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    scale = initializers[produced[conv.input[1]].input[1]]
    assert len(scale.dims) == 1 and scale.dims[0] > 1, "expected per-channel weight scales"
    scale.CopyFrom(numpy_helper.from_array(factor * numpy_helper.to_array(scale), scale.name))
    onnx.save(model, str(path))
    return scale.name


def _quantise(keyframe_fp32, folder: Path, log: Callable[[str], None]) -> dict:
    path, entry, calibration = keyframe_fp32
    folder.mkdir()
    shutil.copy(path, folder / entry["file"])
    return quantize.quantize_keyframe_graph(folder, entry, calibration, INT8_SIZE, log)


def test_int8_gate_passes_the_real_quantised_graph(keyframe_fp32, tmp_path):
    lines: list[str] = []
    entry = _quantise(keyframe_fp32, tmp_path / "eng", lines.append)
    assert entry["verification"]["ok"] and entry["verification"]["class_agreement"] >= quantize.MIN_AGREEMENT
    assert (tmp_path / "eng" / "keyframe.int8.onnx").is_file() and lines[-1].endswith("ok")


def test_int8_gate_refuses_a_quantised_graph_with_a_corrupted_scale(keyframe_fp32, tmp_path, monkeypatch):
    real = quantize.quantize_keyframe
    corrupted: list[str] = []

    def quantise_then_corrupt(fp32: Path, out: Path, frames: list, input_name: str = "image") -> None:
        real(fp32, out, frames, input_name)  # the real INT8 graph, then one scale of it negated
        corrupted.append(corrupt_scale(out))

    monkeypatch.setattr(quantize, "quantize_keyframe", quantise_then_corrupt)
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        _quantise(keyframe_fp32, tmp_path / "eng", lines.append)
    assert corrupted, "the quantiser did not run"
    message = one_line(info.value)
    assert message.startswith("the INT8 keyframe graph picks the FP32 graph's class on only ")
    assert "at least 90% needed" in message and "no manifest was written" in message
    agreement = float(message.split("on only ")[1].split("%")[0])
    assert agreement < 100 * quantize.MIN_AGREEMENT
    assert lines[-1].endswith("FAILED") and "classes agree with FP32 on " in lines[-1]
    assert sorted(p.name for p in (tmp_path / "eng").iterdir()) == ["keyframe.onnx"]  # no INT8 graph left


# ---- FP16 tolerance (export/tensorrt_build.py export_fp16_graphs, export/verify.py) -----------

SIZE = (32, 64)


def small_model() -> GSVNet:
    """A random 5-class GSVNet with a moving flow net (its zero-initialised last conv drawn)."""
    torch.manual_seed(0)
    model = GSVNet(GSVNetConfig(num_classes=5)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.flow.toflow.weight, std=0.05)
    return model


def perturb_export(monkeypatch: pytest.MonkeyPatch, stage: str, change: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    """Make the build's exporter (export.graphs.export_stage, the real one) write ``stage``'s graph
    with ``change`` applied to its largest float initializer; returns the names changed."""
    changed: list[str] = []

    def perturb(proto: onnx.ModelProto) -> onnx.ModelProto:
        floats = [i for i in proto.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
        target = max(floats, key=lambda i: int(np.prod(i.dims)))
        value = numpy_helper.to_array(target)
        target.CopyFrom(numpy_helper.from_array(change(value).astype(value.dtype), target.name))
        changed.append(target.name)
        return proto

    def export(model, spec, fn, path, opset, transform):
        def composed(proto, s):
            proto = transform(proto, s) if transform is not None else proto
            return perturb(proto) if s.name == stage else proto

        return export_stage(model, spec, fn, path, opset, composed)

    monkeypatch.setattr(graphs, "export_stage", export)
    return changed


def fp16_manifest(folder: Path) -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, "build_key": "key-1", "model": {"num_classes": 5},
            "frame_size": list(SIZE), "graphs": {}, "checkpoint": {}, "opset": 18, "custom_ops": "function", "engines": {}}
    return Manifest(folder, data)


@pytest.mark.parametrize("stage,change", [("intra", np.negative), ("flow", lambda w: 1.5 * w)],
                         ids=["intra-sign-flipped", "flow-weight-scaled"])
def test_fp16_gate_refuses_a_perturbed_fp16_graph(tmp_path, monkeypatch, stage, change):
    model = small_model()
    changed = perturb_export(monkeypatch, stage, change)
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        tensorrt_build.export_fp16_graphs(fp16_manifest(tmp_path / "eng"), model, lines.append, stages=("warp", stage))
    assert changed, "the perturbation was not applied"
    assert one_line(info.value) == (f"FP16 graphs disagree with the FP32 model beyond tolerance for: {stage} "
                                    "(see the lines above); no engine was built")
    verdicts = {line.split()[1]: line.split()[-1] for line in lines}
    assert verdicts == {"warp": "ok", stage: "FAILED"}, lines
    assert not (tmp_path / "eng" / f"{stage}.fp16.onnx").exists() and not list((tmp_path / "eng").glob(".*.tmp"))


def test_fp16_gate_passes_the_flow_graph_unperturbed(tmp_path):
    """The control of the flow case (intra's: tests/export/test_tensorrt_build.py)."""
    lines: list[str] = []
    tensorrt_build.export_fp16_graphs(fp16_manifest(tmp_path / "eng"), small_model(), lines.append, stages=("flow",))
    assert len(lines) == 1 and lines[0].endswith("ok"), lines


# ---- FP32 export verification (export/builder.py, export/verify.py) ---------------------------

def test_export_verification_refuses_a_stage_with_one_perturbed_weight(tmp_path, monkeypatch):
    """One weight tensor of the exported intra graph 1% larger: beyond the 1e-4 tolerance, the
    build stops naming that stage only, and no manifest or graph file is written."""
    changed = perturb_export(monkeypatch, "intra", lambda w: 1.01 * w)
    monkeypatch.setattr(builder, "STAGES", ("flow", "intra"))  # only two stages, for time
    options = BuildOptions(random_weights=True, num_classes=5, out=tmp_path / "eng", size=(32, 64), backend="onnx")
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        build(options, log=lines.append)
    assert changed
    assert one_line(info.value) == ("onnxruntime disagrees with PyTorch beyond tolerance for: intra (see the lines above); "
                                    "no manifest was written")
    verdicts = {line.split()[0]: line.split()[-1] for line in lines if line.startswith("  ")}
    assert verdicts == {"flow": "ok", "intra": "FAILED"}, lines
    assert not (tmp_path / "eng" / "manifest.json").exists() and not (tmp_path / "eng" / "intra.onnx").exists()


def test_export_verification_refuses_labels_held_to_another_resize(tmp_path):
    """The labels graph as exported (bilinear, half-pixel centres) against a stage whose forward
    resizes with corners aligned instead: the labels differ on more than 0.1% of the pixels."""
    model = small_model()
    stage = stage_table(5, 1, SIZE)["labels"]
    path = tmp_path / "labels.onnx"
    export_stage(model, stage, stage_functions(SIZE)["labels"], path)
    assert verify_stage(model, stage, stage_functions(SIZE)["labels"], path).ok  # as exported: passes
    check = verify_stage(model, stage, lambda m, scores: _aligned_labels(scores), path)
    assert not check.ok and check.rel > check.tolerance
    assert check.line().startswith("labels") and check.line().endswith("FAILED")


def _aligned_labels(scores: torch.Tensor) -> torch.Tensor:
    """uint8 labels of scores upsampled to SIZE with align_corners=True (the official convention)."""
    up = torch.nn.functional.interpolate(scores.float(), size=SIZE, mode="bilinear", align_corners=True)
    return up.argmax(1).to(torch.uint8)
