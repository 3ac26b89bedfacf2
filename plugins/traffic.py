"""Bytes moved per output pixel: the fused CUDA chunk filter vs an unfused standard-op graph.

A "pixel" is one (n, y, x) position with all C classes. For a graph every node is assumed to
read its large inputs from and write its outputs to device memory (no fusion, which is what
the Pad / Slice / Mul / Add / ReduceSum / Div decomposition costs without a fusing compiler);
small shape-computation tensors (fewer than N*h*w elements) are not counted.
"""

from __future__ import annotations

import numpy as np
import onnx

from plugins import geometry


def fused_chunk_filter_bytes(classes: int, radius: int, itemsize: int = 4) -> dict[str, float]:
    """Per-pixel traffic of the fused kernel: 'dram' counts each tensor once (warped, intra and
    out C values each, the K+2 weights); 'l2' adds the halo re-reads of each 32x8 tile's staging."""
    k2 = geometry.num_weights(radius)
    halo = (geometry.TILE_W + 2 * radius) * (geometry.TILE_H + 2 * radius) / (geometry.TILE_W * geometry.TILE_H)
    return {
        "dram": float(itemsize * (3 * classes + k2)),
        "l2": float(itemsize * (classes * halo + 2 * classes + k2)),
    }


def decomposition_bytes(classes: int, radius: int, itemsize: int = 4, grid: tuple[int, int] | None = None) -> float:
    """Per-pixel traffic of the ideal unfused decomposition, every node reading its inputs and
    writing its outputs whole (the accounting of ``graph_bytes_per_pixel``):

    Pad of warped (C in, Cp out), K Slices of the padded scores (Cp in, C out each), one Split
    of the K+2 weights into channels (K+2 in, K+2 out), K+1 Muls (C+1 in, C out each: K shifts
    and intra), K Adds (2C in, C out each), ReduceSum of the weights (K+2 in, 1 out), the eps
    Add (1 in, 1 out), Div (C+1 in, C out). Cp is the padded tensor per output pixel,
    C (h+2r)(w+2r)/(hw) on an h x w ``grid``, C when ``grid`` is None (large grids)."""
    c, k = classes, geometry.num_shifts(radius)
    if grid is None:
        cp = float(c)
    else:
        h, w = grid
        cp = c * (h + 2 * radius) * (w + 2 * radius) / (h * w)
    values = ((c + cp) + k * (cp + c) + 2 * (k + 2) + (k + 1) * (2 * c + 1) + k * 3 * c
              + (k + 2 + 1) + 2 + (2 * c + 1))
    return float(itemsize * values)


def graph_bytes_per_pixel(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    """Bytes read + written per (n, y, x) by the nodes of ``model`` run on ``feeds`` in
    onnxruntime, every intermediate materialised (sizes measured, not assumed)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph_outputs = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in graph_outputs:
                probe.graph.output.add().name = name
                graph_outputs.add(name)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, feeds)))
    values.update(feeds)
    first = next(iter(feeds.values()))
    n, h, w = first.shape[0], first.shape[-2], first.shape[-1]
    pixels = n * h * w
    total = 0
    for node in model.graph.node:
        for name in (*node.input, *node.output):
            array = values.get(name)
            if array is not None and array.size >= pixels:
                total += array.nbytes
    return total / pixels
