"""One way to open an ONNX graph in onnxruntime: the export checks and the runtime's
onnxruntime backends use the same session settings."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort


def make_session(path: Path | str | bytes, providers: list[str] | None = None, threads: int = 0,
                 spinning: bool | None = None, precision: str = "fp32") -> ort.InferenceSession:
    """An onnxruntime session with full graph optimisation (a path or serialised model bytes).

    threads: intra-op threads (0: onnxruntime's default, one per physical core); spinning: whether
    idle worker threads spin waiting for work (None: onnxruntime's default, which spins). Spinning
    is wasted where the threads share cores with other work (runtime/threads.py turns it off).
    precision: the graph's ('int8': a symmetric QDQ graph, which the CPU provider on x86 runs with
    uint8 activations, export/quantize.py).
    """
    providers = providers or ["CPUExecutionProvider"]
    if precision == "int8" and providers[0] == "CPUExecutionProvider":
        import onnx

        from .int8_x86 import for_onnxruntime_x86, x86_needs_u8

        if x86_needs_u8():
            model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
            path = for_onnxruntime_x86(model).SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=providers)


def keyframe_scores(path: Path | str | bytes, threads: int = 0, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """The keyframe graph (a file or serialised model) in onnxruntime as a function: uint8 frames
    [N,H,W,3] -> float32 scores [N,C,h,w] (the stage table's 'keyframe')."""
    session = make_session(path, threads=threads, precision=precision)
    name = session.get_inputs()[0].name

    def scores(frames: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(frames)})[0].astype(np.float32, copy=False)

    return scores
