"""Bytes moved per output pixel: the fused kernel's count by hand, the unfused decomposition's
formula against a hand-built ONNX graph whose tensors onnxruntime actually materialises, and the
exported standard-op graph against both."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from plugins import traffic
from tests.gsvnet.reference import chunk_filter_np
from tests.plugins.helpers import ChunkFilterModule, errors, export, filter_inputs

NAMES = ["warped", "intra", "weights"]


def test_fused_bytes_by_hand():
    # C = 11, r = 1: warped, intra and out 11 values each + 9 shift, 1 intra, 1 null weight = 44 values
    assert traffic.fused_chunk_filter_bytes(11, 1) == {"dram": 176.0, "l2": 190.4375}
    # L2: each class stages a 34x10 tile for 256 pixels: 11 * 340 / 256 = 14.609375 warped reads,
    # + 11 intra + 11 out + 11 weights = 47.609375 values = 190.4375 B
    # C = 19, r = 2: 57 values + 25 + 2 weights = 84 values = 336 B; FP16 I/O halves it
    assert traffic.fused_chunk_filter_bytes(19, 2)["dram"] == 336.0
    assert traffic.fused_chunk_filter_bytes(19, 2, itemsize=2)["dram"] == 168.0


def decomposition_graph(c: int, radius: int, h: int, w: int) -> onnx.ModelProto:
    """The chunk filter as the ideal standard-op graph, built node by node (Pad, K Slices, one
    Split of the weights, K+1 Muls, K Adds, ReduceSum, eps Add, Div)."""
    k = (2 * radius + 1) ** 2
    const = [numpy_helper.from_array(np.array([0, 0, radius, radius, 0, 0, radius, radius], np.int64), "pads"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"),
             numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
             numpy_helper.from_array(np.array(1e-9, np.float32), "eps")]
    nodes = [helper.make_node("Pad", ["warped", "pads"], ["padded"])]
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    for i, (dy, dx) in enumerate(offsets):
        const += [numpy_helper.from_array(np.array([radius + dy, radius + dx], np.int64), f"start{i}"),
                  numpy_helper.from_array(np.array([radius + dy + h, radius + dx + w], np.int64), f"end{i}")]
        nodes.append(helper.make_node("Slice", ["padded", f"start{i}", f"end{i}", "hw_axes"], [f"cand{i}"]))
    nodes.append(helper.make_node("Split", ["weights"], [f"w{i}" for i in range(k + 2)], axis=1, num_outputs=k + 2))
    nodes.append(helper.make_node("Mul", ["intra", f"w{k}"], ["acc_intra"]))
    acc = "acc_intra"
    for i in range(k):
        nodes.append(helper.make_node("Mul", [f"cand{i}", f"w{i}"], [f"term{i}"]))
        nodes.append(helper.make_node("Add", [acc, f"term{i}"], [f"acc{i}"]))
        acc = f"acc{i}"
    nodes += [helper.make_node("ReduceSum", ["weights", "channel_axis"], ["wsum"], keepdims=1),
              helper.make_node("Add", ["wsum", "eps"], ["denom"]),
              helper.make_node("Div", [acc, "denom"], ["out"])]
    scores = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", c, h, w])  # noqa: E731
    inputs = [scores("warped"), scores("intra"), helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["N", k + 2, h, w])]
    graph = helper.make_graph(nodes, "chunk_filter_decomposition", inputs, [scores("out")], initializer=const)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("c,radius,grid", [(11, 1, (12, 20)), (3, 2, (9, 13))])
def test_decomposition_formula_equals_the_measured_hand_built_graph(c, radius, grid, rng):
    arrays = filter_inputs(rng, (2, c, *grid), radius)
    model = decomposition_graph(c, radius, *grid)
    onnx.checker.check_model(model, full_check=True)
    feeds = dict(zip(NAMES, arrays))
    import onnxruntime as ort

    (out,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    abs_err, rel_err = errors(out, chunk_filter_np(*arrays, radius))  # the graph is the chunk filter
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)
    measured = traffic.graph_bytes_per_pixel(model, feeds)
    assert measured == pytest.approx(traffic.decomposition_bytes(c, radius, grid=grid), rel=1e-12)
    assert measured > traffic.decomposition_bytes(c, radius)  # the padded border only adds


@pytest.mark.parametrize("radius", [1, 2])
def test_fused_chunk_filter_moves_far_fewer_bytes_than_the_exported_graph(radius, rng):
    shape = (1, 11, 24, 32)
    arrays = filter_inputs(rng, shape, radius)
    model = export(ChunkFilterModule(radius), tuple(torch.from_numpy(a) for a in arrays), NAMES)
    unfused = traffic.graph_bytes_per_pixel(model, dict(zip(NAMES, arrays)))
    ideal = traffic.graph_bytes_per_pixel(decomposition_graph(11, radius, 24, 32), dict(zip(NAMES, arrays)))
    fused = traffic.fused_chunk_filter_bytes(shape[1], radius)
    k = (2 * radius + 1) ** 2
    # any unfused graph writes and reads each of the K shifted candidates at least once
    assert unfused >= ideal >= 4 * 2 * k * shape[1]
    assert fused["dram"] < fused["l2"] < unfused / 10


def test_graph_bytes_counts_only_large_tensors():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 5])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"]), helper.make_node("Neg", ["r"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": np.ones((1, 3, 4, 5), np.float32)}
    # Relu reads x, writes r; Shape reads r (its 4-element output is not counted); Neg reads r, writes y
    assert traffic.graph_bytes_per_pixel(model, feeds) == 5 * 3 * 4
