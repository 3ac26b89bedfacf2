"""Rewrites of exported graphs that make onnxruntime's CPU kernels faster and compute the same.

``static_resize_scales``: torch.onnx exports every ``F.interpolate(size=...)`` as a Resize whose
``sizes`` input is computed at run time (Shape -> Gather -> Concat). onnxruntime's CPU optimiser
runs a Resize inside its blocked NCHWc layout (the layout of the convolutions around it) only
when the Resize has constant ``scales``; otherwise every such Resize converts the tensor out of
that layout and back (ReorderOutput / ReorderInput) and runs the generic kernel. In the guiding
net's two x2 upsamplings that cost 20% of the graph (5.1 -> 4.3 ms at 544x960, one thread). Where
the frame size makes a ratio exact, the scales are constants with the same output size, so the
graph computes the same function; other Resize nodes are left as they are.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def _static_dims(values: dict[str, onnx.ValueInfoProto], name: str) -> list[int | None] | None:
    value = values.get(name)
    if value is None:
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _exact_scale(size_in: int, size_out: int) -> float | None:
    """out / in when it is an integer (or the inverse of one), so that onnxruntime's output size
    floor(in * scale) and its sampling positions are the ones the sizes gave."""
    if size_out % size_in == 0:
        return float(size_out // size_in)
    if size_in % size_out == 0 and (size_in // size_out) & (size_in // size_out - 1) == 0:  # 1/2, 1/4 ... exact
        return 1.0 / (size_in // size_out)
    return None


def remove_dead_nodes(graph: onnx.GraphProto) -> int:
    """Drop nodes (and initializers) no graph output depends on; returns how many nodes went."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    removed = len(graph.node) - len(keep)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return removed


def static_resize_scales(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose Resize nodes with static, exactly related NCHW spatial sizes use
    constant ``scales`` [1, 1, sh, sw] instead of ``sizes``; unused nodes are removed."""
    model = shape_inference.infer_shapes(model)
    graph = model.graph
    values = {v.name: v for v in (*graph.value_info, *graph.input, *graph.output)}
    changed = 0
    for node in graph.node:
        if node.op_type != "Resize" or node.domain not in ("", "ai.onnx") or len(node.input) < 4 or not node.input[3]:
            continue
        dims_in, dims_out = _static_dims(values, node.input[0]), _static_dims(values, node.output[0])
        if not dims_in or not dims_out or len(dims_in) != 4 or None in (*dims_in[2:], *dims_out[2:]):
            continue
        scales = [_exact_scale(dims_in[a], dims_out[a]) for a in (2, 3)]
        if None in scales:
            continue
        name = f"{node.name or node.output[0]}_scales"
        graph.initializer.append(numpy_helper.from_array(np.array([1.0, 1.0, *scales], np.float32), name))
        inputs = [node.input[0], node.input[1], name]
        del node.input[:]
        node.input.extend(inputs)
        changed += 1
    if changed:
        remove_dead_nodes(graph)
    del graph.value_info[:]  # shapes inferred here are not part of the exported graph
    return model
