"""--precision int8: a symmetric QDQ keyframe graph calibrated on real frames, run by onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from engine_format.manifest import load_manifest
from engine_format.int8_x86 import for_onnxruntime_x86, x86_needs_u8
from runtime.schedule import KeyframeScheduler
from runtime.backends import create_backend
from tests.conftest import ENGINE_SIZE, clip_frames, run_module, shared_data, CAMVID


@pytest.fixture(scope="module")
def int8_engines(tmp_path_factory) -> Path:
    """The shipped weights at ENGINE_SIZE with an INT8 keyframe graph, calibrated on 6 CamVid train images."""
    train = shared_data(CAMVID / "train", "CamVid train split")
    out = tmp_path_factory.mktemp("int8") / "eng"
    proc = run_module("export.build_engines", "--out", str(out), "--size", f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}",
                      "--backend", "onnx", "--precision", "int8", "--calibration", str(train), "--calibration-frames", "6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "WARNING" not in output and "keyframe int8: 6 calibration frames" in output
    return out


def session(model: onnx.ModelProto, level: ort.GraphOptimizationLevel, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_int8_keyframe_graph_is_symmetric_qdq_with_per_channel_weights(int8_engines):
    manifest = load_manifest(int8_engines)
    entry = manifest.graphs["keyframe"]
    assert entry["precision"] == "int8" and entry["file"] == "keyframe.int8.onnx"
    assert not (int8_engines / "keyframe.onnx").exists()  # the FP32 intermediate is gone
    assert all(manifest.graphs[s]["precision"] == "fp32" for s in manifest.graphs if s != "keyframe")
    assert entry["quantization"]["frames"] == 6 and entry["verification"]["class_agreement"] >= 0.9
    model = onnx.load(str(int8_engines / entry["file"]))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    produced = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 32
    for conv in convs:  # input and weight dequantised; weights int8 with one scale per output channel
        data, weight = produced[conv.input[0]], produced[conv.input[1]]
        assert data.op_type == weight.op_type == "DequantizeLinear", conv.name
        w, scale = initializers[weight.input[0]], initializers[weight.input[1]]
        assert w.dtype == np.int8 and scale.shape == (w.shape[0],), conv.name
    zero_points = [initializers[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and all(z.dtype in (np.int8, np.int32) and not z.any() for z in zero_points)  # symmetric
    norms = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert norms and all(i in initializers and initializers[i].dtype == np.float32 for n in norms for i in n.input[1:])


def test_the_x86_form_is_the_same_function(int8_engines):
    """uint8 activations with zero point 128 dequantise to the same numbers: run literally (no
    fusions), the two graphs give the same bits; and the x86 form is the one with no float
    convolution left after onnxruntime's fusions."""
    model = onnx.load(str(int8_engines / "keyframe.int8.onnx"))
    x86 = for_onnxruntime_x86(model)
    frames = {"image": np.random.default_rng(2).integers(0, 256, (2, *ENGINE_SIZE, 3), dtype=np.uint8)}
    literal = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert np.array_equal(session(model, literal).run(None, frames)[0], session(x86, literal).run(None, frames)[0])
    activation_zero_points = {n.input[2] for n in x86.graph.node if n.op_type == "QuantizeLinear"}
    assert all(numpy_helper.to_array(i).dtype == np.uint8 for i in x86.graph.initializer if i.name in activation_zero_points)
    if x86_needs_u8():
        for graph, float_convs in ((x86, 0), (model, None)):
            path = Path(str(int8_engines)) / f".optimized-{float_convs}.onnx"
            session(graph, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, path)
            ops = [n.op_type for n in onnx.load(str(path)).graph.node]
            path.unlink()
            if float_convs == 0:
                assert ops.count("QLinearConv") == 32 and "Conv" not in ops
            else:
                assert "Conv" in ops  # int8 activations: some convolutions stay float on x86


def test_runtime_labels_with_the_int8_keyframe_graph_follow_fp32(int8_engines, shipped_engines, real_clip, tmp_path):
    """runtime.infer runs the INT8 engines; on the real clip its labels agree with the FP32 engines'."""
    labels_dir, stats = tmp_path / "labels", tmp_path / "stats.json"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(int8_engines), "--labels-dir",
                      str(labels_dir), "--stats", str(stats), "--max-frames", "12", "--interval", "4", "--no-progress",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INT8 keyframe graph" in proc.stderr
    fp32 = create_backend("onnxruntime", load_manifest(shipped_engines), threads=1)
    frames = clip_frames(real_clip, 12)
    expected = [r.labels[0] for r in KeyframeScheduler(fp32, 4, label_size=(540, 960)).run(iter(frames))]
    from PIL import Image

    agree = [float(np.mean(np.asarray(Image.open(labels_dir / f"{k:06d}.png")) == expected[k])) for k in range(12)]
    assert min(agree) >= 0.9, agree
    assert json.loads(stats.read_text())["frames"] == 12


@pytest.mark.parametrize("extra,needle", [
    ([], "--precision int8 needs --calibration DIR"),
    (["--calibration", "nowhere"], "--calibration nowhere is not a folder"),
    (["--calibration", ".", "--backend", "tensorrt"], "TensorRT engines are built from FP32"),
])
def test_int8_flag_errors_are_one_line(tmp_path, extra, needle):
    proc = run_module("export.build_engines", "--out", str(tmp_path / "eng"), "--size", "64x64", "--random-weights",
                      "--precision", "int8", *extra, cwd=tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and needle in line, proc.stderr
    assert not (tmp_path / "eng" / "manifest.json").exists()


def test_images_folder_without_images_is_refused(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "notes.txt").write_text("no images here")
    proc = run_module("export.build_engines", "--out", str(tmp_path / "eng"), "--size", "64x64", "--random-weights",
                      "--precision", "int8", "--calibration", str(tmp_path / "frames"), cwd=tmp_path)
    assert proc.returncode == 2 and "holds no PNG or JPEG images" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "eng").exists()  # refused before anything was written
