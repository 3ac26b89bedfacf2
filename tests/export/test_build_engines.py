import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import BuildOptions, build, build_engines, builder
from engine_format.manifest import ManifestError, load_manifest, sha256_file
from engine_format.stages import ALL_STAGES, random_inputs, stage_table
from gsvnet.stages import stage_functions
from export.verify import verify_stage
from gsvnet import load_checkpoint
from tests.conftest import ENGINE_SIZE, run_module


def test_manifest_describes_every_graph(engines):
    manifest = load_manifest(engines, needed_graphs=ALL_STAGES)
    data = manifest.data
    assert data["frame_size"] == list(ENGINE_SIZE) and data["grid_size"] == [17, 30]
    assert data["key_size"] == [104, 176] and data["opset"] == 18
    assert data["checkpoint"]["random_weights"] is True
    for key in ("gsvnet", "torch", "onnx", "onnxruntime"):
        assert data["versions"][key]
    for name in ALL_STAGES:
        entry = data["graphs"][name]
        assert entry["sha256"] == sha256_file(engines / entry["file"])
        assert entry["inputs"][0]["shape"][0] == "N"
        assert entry["verification"]["ok"] is True


def test_every_graph_passes_checker_with_dynamic_batch(engines):
    for name in ALL_STAGES:
        proto = onnx.load(str(engines / f"{name}.onnx"))
        onnx.checker.check_model(proto, full_check=True)
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "N", name


def test_warp_graph_uses_bilinear_gridsample_at_opset_18(engines):
    proto = onnx.load(str(engines / "warp.onnx"))
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    grid = [n for n in nodes if n.op_type == "GridSample"]
    assert len(grid) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in grid[0].attribute}
    assert attrs["mode"] == b"bilinear" and attrs["align_corners"] == 1 and attrs["padding_mode"] == b"zeros"
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]


@pytest.mark.parametrize("stage_name", ALL_STAGES)
def test_onnxruntime_matches_pytorch_on_fresh_inputs(engines, stage_name):
    model, _ = load_checkpoint(engines / "model.pt")
    stage = stage_table(model.num_classes, model.config.radius, ENGINE_SIZE)[stage_name]
    feeds = random_inputs(stage, batch=3, rng=np.random.default_rng(99))
    session = ort.InferenceSession(str(engines / f"{stage_name}.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        ref = stage_functions(ENGINE_SIZE)[stage_name](model, *(torch.from_numpy(v) for v in feeds.values())).numpy()
    assert got.shape == ref.shape and got.dtype == ref.dtype
    if ref.dtype == np.uint8:
        assert np.mean(got != ref) <= 1e-3
    else:
        err = np.abs(got.astype(np.float64) - ref).max()
        assert err <= 1e-4 + 1e-4 * np.abs(ref).max(), err


def test_verification_detects_a_graph_that_differs(engines):
    model, _ = load_checkpoint(engines / "model.pt")
    with torch.no_grad():
        model.intra.intra_net[0].weight.mul_(1.01)  # the graph no longer matches these weights
    stage = stage_table(model.num_classes, 1, ENGINE_SIZE)["intra"]
    check = verify_stage(model, stage, stage_functions(ENGINE_SIZE)["intra"], engines / "intra.onnx")
    assert not check.ok and check.max_abs > check.tolerance


def test_rerun_reuses_force_rebuilds_and_a_stale_graph_is_rebuilt(tmp_path):
    out = tmp_path / "eng"
    options = dict(random_weights=True, num_classes=5, out=out, size=(32, 64), backend="onnx", seed=3)
    again_with = lambda **extra: _build(BuildOptions(**options, **extra))  # noqa: E731
    first = again_with()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = again_with()  # same weights, config, size, opset: nothing is written
    assert any("up to date" in m for m in again) and not any(m.startswith("wrote") for m in again)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    forced = again_with(force=True)  # everything exported and verified again, files rewritten
    assert not any("up to date" in m for m in forced) and any(m.startswith("wrote 8 graphs") for m in forced)
    assert sum("ok" in m for m in forced) == sum("ok" in m for m in first) == 8
    rewritten = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert all(rewritten[f"{stage}.onnx"] != mtimes[f"{stage}.onnx"] for stage in ALL_STAGES)
    load_manifest(out, needed_graphs=ALL_STAGES)  # every sha256 matches the rewritten files
    # a corrupted graph is noticed by the runtime check, and the next build (no --force) rebuilds it
    (out / "flow.onnx").write_bytes(b"garbage")
    with pytest.raises(ManifestError, match="does not match the sha256"):
        load_manifest(out, needed_graphs=("flow",))
    stale = again_with()
    assert not any("up to date" in m for m in stale) and any(m.startswith("wrote") for m in stale)
    onnx.checker.check_model(onnx.load(str(out / "flow.onnx")), full_check=True)
    assert load_manifest(out, needed_graphs=ALL_STAGES).graphs["flow"]["sha256"] == sha256_file(out / "flow.onnx")


def _build(options: BuildOptions) -> list[str]:
    messages: list[str] = []
    manifest = build(options, log=messages.append)
    assert manifest.folder == options.out and manifest.data["command"] == options.command_line()
    return messages


def test_failed_verification_writes_no_manifest(tmp_path, monkeypatch):
    from export import verify
    from export.build_errors import BuildError

    monkeypatch.setattr(verify, "ATOL", -1.0)  # nothing can pass
    options = BuildOptions(random_weights=True, out=tmp_path / "e", size=(32, 32), backend="onnx")
    monkeypatch.setattr(builder, "custom_op_transform", lambda mode, radius: None)
    monkeypatch.setattr(builder, "STAGES", ("intra",))
    with pytest.raises(BuildError, match="intra"):
        build(options, log=lambda m: None)
    assert not (tmp_path / "e" / "manifest.json").exists()
    assert not (tmp_path / "e" / "intra.onnx").exists()


def test_cli_errors_are_one_line(tmp_path):
    bad_size = run_module("export.build_engines", "--size", "540x960", "--out", str(tmp_path / "x"))
    assert bad_size.returncode == 2 and "multiples of 8" in bad_size.stderr and "544x960" in bad_size.stderr
    bad_scale = run_module("export.build_engines", "--key-scale", "1.5", "--out", str(tmp_path / "x"))
    assert bad_scale.returncode == 2 and "(0, 1]" in bad_scale.stderr
    bad_net = run_module("export.build_engines", "--keyframe-net", "resnet9000", "--out", str(tmp_path / "x"))
    assert bad_net.returncode == 2 and "swiftnet_r18" in bad_net.stderr
    missing = run_module("export.build_engines", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == f"error: checkpoint not found: {tmp_path / 'nope.pt'}"


def test_backend_tensorrt_without_tensorrt_or_gpu_stops_in_one_line(tmp_path):
    from plugins.launcher import gpu_unavailable_reason
    from plugins.tensorrt_plugins import tensorrt_unavailable_reason

    trt_missing, gpu_missing = tensorrt_unavailable_reason(), gpu_unavailable_reason()
    if trt_missing is None and gpu_missing is None:
        pytest.skip("TensorRT and a GPU are here: the build would run (tests/runtime/test_gpu_backends.py builds engines)")
    trt = run_module("export.build_engines", "--backend", "tensorrt", "--random-weights", "--size", "32x64",
                     "--out", str(tmp_path / "x"))
    assert trt.returncode == 2, trt.stderr[-3000:]  # never a traceback (exit 1)
    assert "Traceback" not in trt.stderr
    last = trt.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    if trt_missing is not None:  # one line that says what to install
        assert "TensorRT is not importable" in last and "--backend onnx" in last
    else:
        assert "no usable CUDA GPU for TensorRT" in last


def test_manifest_json_is_plain_json(engines):
    data = json.loads((engines / "manifest.json").read_text())
    assert data["format"] == "gsvnet-engines" and data["model"]["num_classes"] == 11


def test_custom_op_graphs_are_gsvnet_nodes_with_function_bodies(engines):
    manifest = load_manifest(engines)
    assert manifest.data["custom_ops"] == "function"
    for stage, op in (("warp", "WarpByFlow"), ("filter", "ChunkFilter")):
        proto = onnx.load(str(engines / f"{stage}.onnx"))
        assert [(n.domain, n.op_type) for n in proto.graph.node] == [("gsvnet", op)]
        assert [(f.domain, f.name) for f in proto.functions] == [("gsvnet", op)]
        # without it onnx-tensorrt inlines the function body instead of using our plugin
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.graph.node[0].attribute}
        assert attrs["plugin_namespace"] == b"gsvnet"
        assert manifest.graphs[stage]["custom_op"] == op
    radius = [a for a in onnx.load(str(engines / "filter.onnx")).graph.node[0].attribute if a.name == "radius"]
    assert radius and radius[0].i == 1


@pytest.mark.parametrize("backend,status", [("auto", 0), ("tensorrt", 2)])
def test_a_tensorrt_failure_leaves_a_working_onnx_folder_and_one_line(tmp_path, monkeypatch, capsys, backend, status):
    """TensorRT importable but failing (no GPU here): the FP32 graphs, their verification set and
    the manifest are written first, the reason is one line and recorded; --backend tensorrt exits 2."""
    from export import tensorrt_build
    from export.build_errors import BuildError
    from engine_format.manifest import load_manifest

    def fail(manifest, model, args, log):
        raise BuildError("no usable CUDA GPU for TensorRT (CUDA initialization failure)")

    monkeypatch.setattr(builder, "tensorrt_available", lambda: True)
    monkeypatch.setattr(tensorrt_build, "build_tensorrt_engines", fail)
    out = tmp_path / "eng"
    code = build_engines.main(["--random-weights", "--num-classes", "5", "--size", "32x64", "--out", str(out),
                               "--backend", backend])
    captured = capsys.readouterr()
    err, log = captured.err, captured.out  # the build logs on stdout, errors go to stderr
    assert code == status
    manifest = load_manifest(out, needed_graphs=("keyframe", "flow", "warp", "intra", "guide", "filter", "labels"))
    assert manifest.engines == {} and "CUDA initialization failure" in manifest.data["tensorrt"]["reason"]
    assert (out / manifest.data["verification"]["file"]).is_file()
    if status:
        assert err.strip().splitlines()[-1].startswith("error: TensorRT engines were not built (no usable CUDA GPU")
    else:
        assert any(line.startswith("TensorRT engines were not built: no usable CUDA GPU") for line in log.splitlines())
