"""The TensorRT build's CPU-side parts: FP16 graphs (exported, verified against the FP32 model,
reused), optimisation profiles, and the one-line refusal where TensorRT is missing. Building
engines needs TensorRT and a GPU: tests/runtime/test_gpu_backends.py."""

from __future__ import annotations

import argparse

import onnx
import pytest
import torch

from export import tensorrt_build
from export.build_engines import BuildError
from export.manifest import FORMAT, VERSION, Manifest, read_manifest
from export.stages import stage_table
from gsvnet import GSVNet, GSVNetConfig

SIZE = (32, 64)
STAGES = ("warp", "intra", "labels")


def _model() -> GSVNet:
    torch.manual_seed(0)
    model = GSVNet(GSVNetConfig(num_classes=5)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.flow.toflow.weight, std=0.05)
    return model


def _manifest(folder, key: str = "key-1") -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, "build_key": key, "model": {"num_classes": 5},
            "frame_size": list(SIZE), "graphs": {}, "checkpoint": {}, "opset": 18, "custom_ops": "function", "engines": {}}
    return Manifest(folder, data)


def _input_types(path) -> dict[str, int]:
    proto = onnx.load(str(path))
    return {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}


def test_fp16_graphs_are_verified_against_fp32_and_reused(tmp_path):
    model = _model()
    manifest = _manifest(tmp_path / "eng")
    lines: list[str] = []
    graphs = tensorrt_build.export_fp16_graphs(manifest, model, lines.append, stages=STAGES)
    assert set(graphs) == set(STAGES) and len(lines) == len(STAGES) and all(line.endswith("ok") for line in lines)
    assert manifest.data["graphs_fp16"] is graphs
    for name, entry in graphs.items():
        assert entry["file"] == f"{name}.fp16.onnx" and entry["precision"] == "fp16" and entry["build_key"] == "key-1"
        assert entry["verification"]["ok"] and (tmp_path / "eng" / entry["file"]).is_file()
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert _input_types(tmp_path / "eng" / "warp.fp16.onnx") == {"seg": fp16, "flow": fp32}  # flow stays FP32
    assert _input_types(tmp_path / "eng" / "intra.fp16.onnx") == {"small": fp16}
    warp = onnx.load(str(tmp_path / "eng" / "warp.fp16.onnx"))
    assert [(n.domain, n.op_type) for n in warp.graph.node] == [("gsvnet", "WarpByFlow")]
    assert graphs["warp"]["custom_op"] == "WarpByFlow" and graphs["intra"]["custom_op"] is None
    manifest.save()

    mtimes = {name: (tmp_path / "eng" / e["file"]).stat().st_mtime_ns for name, e in graphs.items()}
    again: list[str] = []
    reused = tensorrt_build.export_fp16_graphs(_manifest(tmp_path / "eng"), model, again.append,
                                              previous=read_manifest(tmp_path / "eng"), stages=STAGES)
    assert again == [] and reused == graphs
    assert {n: (tmp_path / "eng" / e["file"]).stat().st_mtime_ns for n, e in reused.items()} == mtimes

    changed: list[str] = []
    tensorrt_build.export_fp16_graphs(_manifest(tmp_path / "eng", key="key-2"), model, changed.append,
                                      previous=read_manifest(tmp_path / "eng"), stages=("intra",))
    assert len(changed) == 1  # other weights/config/size: exported again


def test_profiles_cover_batch_1_to_max_optimised_for_1():
    table = stage_table(19, 1, (1024, 2048), precision="fp16")
    inputs = [s.to_dict() for s in table["filter"].inputs]
    shapes = tensorrt_build.profile_shapes(inputs, max_batch=4)
    assert list(shapes) == ["warped", "intra", "weights"]
    assert shapes["weights"] == {"min": [1, 11, 128, 256], "opt": [1, 11, 128, 256], "max": [4, 11, 128, 256]}
    image = tensorrt_build.profile_shapes([s.to_dict() for s in table["keyframe"].inputs], 8)["image"]
    assert image["max"] == [8, 1024, 2048, 3]
    from polygraphy.backend.trt import Profile  # the builder's profile object, filled the same way

    profile = Profile()
    for name, s in shapes.items():
        profile.add(name, min=s["min"], opt=s["opt"], max=s["max"])
    assert tuple(profile["weights"].max) == (4, 11, 128, 256)


def test_settings_that_change_an_engine():
    args = argparse.Namespace(max_batch=4, opt_level=5, version_compatible=True)
    assert tensorrt_build.builder_settings(args, True, "aot") == {
        "max_batch": 4, "opt_batch": 1, "opt_level": 5, "version_compatible": True, "typing": "strongly-typed",
        "plugin_mode": "aot"}
    assert tensorrt_build.builder_settings(args, False, None)["typing"] == "fp16-flag"


def test_without_tensorrt_the_build_stops_in_one_line(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is importable here")
    except Exception:
        pass
    args = argparse.Namespace(max_batch=4, opt_level=3, version_compatible=False, force=False, timing_cache=None)
    with pytest.raises(BuildError) as info:
        tensorrt_build.build_tensorrt_engines(_manifest(tmp_path / "eng"), _model(), args, print)
    assert "TensorRT is not importable" in str(info.value) and "\n" not in str(info.value)
    assert not list((tmp_path / "eng").iterdir())
