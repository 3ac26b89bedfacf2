"""A numpy-in / numpy-out adapter around the PyTorch ``GSVNet``.

It implements the ``gsvnet.loop.Stepper`` protocol the way the runtime backends do (uint8 RGB
frames [N,H,W,3] in, uint8 labels [N,H,W] out), so evaluation code can drive the PyTorch
reference and a deployed backend through the same calls.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import GSVNet, PropagationState


class TorchStepper:
    def __init__(self, model: GSVNet, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)

    def _frames(self, frames: np.ndarray) -> torch.Tensor:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [N,H,W,3], got {frames.dtype} {frames.shape}")
        return torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)

    def keyframe_step(self, frames: np.ndarray) -> PropagationState:
        with torch.inference_mode():
            return self.model.keyframe_step(self._frames(frames))

    def propagation_step(self, state: PropagationState, frames: np.ndarray) -> PropagationState:
        with torch.inference_mode():
            return self.model.propagation_step(state, self._frames(frames))

    def labels(self, state: PropagationState, size: tuple[int, int]) -> np.ndarray:
        """uint8 [N,H,W]."""
        with torch.inference_mode():
            return self.model.labels(state, tuple(size)).cpu().numpy()
