"""onnxruntime with IOBinding: frames, state and labels stay on the provider's device.

Its sibling, the plain onnxruntime backend, hands numpy arrays to every ``run``, so with the
CUDA provider each stage copies its inputs up and its output back. Here every stage binds
OrtValues that already live on the device and binds its output there too; only the frames go up
and the uint8 labels come back. ``device="cpu"`` gives the same code path on the CPU (used by the tests).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from engine_format.manifest import Manifest

from ..errors import UserError
from .base import Array
from .gpu_checks import gpu_driver
from .onnxruntime_backend import OnnxRuntimeSessions


class OnnxRuntimeDeviceBackend(OnnxRuntimeSessions):
    """The sessions on OrtValues bound on ``device``: the labels stage is the labels graph there
    (``Backend.engine_labels``), so only the uint8 labels come back."""

    name = "onnxruntime-cuda"
    concurrent_steps = False  # steps bind device buffers

    def __init__(self, manifest: Manifest, providers: list[str] | None = None, threads: int = 0, profile: bool = True,
                 device: str = "cuda", device_id: int = 0) -> None:
        super().__init__(manifest, providers or ["CUDAExecutionProvider", "CPUExecutionProvider"], threads, profile)
        self.device, self.device_id = device, device_id
        if device == "cuda":  # onnxruntime falls back to the CPU silently when CUDA/cuDNN do not load
            on_cpu = [stage for stage, session in self.sessions.items() if "CUDAExecutionProvider" not in session.get_providers()]
            if on_cpu:
                raise UserError(f"onnxruntime runs the {', '.join(on_cpu)} graph(s) on the CPU although CUDA was asked "
                                "for (CUDA or cuDNN libraries missing or of another version); use --backend auto")

    def _value(self, x: Array) -> ort.OrtValue:
        if isinstance(x, ort.OrtValue):
            return x
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), self.device, self.device_id)

    def run(self, stage: str, *inputs: Array) -> Array:
        session = self.sessions[stage]
        binding = session.io_binding()
        for name, x in zip(self.input_names[stage], inputs):
            binding.bind_ortvalue_input(name, self._value(x))
        binding.bind_output(self.output_names[stage], self.device, self.device_id)
        session.run_with_iobinding(binding, self.run_options)
        return binding.get_outputs()[0]

    def upload(self, frames: np.ndarray) -> Array:
        return self._value(frames)

    def download(self, labels: Array) -> np.ndarray:
        return labels.numpy() if isinstance(labels, ort.OrtValue) else np.asarray(labels)

    def concat(self, arrays: list[Array]) -> Array:
        """Through the host: OrtValue has no device concatenation (multi-stream batching only)."""
        return self._value(np.concatenate([self.download(a) for a in arrays], axis=0))

    def split(self, array: Array, sizes: list[int]) -> list[Array]:
        host = self.download(array)
        return [self._value(piece) for piece in np.split(host, np.cumsum(sizes)[:-1], axis=0)]

    def device_identity(self) -> dict:
        return {**super().device_identity(), "driver": gpu_driver()}

    def describe(self) -> str:
        return super().describe() + f", IOBinding on {self.device}:{self.device_id}"
