"""PyTorch eager backend: the GSVNet modules from the engines folder's checkpoint.

This is the reference every other backend is compared with, and the "PyTorch eager" baseline
of the benchmarks. It runs the same stage functions the exporter exported; a folder whose keyframe
net is an imported ONNX model (``build_engines --keyframe-onnx``) has its keyframe graph run in
onnxruntime, the rest in PyTorch.
"""

from __future__ import annotations

import numpy as np
import torch

from engine_format.manifest import Manifest, verify_file
from gsvnet.stages import stage_functions
from gsvnet import load_checkpoint

from ..threads import ThreadPlan
from .base import Array, Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, manifest: Manifest, device: str = "cpu", threads: int = 0, profile: bool = True,
                 plan: ThreadPlan | None = None) -> None:
        """threads: PyTorch's intra-op threads (0: PyTorch's default), unless ``plan`` sets them
        (the most any stage gets: PyTorch has one setting for the whole process)."""
        self.device = torch.device(device)
        self.is_async = self.device.type == "cuda"
        self.concurrent_steps = self.device.type == "cpu"
        super().__init__(manifest, profile, plan)
        if plan is not None:
            threads = max(plan.stage_threads.values(), default=1)
        if threads:
            torch.set_num_threads(threads)
        path = verify_file(manifest, manifest.data["checkpoint"], "checkpoint")
        self.model, _ = load_checkpoint(path)
        self.model.to(self.device).eval()
        self.functions = stage_functions(self.frame_size)
        self.imported = None
        if manifest.model.get("keyframe_import"):
            from engine_format.sessions import keyframe_scores

            self.imported = keyframe_scores(verify_file(manifest, manifest.graphs["keyframe"], "graph"), threads or 0)

    def run(self, stage: str, *inputs: Array) -> Array:
        if stage == "keyframe" and self.imported is not None:
            return torch.from_numpy(self.imported(inputs[0].cpu().numpy())).to(self.device)
        with torch.inference_mode():
            return self.functions[stage](self.model, *inputs)

    def upload(self, frames: np.ndarray) -> Array:
        return torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)

    def download(self, labels: Array) -> np.ndarray:
        return labels.cpu().numpy()

    def concat(self, arrays: list[Array]) -> Array:
        return torch.cat(arrays, dim=0)

    def split(self, array: Array, sizes: list[int]) -> list[Array]:
        return list(torch.split(array, sizes, dim=0))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def exercised_files(self) -> dict[str, str]:
        checkpoint = self.manifest.data["checkpoint"]
        files = {checkpoint["file"]: checkpoint["sha256"]}
        if self.imported is not None:
            keyframe = self.manifest.graphs["keyframe"]
            files[keyframe["file"]] = keyframe["sha256"]
        return files

    def library_versions(self) -> dict:
        return {**super().library_versions(), "torch": torch.__version__}

    def describe(self) -> str:
        plan = f"; {self.plan.describe()}" if self.plan is not None else ""
        return f"torch {torch.__version__} eager on {self.device} ({torch.get_num_threads()} threads{plan})"
