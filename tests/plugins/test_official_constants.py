"""The other implementations of the chunk filter and the edge map held to the official GSVNet
computation at their constants, on the inputs of tests/gsvnet/test_official_constants.py: the CPU
build of the kernels' arithmetic (plugins/common/gsvnet_ops.h restates eps as ``kWeightEps``) and
the exported ONNX filter graph (the ChunkFilter node's function body holds the eps as a constant,
which onnxscript's optimiser would drop, export/onnx_export.py), run in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plugins import cpu
from tests.gsvnet.official_restatement import edge_map_np, fusion_np
from tests.gsvnet.test_official_constants import (OFFICIAL_EPS, SHAPE, block_labels, max_rel, official_inputs,
                                                  project_order, scores_of)


def _tiny(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of order 1e-8 (eps 1e-9 is ~1% of their sum), official order."""
    return official_inputs(rng, 0.5e-8, 1.5e-8)


def _heavy_null(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordinary weights with a null weight 1..3 (it halves the output or more), official order."""
    warped, intra, w11 = official_inputs(rng, 0.0, 1.0)
    w11[:, 9] = rng.uniform(1.0, 3.0, w11[:, 9].shape).astype(np.float32)
    return warped, intra, w11


def _ours(w11: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w11[:, project_order()])


@pytest.mark.parametrize("inputs", [_tiny, _heavy_null], ids=["eps-1e-9", "null-candidate"])
def test_cpu_chunk_filter_is_the_official_computation(inputs, rng):
    warped, intra, w11 = inputs(rng)
    got = cpu.chunk_filter(warped, intra, _ours(w11), radius=1)
    assert max_rel(got, fusion_np(warped, intra, w11, eps=OFFICIAL_EPS)) < 1e-5


def test_cpu_edge_map_zero_pads_as_the_official(rng):
    labels = block_labels(rng, 2, 8, 12, range(1, 5))  # no class 0: zero padding makes the border an edge
    np.testing.assert_array_equal(cpu.edge_map(scores_of(labels, 5, rng)), edge_map_np(labels))
    np.testing.assert_array_equal(cpu.edge_map_from_labels(labels), edge_map_np(labels))


@pytest.fixture(scope="module")
def filter_graph(tmp_path_factory) -> Path:
    """The 'filter' stage exported as the build exports it (one gsvnet::ChunkFilter node with its
    standard-op function body, radius 1) for SHAPE's grid."""
    from export.custom_ops import custom_op_transform
    from export.onnx_export import export_stage
    from engine_format.stages import stage_table
    from gsvnet.stages import stage_functions
    from gsvnet import GSVNet, GSVNetConfig

    n, c, h, w = SHAPE
    frame = (8 * h, 8 * w)
    model = GSVNet(GSVNetConfig(num_classes=c, radius=1)).eval()
    path = tmp_path_factory.mktemp("filter") / "filter.onnx"
    export_stage(model, stage_table(c, 1, frame)["filter"], stage_functions(frame)["filter"], path,
                 transform=custom_op_transform("function", 1))
    return path


@pytest.mark.parametrize("inputs", [_tiny, _heavy_null], ids=["eps-1e-9", "null-candidate"])
def test_exported_filter_graph_is_the_official_computation(filter_graph, inputs, rng):
    from engine_format.sessions import make_session

    warped, intra, w11 = inputs(rng)
    (got,) = make_session(filter_graph).run(None, {"warped": warped, "intra": intra, "weights": _ours(w11)})
    assert max_rel(got, fusion_np(warped, intra, w11, eps=OFFICIAL_EPS)) < 1e-5
