"""INT8 graphs in the form onnxruntime's x86 CPU kernels run fastest: activations in uint8.

Our QDQ graphs are symmetric int8 (what TensorRT needs); onnxruntime on x86 wants u8 x s8, so
``engine_format.sessions.make_session`` loads INT8 graphs through ``for_onnxruntime_x86`` there.
"""

from __future__ import annotations

import platform

import numpy as np
import onnx
from onnx import numpy_helper


def x86_needs_u8() -> bool:
    """Whether onnxruntime's CPU INT8 kernels here want uint8 activations (x86; ARM has s8 x s8)."""
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def for_onnxruntime_x86(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every activation QuantizeLinear / DequantizeLinear moved from int8 (zero point z)
    to uint8 (zero point z + 128); weights (DequantizeLinear of an initializer) stay int8."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    shifted: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            continue  # a weight
        zero = initializers.get(node.input[2])
        if zero is None or zero.data_type != onnx.TensorProto.INT8:
            continue
        if zero.name not in shifted:
            name = f"{zero.name}_u8"
            values = numpy_helper.to_array(zero).astype(np.int16) + 128
            graph.initializer.append(numpy_helper.from_array(values.astype(np.uint8), name))
            shifted[zero.name] = name
        node.input[2] = shifted[zero.name]
    return model
