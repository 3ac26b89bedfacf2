"""The PyTorch ``GSVNet`` under the schedule of ``runtime.schedule.core``.

``TorchStepper`` is a numpy-in / numpy-out adapter: it implements the ``runtime.schedule.core.Stepper``
protocol the way the runtime backends do (uint8 RGB frames [N,H,W,3] in, uint8 labels [N,H,W]
out), so evaluation code can drive the PyTorch reference and a deployed backend through the same
calls. ``segment_frames`` runs a PyTorch stepper on torch tensors without autograd history.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from gsvnet.model import GSVNet
from gsvnet.state import PropagationState

from .core import KeyframeScheduler, Stepper, StepResult


def segment_frames(model: Stepper, frames: Iterable[torch.Tensor], interval: int,
                   label_size: tuple[int, int] | None = None) -> Iterator[StepResult]:
    """Run a PyTorch stepper (e.g. ``GSVNet``) over frames without building autograd history."""
    scheduler = KeyframeScheduler(model, interval, label_size)
    iterator = scheduler.run(frames)
    while True:
        with torch.inference_mode():
            try:
                result = next(iterator)
            except StopIteration:
                return
        yield result


class TorchStepper:
    """``keyframe_scores``, when given, gives the keyframe scores [N,C,h,w] of uint8 frames (numpy)
    instead of the model's keyframe net: a GSVNet whose keyframe net is an imported ONNX model
    (``gsvnet.imported``) gets them from its engines folder's keyframe graph."""

    def __init__(self, model: GSVNet, device: str | torch.device = "cpu", keyframe_scores=None) -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.keyframe_scores = keyframe_scores

    def _frames(self, frames: np.ndarray) -> torch.Tensor:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [N,H,W,3], got {frames.dtype} {frames.shape}")
        return torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)

    def keyframe_step(self, frames: np.ndarray) -> PropagationState:
        with torch.inference_mode():
            image = self._frames(frames)
            if self.keyframe_scores is not None:
                scores = torch.from_numpy(np.asarray(self.keyframe_scores(np.asarray(frames)))).to(self.device)
                return PropagationState(scores, self.model.downsample(image))
            return self.model.keyframe_step(image)

    def propagation_step(self, state: PropagationState, frames: np.ndarray) -> PropagationState:
        with torch.inference_mode():
            return self.model.propagation_step(state, self._frames(frames))

    def labels(self, state: PropagationState, size: tuple[int, int]) -> np.ndarray:
        """uint8 [N,H,W]."""
        with torch.inference_mode():
            return self.model.labels(state, tuple(size)).cpu().numpy()
