import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import build_engines
from export.manifest import ManifestError, load_manifest, read_manifest, sha256_file
from export.stages import ALL_STAGES, random_inputs, stage_functions, stage_table
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


def test_rerun_reuses_and_force_rebuilds(engines, tmp_path):
    import shutil

    copy = tmp_path / "eng"
    shutil.copytree(engines, copy)
    args = ["--random-weights", "--num-classes", "11", "--out", str(copy), "--size", f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}",
            "--backend", "onnx", "--seed", "3"]
    before = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    messages = []
    build_engines.build(build_engines.build_parser().parse_args(args), log=messages.append)
    assert any("up to date" in m for m in messages)
    assert {p.name: p.stat().st_mtime_ns for p in copy.iterdir()} == before
    # a corrupted graph is noticed by the runtime check and makes the build stale
    (copy / "flow.onnx").write_bytes(b"garbage")
    with pytest.raises(ManifestError, match="does not match the sha256"):
        load_manifest(copy, needed_graphs=("flow",))
    assert build_engines._up_to_date(copy, read_manifest(copy).data["build_key"]) is None


def test_failed_verification_writes_no_manifest(tmp_path, monkeypatch):
    from export import verify

    monkeypatch.setattr(verify, "ATOL", -1.0)  # nothing can pass
    args = build_engines.build_parser().parse_args(
        ["--random-weights", "--out", str(tmp_path / "e"), "--size", "32x32", "--backend", "onnx"])
    monkeypatch.setattr(build_engines, "_custom_op_transform", lambda mode, radius: None)
    monkeypatch.setattr(build_engines, "STAGES", ("intra",))
    with pytest.raises(build_engines.BuildError, match="intra"):
        build_engines.build(args, log=lambda m: None)
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
    trt = run_module("export.build_engines", "--backend", "tensorrt", "--random-weights", "--out", str(tmp_path / "x"))
    if trt.returncode == 2:  # TensorRT absent here: one line that says what to install
        assert "TensorRT is not importable" in trt.stderr and "--backend onnx" in trt.stderr


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
        assert manifest.graphs[stage]["custom_op"] == op
    radius = [a for a in onnx.load(str(engines / "filter.onnx")).graph.node[0].attribute if a.name == "radius"]
    assert radius and radius[0].i == 1
