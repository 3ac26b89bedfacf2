"""The TensorRT build's CPU-side parts: FP16 graphs (exported, verified against the FP32 model,
reused), optimisation profiles, and the one-line refusal where TensorRT is missing. Building
engines needs TensorRT and a GPU: tests/runtime/test_gpu_backends.py."""

from __future__ import annotations

import sys
import types

import onnx
import pytest
import torch

from export import BuildOptions, tensorrt_build
from export.build_errors import BuildError
from engine_format.manifest import FORMAT, VERSION, Manifest, read_manifest
from engine_format.stages import stage_table
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
    args = BuildOptions(max_batch=4, opt_level=5, version_compatible=True)
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
    args = BuildOptions()
    with pytest.raises(BuildError) as info:
        tensorrt_build.build_tensorrt_engines(_manifest(tmp_path / "eng"), _model(), args, print)
    assert "TensorRT is not importable" in str(info.value) and "\n" not in str(info.value)
    assert not list((tmp_path / "eng").iterdir())


def _fake_tensorrt_build(monkeypatch, tmp_path, fail_once: set, capability: str = "9.0"):
    """build_tensorrt_engines up to the plugin registration: stand-in TensorRT modules that enforce
    the documented tensorrt.plugin schema (tests/plugins/fake_tensorrt.py), a GPU, and FP16 graphs
    with custom ops (their export is tested above)."""
    from engine_format import compat as engine_compat
    from engine_format.compat import TensorRTEnvironment
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
    args = BuildOptions()
    return lambda: tensorrt_build.build_tensorrt_engines(_manifest(tmp_path / "eng"), None, args, print)


def test_a_plugin_registration_error_is_one_line(tmp_path, monkeypatch):
    """(The build then makes those stages from their decomposition: the test after next.)"""
    from tests.requirements import require_cuda_compiler

    require_cuda_compiler("compute_75")  # the dev extra's CUDA 12 wheels
    # tensorrt.plugin rejects a decorator part-way (as 10.9+ rejected an aot_impl without `tactic`)
    _fake_tensorrt_build(monkeypatch, tmp_path, fail_once={("gsvnet::ChunkFilter", "aot_impl")})
    with pytest.raises(BuildError) as info:
        tensorrt_build.register_plugins(sys.modules["tensorrt"])
    message = str(info.value)
    assert "did not accept the gsvnet plugins" in message and "--custom-ops none" in message and "\n" not in message


def test_gpus_older_than_turing_are_refused_before_anything_is_built(tmp_path, monkeypatch):
    from engine_format import compat as engine_compat

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


@pytest.mark.parametrize("engine_layers,version_compatible", [([], False), (["warp_plugin"], False), (["warp_plugin"], True)])
def test_an_engine_without_its_plugin_layer_never_replaces_the_listed_file(tmp_path, monkeypatch, engine_layers,
                                                                           version_compatible):
    import polygraphy.backend.trt as polygraphy_trt

    from engine_format.manifest import sha256_file
    from tests.export.helpers import HERE, build_args, make_manifest
    from tests.plugins import fake_tensorrt

    manifest = make_manifest(tmp_path / "eng", mode="jit")
    listed = manifest.engines["warp"]
    graph = manifest.data["graphs_fp16"]["warp"]
    settings = tensorrt_build.builder_settings(build_args(version_compatible=version_compatible), True, "jit")
    request = tensorrt_build.engine_request(graph, HERE, settings, "p")
    blob = b"a new plan of warp"
    # a version-compatible plan is inspected only with engine_host_code_allowed (else TensorRT returns None)
    trt = fake_tensorrt.engine_module(fake_tensorrt.Plan(blob, engine_layers, version_compatible))
    layer = types.SimpleNamespace(name="warp_plugin", type=types.SimpleNamespace(name="PLUGIN_V3"))
    network = types.SimpleNamespace(num_layers=1, get_layer=lambda i: layer)  # the parser kept the plugin node
    monkeypatch.setattr(tensorrt_build, "_parse", lambda *args: (None, network, None))
    monkeypatch.setattr(polygraphy_trt, "CreateConfig", lambda **kwargs: kwargs)
    monkeypatch.setattr(polygraphy_trt, "EngineBytesFromNetwork", lambda net, config, save_timing_cache: lambda: blob)
    build = lambda: tensorrt_build._build_engine(trt, manifest.folder, "warp", graph, request,  # noqa: E731
                                                 tmp_path / "timing.cache")
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
        assert entry["settings"]["version_compatible"] is version_compatible
        assert [r.engine_host_code_allowed for r in trt.runtimes] == [version_compatible]  # only where the plan needs it
    assert sorted(p.name for p in manifest.folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left


@pytest.mark.parametrize("version,refused", [("10.6.0.26", True), ("10.3.0.26", True), ("10.7.0.23", False),
                                             ("10.13.0.35", False), ("11.0.0.1", False)])
def test_plugins_need_tensorrt_10_7_and_older_ones_are_refused_in_one_line(tmp_path, monkeypatch, version, refused):
    # before 10.7 onnx-tensorrt imports a node's model-local function before its plugin (onnx/onnx-tensorrt#978):
    # the graphs already carry plugin_namespace, so the refusal must name the TensorRT version, not re-exporting
    why = tensorrt_build.plugin_support_reason(version)
    assert (why is not None) is refused
    if not refused:
        return
    assert f"TensorRT {version}" in why and ">= 10.7" in why and "--custom-ops none" in why and "\n" not in why
    assert "re-export" not in why
    _fake_tensorrt_build(monkeypatch, tmp_path, fail_once=set())
    sys.modules["tensorrt"].__version__ = version
    with pytest.raises(BuildError) as info:
        tensorrt_build.register_plugins(sys.modules["tensorrt"])
    assert str(info.value) == why


def _fake_engine_builds(monkeypatch, perturb: set[str]):
    """Stand-ins for the TensorRT calls of ``_build_engine`` and the engine runner: a "plan" names
    its ONNX file and whether the parser kept a plugin layer; running it runs that ONNX file in
    onnxruntime (the gsvnet nodes as their local functions), with the output of the ops named in
    ``perturb`` (custom ops when built as plugins, or stages) made wrong, as a broken kernel would."""
    import json

    import numpy as np
    import polygraphy.backend.trt as polygraphy_trt

    from engine_format.sessions import make_session

    def parse(trt, path, strongly_typed, plugin_mode):
        proto = onnx.load(str(path))
        plugin = plugin_mode is not None and any(n.domain == "gsvnet" for n in proto.graph.node)
        layer = types.SimpleNamespace(name="gsvnet_plugin", type=types.SimpleNamespace(name="PLUGIN_V3" if plugin else "X"))
        return None, types.SimpleNamespace(num_layers=1, get_layer=lambda i: layer, path=str(path), plugin=plugin), None

    monkeypatch.setattr(tensorrt_build, "_parse", parse)
    monkeypatch.setattr(tensorrt_build, "register_plugins", lambda trt: ("plugin-sha", "jit"))
    monkeypatch.setattr(tensorrt_build, "_engine_plugin_layers", lambda trt, blob, vc=False: ["gsvnet_plugin"])
    monkeypatch.setattr(polygraphy_trt, "CreateConfig", lambda **kwargs: kwargs)
    monkeypatch.setattr(polygraphy_trt, "EngineBytesFromNetwork", lambda network, config, save_timing_cache: lambda: json.dumps(
        {"onnx": network[1].path, "plugin": network[1].plugin}).encode())

    def run_engine(trt, blob, feeds, version_compatible):
        plan = json.loads(blob)
        out = make_session(plan["onnx"]).run(None, feeds)[0]
        ops = {n.op_type for n in onnx.load(plan["onnx"]).graph.node if n.domain == "gsvnet"}
        stage = plan["onnx"].rsplit("/", 1)[-1].split(".")[0]
        if (plan["plugin"] and ops & perturb) or stage in perturb:
            out = -out if out.dtype != np.uint8 else (out + 1).astype(np.uint8)
        return out
    return run_engine


def _build_with_fakes(monkeypatch, onnx_folder, perturb: set[str], log=print) -> Manifest:
    """build_tensorrt_engines on ``onnx_folder`` with stand-in TensorRT calls (``_fake_engine_builds``)."""
    from engine_format import compat as engine_compat
    from tests.export.helpers import HERE, build_args
    from tests.plugins import fake_tensorrt

    manifest, model = onnx_folder
    run_engine = _fake_engine_builds(monkeypatch, perturb)
    trt = fake_tensorrt.engine_module()
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    monkeypatch.setattr(tensorrt_build, "_tensorrt", lambda: trt)
    monkeypatch.setattr(engine_compat, "current_environment", lambda device=0: HERE)
    tensorrt_build.build_tensorrt_engines(manifest, model, build_args(force=False, timing_cache=None), log,
                                          run_engine=run_engine)
    return read_manifest(manifest.folder)


@pytest.fixture(scope="module")
def fp16_folder(engines, tmp_path_factory):
    """The session's random-weight ONNX engines folder with its FP16 graphs exported (once)."""
    import shutil

    from gsvnet import load_checkpoint

    folder = tmp_path_factory.mktemp("fp16") / "eng"
    shutil.copytree(engines, folder)
    model, _ = load_checkpoint(folder / "model.pt")
    manifest = read_manifest(folder)
    tensorrt_build.export_fp16_graphs(manifest, model.eval(), lambda line: None)
    manifest.save()
    return folder


@pytest.fixture
def onnx_folder(fp16_folder, tmp_path):
    """A private copy of that folder (its FP16 graphs are reused by the build) and its model."""
    import shutil

    from gsvnet import load_checkpoint

    folder = tmp_path / "eng"
    shutil.copytree(fp16_folder, folder)
    model, _ = load_checkpoint(folder / "model.pt")
    return read_manifest(folder), model.eval()


def test_a_plugin_stage_that_disagrees_is_rebuilt_without_the_plugin_and_the_manifest_says_why(onnx_folder, monkeypatch):
    from engine_format.compat import ENGINE_STAGES

    lines: list[str] = []
    manifest = _build_with_fakes(monkeypatch, onnx_folder, {"ChunkFilter"}, lines.append)
    engines = manifest.engines
    assert set(engines) == set(ENGINE_STAGES)
    assert engines["filter"]["plugins"] is None
    assert "differs from the FP32 graph by" in engines["filter"]["plugin_fallback"]
    assert manifest.data["graphs_fp16"]["filter"]["custom_op"] is None  # the decomposition
    assert engines["warp"]["plugins"]["ids"] == ["gsvnet::WarpByFlow"] and "plugin_fallback" not in engines["warp"]
    refused = [line for line in lines if "plugin refused" in line]
    assert len(refused) == 1 and "gsvnet::ChunkFilter" in refused[0] and "standard-op decomposition" in refused[0]


def test_a_stage_engine_that_disagrees_is_never_listed_or_written(onnx_folder, monkeypatch):
    folder = onnx_folder[0].folder
    with pytest.raises(BuildError, match=r"^the 'intra' engine differs from the FP32 graph by [0-9.e+-]+ on real inputs") as info:
        _build_with_fakes(monkeypatch, onnx_folder, {"intra"})
    assert "\n" not in str(info.value)
    assert not (folder / "intra.engine").exists()
    assert "intra" not in read_manifest(folder).engines


def test_plugins_that_cannot_be_registered_leave_every_stage_built_from_its_decomposition(onnx_folder, monkeypatch):
    from engine_format.compat import ENGINE_STAGES

    why = tensorrt_build.plugin_support_reason("10.6.0.26")
    lines: list[str] = []
    original = _fake_engine_builds

    def refusing(monkeypatch, perturb):  # the stand-ins, then a registration that refuses
        run = original(monkeypatch, perturb)
        monkeypatch.setattr(tensorrt_build, "register_plugins", lambda trt: (_ for _ in ()).throw(BuildError(why)))
        return run

    monkeypatch.setitem(globals(), "_fake_engine_builds", refusing)
    engines = _build_with_fakes(monkeypatch, onnx_folder, set(), lines.append).engines
    assert set(engines) == set(ENGINE_STAGES) and all(e["plugins"] is None for e in engines.values())
    assert engines["warp"]["plugin_fallback"] == engines["filter"]["plugin_fallback"] == why
    assert "plugin_fallback" not in engines["intra"]
    assert sum("the gsvnet plugins cannot be used" in line for line in lines) == 1
