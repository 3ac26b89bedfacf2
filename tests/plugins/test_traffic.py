"""Bytes moved per output pixel: fused kernel vs the unfused standard-op ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins import traffic
from tests.plugins.helpers import ChunkFilterModule, export, filter_inputs


@pytest.mark.parametrize("radius", [1, 2])
def test_fused_chunk_filter_moves_far_fewer_bytes_than_the_standard_op_graph(radius, rng):
    shape = (1, 11, 24, 32)
    arrays = filter_inputs(rng, shape, radius)
    model = export(ChunkFilterModule(radius), tuple(torch.from_numpy(a) for a in arrays), ["warped", "intra", "weights"])
    unfused = traffic.graph_bytes_per_pixel(model, dict(zip(["warped", "intra", "weights"], arrays)))
    fused = traffic.fused_chunk_filter_bytes(shape[1], radius)
    k = (2 * radius + 1) ** 2
    # lower bound for any unfused graph: each of the K shifted candidates is written and read once
    assert unfused >= traffic.decomposition_bytes(shape[1], radius) >= 4 * 2 * k * shape[1]
    assert traffic.decomposition_bytes(shape[1], radius) == 4 * (7 * shape[1] * k + 6 * shape[1] + 4 * k + 8)
    assert fused["dram"] == 4 * (3 * shape[1] + k + 1) and fused["dram"] < fused["l2"] < unfused / 10


def test_graph_bytes_counts_only_large_tensors():
    import onnx
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 5])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 4, 5])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"]), helper.make_node("Neg", ["r"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": np.ones((1, 3, 4, 5), np.float32)}
    # Relu reads x, writes r; Shape reads r (its 4-element output is not counted); Neg reads r, writes y
    assert traffic.graph_bytes_per_pixel(model, feeds) == 5 * 3 * 4
