"""onnxruntime backend: the ONNX graphs listed in the manifest, on the CPU or CUDA provider."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from export.manifest import STAGES, Manifest, verify_file
from export.onnx_session import make_session

from ..labels import upsample_argmax_x8
from ..threads import ThreadPlan
from .base import Array, Backend

__all__ = ["OnnxRuntimeBackend", "make_session"]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    concurrent_steps = True  # sessions are thread-safe and inputs/outputs are fresh numpy arrays

    def __init__(self, manifest: Manifest, providers: list[str] | None = None, threads: int = 0, profile: bool = True,
                 plan: ThreadPlan | None = None) -> None:
        """threads: intra-op threads of every graph (0: onnxruntime's default), unless ``plan``
        gives each graph its own count (and turns spinning off)."""
        super().__init__(manifest, profile, plan)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        if self.providers[0] != "CPUExecutionProvider":
            self.concurrent_steps = False
        self.run_options = ort.RunOptions()
        self.sessions: dict[str, ort.InferenceSession] = {}
        self.input_names: dict[str, list[str]] = {}
        self.output_names: dict[str, str] = {}
        for stage in STAGES:
            entry = manifest.graphs[stage]
            path = verify_file(manifest, entry, f"'{stage}' graph")
            count = plan.stage_threads.get(stage, 1) if plan is not None else threads
            spinning = plan.spinning if plan is not None else None
            self.sessions[stage] = make_session(path, self.providers, count, spinning, entry.get("precision", "fp32"))
            self.input_names[stage] = [spec["name"] for spec in entry["inputs"]]
            self.output_names[stage] = entry["outputs"][0]["name"]

    def run(self, stage: str, *inputs: Array) -> Array:
        feeds = dict(zip(self.input_names[stage], inputs))
        return self.sessions[stage].run([self.output_names[stage]], feeds, self.run_options)[0]

    def engine_labels(self, scores: Array) -> np.ndarray:
        """The labels stage without upsampling every class (runtime/labels.py; same labels up to exact
        ties) for half-pixel resampling; the labels graph for the official align_corners convention."""
        if self.manifest.model.get("resampling", "half_pixel") != "half_pixel":
            return super().engine_labels(scores)
        with self.timer("labels"):
            return upsample_argmax_x8(scores)

    def cancel(self) -> None:
        self.run_options.terminate = True

    def upload(self, frames: np.ndarray) -> Array:
        return np.ascontiguousarray(frames)

    def download(self, labels: Array) -> np.ndarray:
        return labels

    def describe(self) -> str:
        threads = self.plan.describe() if self.plan is not None else f"intra-op threads: {self.threads or 'default'}"
        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)}, {threads})"
