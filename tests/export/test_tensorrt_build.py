"""The TensorRT build's CPU-side parts: FP16 graphs (exported, verified against the FP32 model,
reused), optimisation profiles, and the one-line refusal where TensorRT is missing. Building
engines needs TensorRT and a GPU: tests/runtime/test_gpu_backends.py."""

from __future__ import annotations

import argparse
import sys
import types

import onnx
import pytest
import torch

from export import tensorrt_build
from export.build_errors import BuildError
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
    assert {a.name: a.s for a in warp.graph.node[0].attribute}["plugin_namespace"] == b"gsvnet"  # TensorRT takes the plugin
    assert graphs["warp"]["custom_op"] == "WarpByFlow" and graphs["intra"]["custom_op"] is None
    # TensorRT converts to uint8 from float32/float16 only: the labels' argmax reaches uint8 through float
    labels = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "eng" / "labels.fp16.onnx"))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*labels.input, *labels.value_info, *labels.output)}
    to_uint8 = [n for n in labels.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.UINT8]
    assert to_uint8 and all(types[n.input[0]] in (fp32, fp16) for n in to_uint8)
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


def _fake_tensorrt_build(monkeypatch, tmp_path, fail_once: set, capability: str = "9.0"):
    """build_tensorrt_engines up to the plugin registration: stand-in TensorRT modules that enforce
    the documented tensorrt.plugin schema (tests/plugins/fake_tensorrt.py), a GPU, and FP16 graphs
    with custom ops (their export is tested above)."""
    from export import engine_compat
    from export.engine_compat import TensorRTEnvironment
    from plugins import tensorrt_plugins
    from tests.export.helpers import HERE
    from tests.plugins import fake_tensorrt

    trt, trtp = fake_tensorrt.modules(fail_once)
    trt.plugin = trtp
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(tensorrt_plugins, "_registration", {"applied": set(), "complete": False}, raising=False)
    monkeypatch.setattr(tensorrt_plugins, "_registered", False, raising=False)
    monkeypatch.setattr(engine_compat, "current_environment",
                        lambda device=0: TensorRTEnvironment(HERE.tensorrt, "NVIDIA GeForce GTX 1080 Ti" if capability < "7.5" else HERE.gpu, capability))

    def graphs(manifest, model, log, previous, stages=None):
        manifest.data["graphs_fp16"] = {"warp": {"custom_op": "WarpByFlow"}, "filter": {"custom_op": "ChunkFilter"}}
        return manifest.data["graphs_fp16"]

    monkeypatch.setattr(tensorrt_build, "export_fp16_graphs", graphs)
    args = argparse.Namespace(max_batch=4, opt_level=3, version_compatible=False, force=False, timing_cache=None)
    return lambda: tensorrt_build.build_tensorrt_engines(_manifest(tmp_path / "eng"), None, args, print)


def test_a_plugin_registration_error_stops_the_build_in_one_line(tmp_path, monkeypatch):
    from plugins import toolchain

    if not toolchain.available():
        pytest.skip(toolchain.missing_reason("compute_75", []))
    # tensorrt.plugin rejects a decorator part-way (as 10.9+ rejected an aot_impl without `tactic`)
    build = _fake_tensorrt_build(monkeypatch, tmp_path, fail_once={("gsvnet::ChunkFilter", "aot_impl")})
    with pytest.raises(BuildError) as info:
        build()
    message = str(info.value)
    assert "did not accept the gsvnet plugins" in message and "--custom-ops none" in message and "\n" not in message


def test_gpus_older_than_turing_are_refused_before_anything_is_built(tmp_path, monkeypatch):
    from export import engine_compat

    build = _fake_tensorrt_build(monkeypatch, tmp_path, fail_once=set(), capability="6.1")
    with pytest.raises(BuildError, match=r"TensorRT 10 needs compute capability 7.5 or newer; NVIDIA GeForce GTX 1080 Ti "
                                         r"is 6.1: .*--backend torch-cuda"):
        build()
    assert engine_compat.tensorrt_unsupported_reason("7.5", "Tesla T4") is None
    assert engine_compat.tensorrt_unsupported_reason("12.0", "RTX 5090") is None
    assert "7.0" in engine_compat.tensorrt_unsupported_reason("7.0", "Tesla V100")


def test_plugin_layers_are_read_from_the_engine_inspector_json():
    info = ('{"Layers": [{"Name": "WarpByFlow", "LayerType": "PluginV3", "Inputs": []}, '
            '{"Name": "cast_out", "LayerType": "Cast"}], "Bindings": ["seg", "flow", "out"]}')
    assert tensorrt_build.plugin_layers_in_engine(info) == ["WarpByFlow"]
    assert tensorrt_build.plugin_layers_in_engine('{"Layers": ["GridSample_3", "Mul_4"]}') == []  # names only


class _FakeEngineTensorRT:
    """``tensorrt`` as ``_build_engine`` uses it after the build: an engine deserialised from the
    built blob whose inspector lists ``engine_layers``."""

    __version__ = "10.13.0.35"
    ProfilingVerbosity = types.SimpleNamespace(DETAILED=2)
    LayerInformationFormat = types.SimpleNamespace(JSON=1)

    class Logger:
        ERROR = 3

        def __init__(self, level: int) -> None:
            pass

    def __init__(self, blob: bytes, engine_layers: list[str]) -> None:
        import json

        info = json.dumps({"Layers": [{"Name": name, "LayerType": "PluginV3"} for name in engine_layers]})
        inspector = types.SimpleNamespace(get_engine_information=lambda fmt: info)
        engine = types.SimpleNamespace(create_engine_inspector=lambda: inspector)
        runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda data: engine if data == blob else None)
        self.Runtime = lambda logger: runtime


@pytest.mark.parametrize("engine_layers", [[], ["warp_plugin"]])
def test_an_engine_without_its_plugin_layer_never_replaces_the_listed_file(tmp_path, monkeypatch, engine_layers):
    import polygraphy.backend.trt as polygraphy_trt

    from export.manifest import sha256_file
    from tests.export.helpers import HERE, build_args, make_manifest

    manifest = make_manifest(tmp_path / "eng", mode="jit")
    listed = manifest.engines["warp"]
    graph = manifest.data["graphs_fp16"]["warp"]
    request = tensorrt_build.engine_request(graph, HERE, tensorrt_build.builder_settings(build_args(), True, "jit"), "p")
    blob = b"a new plan of warp"
    layer = types.SimpleNamespace(name="warp_plugin", type=types.SimpleNamespace(name="PLUGIN_V3"))
    network = types.SimpleNamespace(num_layers=1, get_layer=lambda i: layer)  # the parser kept the plugin node
    monkeypatch.setattr(tensorrt_build, "_parse", lambda *args: (None, network, None))
    monkeypatch.setattr(polygraphy_trt, "CreateConfig", lambda **kwargs: kwargs)
    monkeypatch.setattr(polygraphy_trt, "EngineBytesFromNetwork", lambda net, config, save_timing_cache: lambda: blob)
    build = lambda: tensorrt_build._build_engine(_FakeEngineTensorRT(blob, engine_layers), manifest.folder, "warp",  # noqa: E731
                                                 graph, request, tmp_path / "timing.cache")
    engine = manifest.folder / "warp.engine"
    if not engine_layers:  # the builder dropped the plugin: refused, and the listed engine is untouched
        with pytest.raises(BuildError, match="holds no plugin layer") as info:
            build()
        assert "\n" not in str(info.value)
        assert sha256_file(engine) == listed["sha256"] == read_manifest(manifest.folder).engines["warp"]["sha256"]
    else:
        entry = build()
        assert engine.read_bytes() == blob and entry["sha256"] == sha256_file(engine)
        assert entry["plugins"]["engine_layers"] == ["warp_plugin"] and entry["plugins"]["mode"] == "jit"
    assert sorted(p.name for p in manifest.folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left
