"""gsvnet custom-op ONNX graphs: checked, run in onnxruntime (function body and CPU-build
custom op), compared with the PyTorch reference."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from plugins import cpu
from plugins.onnx_ops import DOMAIN, as_custom_op
from tests.plugins.helpers import (ChunkFilterModule, WarpModule, errors, export, filter_inputs, reference_filter,
                                   reference_warp, warp_inputs)
from tests.requirements import require_module

EXPORT_SHAPE = (1, 4, 6, 7)


@functools.lru_cache(maxsize=None)
def warp_graph() -> onnx.ModelProto:
    seg, flow = (torch.from_numpy(a) for a in warp_inputs(np.random.default_rng(0), EXPORT_SHAPE))
    return export(WarpModule(), (seg, flow), ["seg", "flow"])


@functools.lru_cache(maxsize=None)
def filter_graph(radius: int) -> onnx.ModelProto:
    arrays = filter_inputs(np.random.default_rng(0), EXPORT_SHAPE, radius)
    return export(ChunkFilterModule(radius), tuple(torch.from_numpy(a) for a in arrays), ["warped", "intra", "weights"])


def _session(model: onnx.ModelProto, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def node_attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_custom_graph(model: onnx.ModelProto, source: onnx.ModelProto, op_type: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    (node,) = model.graph.node
    assert (node.op_type, node.domain) == (op_type, DOMAIN)
    # onnx-tensorrt takes the plugin (not the function body) only for nodes with this string attribute
    assert node_attributes(node)["plugin_namespace"] == b"gsvnet"
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 18), (DOMAIN, 1)}
    assert [v.SerializeToString() for v in model.graph.input] == [v.SerializeToString() for v in source.graph.input]
    assert [v.SerializeToString() for v in model.graph.output] == [v.SerializeToString() for v in source.graph.output]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_warp_node_with_function_runs_in_onnxruntime(rng):
    model = as_custom_op(warp_graph(), "WarpByFlow")
    _check_custom_graph(model, warp_graph(), "WarpByFlow")
    assert node_attributes(model.graph.node[0]) == {"plugin_namespace": b"gsvnet"}
    (function,) = model.functions
    assert (function.name, function.domain) == ("WarpByFlow", DOMAIN)
    assert list(function.input) == ["seg", "flow"] and list(function.output) == ["out"]
    grid_samples = [n for n in function.node if n.op_type == "GridSample"]
    assert len(grid_samples) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in grid_samples[0].attribute}
    assert attrs["mode"] == b"bilinear" and attrs["padding_mode"] == b"zeros" and attrs["align_corners"] == 1
    session = _session(model)
    for shape in [(1, 4, 6, 7), (3, 4, 6, 7)]:  # dynamic batch
        seg, flow = warp_inputs(rng, shape)
        (got,) = session.run(None, {"seg": seg, "flow": flow})
        abs_err, rel_err = errors(got, reference_warp(seg, flow))
        assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)


@pytest.mark.parametrize("radius", [1, 2])
def test_chunk_filter_node_with_function_runs_in_onnxruntime(radius, rng):
    source = filter_graph(radius)
    model = as_custom_op(source, "ChunkFilter", {"radius": radius})
    _check_custom_graph(model, source, "ChunkFilter")
    node = model.graph.node[0]
    assert node_attributes(node) == {"radius": radius, "plugin_namespace": b"gsvnet"}
    (function,) = model.functions
    assert list(function.attribute) == ["radius"]
    assert not any(n.op_type == "GridSample" for n in function.node)
    session = _session(model)
    for shape in [(1, 4, 6, 7), (2, 4, 6, 7)]:
        warped, intra, weights = filter_inputs(rng, shape, radius)
        (got,) = session.run(None, {"warped": warped, "intra": intra, "weights": weights})
        abs_err, rel_err = errors(got, reference_filter(warped, intra, weights, radius))
        assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)


def test_initializers_become_constants_inside_the_function():
    x = onnx.helper.make_tensor_value_info("seg", onnx.TensorProto.FLOAT, ["N", 2, 3, 3])
    f = onnx.helper.make_tensor_value_info("flow", onnx.TensorProto.FLOAT, ["N", 2, 3, 3])
    y = onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["N", 2, 3, 3])
    scale = onnx.numpy_helper.from_array(np.array(2.0, dtype=np.float32), "scale")
    nodes = [onnx.helper.make_node("Mul", ["seg", "scale"], ["scaled"]), onnx.helper.make_node("Add", ["scaled", "flow"], ["out"])]
    graph = onnx.helper.make_graph(nodes, "g", [x, f], [y], initializer=[scale])
    source = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model = as_custom_op(source, "WarpByFlow")
    onnx.checker.check_model(model, full_check=True)
    assert not model.graph.initializer and model.functions[0].node[0].op_type == "Constant"
    seg = np.ones((1, 2, 3, 3), np.float32)
    (got,) = _session(model).run(None, {"seg": seg, "flow": seg})
    np.testing.assert_array_equal(got, 3.0 * seg)


def test_bad_requests_are_rejected():
    with pytest.raises(ValueError, match="unknown op"):
        as_custom_op(warp_graph(), "Warp")
    with pytest.raises(ValueError, match="no attribute"):
        as_custom_op(warp_graph(), "WarpByFlow", {"radius": 1})
    with pytest.raises(ValueError, match="3 inputs"):
        as_custom_op(warp_graph(), "ChunkFilter")
    with pytest.raises(ValueError, match="needs 27 weight channels"):
        as_custom_op(filter_graph(1), "ChunkFilter", {"radius": 2})
    assert node_attributes(as_custom_op(filter_graph(1), "ChunkFilter").graph.node[0])["radius"] == 1


# ---- the bare node (no function) through a custom-op registration calling the CPU build ----

CONTRIB = "ai.onnx.contrib"  # the only domain onnxruntime-extensions' Python ops serve


@functools.lru_cache(maxsize=None)
def _register_cpu_ops() -> str:
    """Register WarpByFlow/ChunkFilter (float32) as onnxruntime-extensions Python ops backed by
    the CPU build of the kernels; returns the extensions library path."""
    ortx = require_module("onnxruntime_extensions", "the bare custom-op nodes run through its Python custom ops")
    f32 = ortx.PyCustomOpDef.dt_float

    @ortx.onnx_op(op_type="WarpByFlow", inputs=[f32, f32], outputs=[f32])
    def warp_by_flow(seg: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return cpu.warp_by_flow(seg, flow)

    @ortx.onnx_op(op_type="ChunkFilter", inputs=[f32, f32, f32], outputs=[f32], attrs={"radius": ortx.PyCustomOpDef.dt_int64})
    def chunk_filter(warped: np.ndarray, intra: np.ndarray, weights: np.ndarray, **attrs: int) -> np.ndarray:
        return cpu.chunk_filter(warped, intra, weights, attrs["radius"])

    return ortx.get_library_path()


def _retarget(model: onnx.ModelProto, domain: str) -> onnx.ModelProto:
    """The same bare-node model with the gsvnet node moved to ``domain`` for this run."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in out.graph.node:
        if node.domain == DOMAIN:
            node.domain = domain
    for opset in out.opset_import:
        if opset.domain == DOMAIN:
            opset.domain = domain
    return out


def _cpu_op_session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.register_custom_ops_library(_register_cpu_ops())
    return _session(_retarget(model, CONTRIB), options)


def test_bare_warp_node_runs_through_the_cpu_build(rng):
    model = as_custom_op(warp_graph(), "WarpByFlow", with_function=False)
    onnx.checker.check_model(model)
    assert not model.functions and model.graph.node[0].domain == DOMAIN
    assert node_attributes(model.graph.node[0])["plugin_namespace"] == b"gsvnet"
    session = _cpu_op_session(model)
    seg, flow = warp_inputs(rng, (2, 4, 6, 7))
    (got,) = session.run(None, {"seg": seg, "flow": flow})
    np.testing.assert_array_equal(got, cpu.warp_by_flow(seg, flow))  # it really ran the CPU build
    abs_err, rel_err = errors(got, reference_warp(seg, flow))
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)


@pytest.mark.parametrize("radius", [1, 2])
def test_bare_chunk_filter_node_runs_through_the_cpu_build(radius, rng):
    model = as_custom_op(filter_graph(radius), "ChunkFilter", {"radius": radius}, with_function=False)
    onnx.checker.check_model(model)
    session = _cpu_op_session(model)
    warped, intra, weights = filter_inputs(rng, (2, 4, 6, 7), radius)
    (got,) = session.run(None, {"warped": warped, "intra": intra, "weights": weights})
    abs_err, rel_err = errors(got, reference_filter(warped, intra, weights, radius))
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)
