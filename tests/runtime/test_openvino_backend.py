"""The openvino CPU backend: the same stage graphs as onnxruntime (the ``gsvnet::`` nodes inlined),
held to the PyTorch reference on real frames, through the whole schedule of ``runtime.infer`` and
through the first-use verification; precisions it cannot run are one-line errors."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from engine_format.manifest import STAGES, load_manifest
from gsvnet import grid_size, ops
from runtime.backends import create_backend, openvino_backend, unavailable_reason
from runtime.errors import UserError
from runtime.loading import load_backend
from runtime.options import InferOptions
from runtime.schedule import KeyframeScheduler
from runtime.threads import plan_threads
from tests.conftest import clip_frames, private_engines
from tests.requirements import require_module
from tests.runtime.test_segmenter import infer_labels

MIN_AGREEMENT = 0.995


@pytest.fixture(scope="module")
def ov():
    return require_module("openvino", "the openvino backend is one of the package's CPU backends")


@pytest.fixture(scope="module")
def ov_engines(shipped_engines, tmp_path_factory, ov):
    """A private copy of the shipped-weight engines (its model cache, calibration and verdicts are
    this module's own)."""
    out = tmp_path_factory.mktemp("openvino") / "eng"
    return private_engines(shipped_engines, out)


def needs_bf16(precision: str) -> None:
    if precision == "bf16" and "BF16" not in openvino_backend.cpu_capabilities():
        pytest.skip("this CPU has neither AVX512_BF16 nor AMX (OpenVINO would run bf16 as f32)")


def test_graphs_with_gsvnet_nodes_run_in_openvino_as_the_reference_ops(engines, rng, ov):
    """warp.onnx and filter.onnx are one custom-domain node each; inlined, OpenVINO computes what
    gsvnet.ops computes."""
    manifest = load_manifest(engines)
    c, (h, w) = manifest.model["num_classes"], grid_size(manifest.frame_size)
    seg = rng.standard_normal((2, c, h, w)).astype(np.float32)
    flow = (3 * rng.standard_normal((2, 2, h, w))).astype(np.float32)
    weights = rng.random((2, ops.num_weights(1), h, w)).astype(np.float32)
    intra = rng.standard_normal((2, c, h, w)).astype(np.float32)
    t = torch.from_numpy
    cases = {"warp": ((seg, flow), ops.warp_by_flow(t(seg), t(flow))),
             "filter": ((seg, intra, weights), ops.chunk_filter(t(seg), t(intra), t(weights), 1))}
    core = ov.Core()
    for stage, (inputs, expected) in cases.items():
        path = engines / manifest.graphs[stage]["file"]
        assert {n.domain for n in onnx.load(str(path)).graph.node} == {"gsvnet"}
        graph = openvino_backend.compile_graph(core, openvino_backend.read_graph(core, path), 1, "f32")
        got = graph(list(inputs)).to_tuple()[0]
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4, err_msg=stage)


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_labels_equal_the_pytorch_reference_on_real_frames(ov_engines, real_clip, precision, one_torch_thread):
    needs_bf16(precision)
    manifest = load_manifest(ov_engines)
    frames = clip_frames(real_clip, 8)
    reference = [r.labels[0] for r in KeyframeScheduler(create_backend("torch", manifest, threads=1), 4).run(frames)]
    backend = create_backend("openvino", manifest, threads=1, precision=precision)
    assert backend.precision == {"f32": "fp32", "bf16": "bf16"}[precision]
    got = [r.labels[0] for r in KeyframeScheduler(backend, 4).run(frames)]
    agreement = [float(np.mean(a == b)) for a, b in zip(got, reference)]
    assert len(agreement) == 8 and min(agreement) >= MIN_AGREEMENT, agreement
    if precision == "f32":
        assert min(agreement) >= 0.999, agreement  # same arithmetic up to summation order


def test_graphs_the_plan_hands_to_onnxruntime_give_the_same_results(ov_engines, real_clip):
    """An OpenVINO run whose plan puts downsample and warp on onnxruntime (runtime/tuning.py
    ``borrowed_stages``) runs them there and labels real frames as the OpenVINO-only run."""
    manifest = load_manifest(ov_engines)
    frames = clip_frames(real_clip, 8)
    plan = plan_threads(1, list(STAGES))
    alone = create_backend("openvino", manifest, plan=plan)
    mixed = create_backend("openvino", manifest, plan=replace(plan, engines={"downsample": "onnxruntime",
                                                                             "warp": "onnxruntime"}))
    assert set(mixed.borrowed) == {"downsample", "warp"} and not set(mixed.borrowed) & set(mixed.compiled)
    assert "downsample on onnxruntime; warp on onnxruntime" in mixed.describe()
    assert "onnxruntime" in mixed.library_versions() and "onnxruntime" not in alone.library_versions()
    small = np.concatenate(frames[:2])
    np.testing.assert_allclose(mixed.run("downsample", small), alone.run("downsample", small), rtol=0, atol=1e-5)
    expected = [r.labels[0] for r in KeyframeScheduler(alone, 4).run(frames)]
    got = [r.labels[0] for r in KeyframeScheduler(mixed, 4).run(frames)]
    agreement = [float(np.mean(a == b)) for a, b in zip(got, expected)]
    assert len(agreement) == 8 and min(agreement) >= 0.999, agreement


def test_first_use_verification_passes_and_is_kept_per_precision(ov_engines):
    manifest = load_manifest(ov_engines)
    lines: list[str] = []
    first = load_backend("openvino", manifest, threads=2, log=lines.append)
    assert first.verdict.status == "passed" and not first.verdict.cached, first.verdict.line()
    assert min(first.verdict.agreement) >= MIN_AGREEMENT and "FP32 reference labels" in first.verdict.detail
    assert "openvino f32" in first.backend.plan.source  # threads planned from OpenVINO's own timings
    again = load_backend("openvino", manifest, threads=2, log=lines.append)
    assert again.verdict.cached and again.verdict.status == "passed"
    if "BF16" in openvino_backend.cpu_capabilities():
        bf16 = load_backend("openvino", manifest, threads=2, log=lines.append, precision="bf16")
        assert bf16.verdict.status == "passed" and not bf16.verdict.cached  # its own verdict
        assert bf16.verdict.key != first.verdict.key


def test_second_load_takes_every_graph_from_the_model_cache(ov_engines):
    manifest = load_manifest(ov_engines)
    create_backend("openvino", manifest, threads=1).close()
    backend = create_backend("openvino", manifest, threads=1)
    assert backend.cache == ov_engines / openvino_backend.CACHE and any(backend.cache.iterdir())
    assert {s: bool(c.get_property("LOADED_FROM_CACHE")) for s, c in backend.compiled.items()} == \
        {s: True for s in backend.compiled}


def test_runtime_infer_on_openvino_gives_onnxruntimes_labels(ov_engines, real_clip, tmp_path):
    """The whole schedule (keyframe workers ahead, propagation, labels, writer) on a real clip."""
    count = 24
    for name in ("ort", "ov"):
        (tmp_path / name).mkdir()
    expected = infer_labels(real_clip, ov_engines, tmp_path / "ort", count, backend="onnxruntime")
    got = infer_labels(real_clip, ov_engines, tmp_path / "ov", count, backend="openvino")
    agreement = [float(np.mean(a == b)) for a, b in zip(got, expected)]
    assert len(agreement) == count and min(agreement) >= MIN_AGREEMENT, agreement


def test_stats_record_the_precision(ov_engines, real_clip, tmp_path):
    from tests.conftest import run_module

    stats = tmp_path / "stats.json"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(ov_engines), "--stats", str(stats),
                      "--max-frames", "5", "--backend", "openvino", "--precision", "f32", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(stats.read_text())
    assert data["backend"] == "openvino" and data["precision"] == "fp32" and data["frames"] == 5
    assert "(CPU, f32," in data["backend_detail"] and data["verification"]["status"] == "passed"


def one_line_error(call) -> str:
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_precisions_that_cannot_run_are_one_line_errors_with_the_fix(ov_engines, monkeypatch):
    manifest = load_manifest(ov_engines)
    message = one_line_error(lambda: create_backend("openvino", manifest, precision="int8"))
    assert "no INT8 keyframe graph" in message and "--precision int8 --calibration DIR" in message
    message = one_line_error(lambda: load_backend("onnxruntime", manifest, precision="bf16", log=lambda m: None))
    assert "--backend openvino --precision bf16" in message
    message = one_line_error(lambda: load_backend("torch", manifest, precision="int8", log=lambda m: None))
    assert "FP32" in message
    one_line_error(lambda: InferOptions(precision="fp16"))
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda: ("FP32", "INT8"))
    message = one_line_error(lambda: load_backend("openvino", manifest, precision="bf16", log=lambda m: None))
    assert "neither AVX512_BF16 nor AMX" in message and "use --precision f32" in message
    message = one_line_error(lambda: load_backend("auto", manifest, precision="bf16", log=lambda m: None))
    assert message.startswith("no backend can run here") and "openvino: no bf16 (this CPU" in message


def test_without_openvino_the_reason_names_the_install_and_auto_runs(ov_engines, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    manifest = load_manifest(ov_engines)
    assert unavailable_reason("openvino", manifest) == "OpenVINO is not installed (pip install openvino)"
    message = one_line_error(lambda: load_backend("openvino", manifest, log=lambda m: None))
    assert "pip install openvino" in message
    assert load_backend("auto", manifest, threads=1, log=lambda m: None).backend.name == "onnxruntime"
