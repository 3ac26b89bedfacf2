"""Multiply-accumulate counts of the exported graphs (batch 1).

Counted from the ONNX graphs after shape inference, so what is counted is what runs: Conv and
ConvTranspose (C_in/groups * kh * kw MACs per output element), MatMul/Gemm, and GridSample
(4 taps per output element). Elementwise ops are not counted. FLOPs = 2 * MACs; note that
``ptflops``, used by the paper's authors, reports MACs under the name FLOPs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import inliner, shape_inference


def _shape(value_info: dict[str, list[int]], name: str) -> list[int] | None:
    return value_info.get(name)


def _static_shapes(model: onnx.ModelProto, batch: int = 1) -> dict[str, list[int]]:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_param:
            dim.ClearField("dim_param")
            dim.dim_value = batch
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if dims and all(d is not None for d in dims):
            shapes[value.name] = dims
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def count_macs(path: Path) -> float:
    """Multiply-accumulates of one ONNX graph at batch 1 (custom-op functions inlined)."""
    model = onnx.load(str(path))
    if model.functions:
        model = inliner.inline_local_functions(model)
    shapes = _static_shapes(model)
    macs = 0
    for node in model.graph.node:
        out = _shape(shapes, node.output[0]) if node.output else None
        if out is None:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            w = _shape(shapes, node.input[1])
            if w is None:
                continue
            # weight [C_out, C_in/groups, kh, kw] (ConvTranspose: [C_in, C_out/groups, kh, kw])
            if node.op_type == "Conv":
                macs += int(np.prod(out)) * (w[1] * int(np.prod(w[2:])))
            else:
                inp = _shape(shapes, node.input[0])
                macs += int(np.prod(inp)) * (w[1] * int(np.prod(w[2:]))) if inp else 0
        elif node.op_type in ("MatMul", "Gemm"):
            a = _shape(shapes, node.input[0])
            if a is not None:
                macs += int(np.prod(out)) * a[-1]
        elif node.op_type == "GridSample":
            macs += int(np.prod(out)) * 4
    return float(macs)
