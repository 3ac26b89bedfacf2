"""Casts to uint8 that TensorRT accepts: from float only.

TensorRT documents uint8 conversions only from/to float32 and float16 ("uint8 conversions are
not supported for {int8, int32, bool}", tensorrt.DataType.UINT8 in the TensorRT 10 Python API),
and the labels graph ends in ArgMax (int64) -> Cast(uint8). For the TensorRT graphs every Cast
to uint8 whose input is not float32/float16 is preceded by a Cast to float32: exact for class
indices (< 2^24), the same labels in onnxruntime.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}


def uint8_casts_from_float(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every Cast(to=UINT8) of a non-float tensor casts from float32."""
    types = _elem_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for node in out.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        source = node.input[0] if node.input else ""
        if node.op_type == "Cast" and to == TensorProto.UINT8 and types.get(source) not in FLOATS:
            as_float = f"{source}_as_float"
            nodes.append(helper.make_node("Cast", [source], [as_float], name=f"{node.name or source}_to_float",
                                          to=TensorProto.FLOAT))
            node.input[0] = as_float
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out
