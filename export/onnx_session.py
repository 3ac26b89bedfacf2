"""One way to open an ONNX graph in onnxruntime: the export checks and the runtime's
onnxruntime backends use the same session settings."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def make_session(path: Path | str | bytes, providers: list[str] | None = None, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session with full graph optimisation (a path or serialised model bytes)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])
