"""onnxruntime backends: the ONNX graphs listed in the manifest as onnxruntime sessions.

``OnnxRuntimeSessions`` loads them (providers, threads, precision); ``OnnxRuntimeBackend`` runs
them on numpy arrays (the CPU, or the CUDA provider copying every stage's inputs up and its output
back); its sibling ``onnxruntime_device_backend.OnnxRuntimeDeviceBackend`` binds device buffers.
"""

from __future__ import annotations

import onnxruntime as ort

from engine_format.manifest import STAGES, Manifest, verify_file
from engine_format.sessions import make_session

from ..threads import ThreadPlan
from .base import Array, Backend, HostArrays

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeSessions", "make_session"]


class OnnxRuntimeSessions(Backend):
    """One onnxruntime session per stage graph, and what the backend built on them reports;
    subclasses say how a stage runs and on which array type."""

    def __init__(self, manifest: Manifest, providers: list[str] | None = None, threads: int = 0, profile: bool = True,
                 plan: ThreadPlan | None = None) -> None:
        """threads: intra-op threads of every graph (0: onnxruntime's default), unless ``plan``
        gives each graph its own count (and turns spinning off)."""
        super().__init__(manifest, profile, plan)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        if self.providers[0] != "CPUExecutionProvider":
            self.concurrent_steps = False
        if manifest.graphs["keyframe"].get("precision") == "int8":
            self.precision = "int8-keyframe"
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

    def cancel(self) -> None:
        self.run_options.terminate = True

    def device_identity(self) -> dict:
        return {**super().device_identity(), "providers": list(self.providers)}

    def library_versions(self) -> dict:
        return {**super().library_versions(), "onnxruntime": ort.__version__}

    def describe(self) -> str:
        threads = self.plan.describe() if self.plan is not None else f"intra-op threads: {self.threads or 'default'}"
        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)}, {threads})"


class OnnxRuntimeBackend(HostArrays, OnnxRuntimeSessions):
    """The sessions on numpy arrays: every stage's inputs and output are host arrays."""

    name = "onnxruntime"
    concurrent_steps = True  # sessions are thread-safe and inputs/outputs are fresh numpy arrays

    def run(self, stage: str, *inputs: Array) -> Array:
        feeds = dict(zip(self.input_names[stage], inputs))
        return self.sessions[stage].run([self.output_names[stage]], feeds, self.run_options)[0]
