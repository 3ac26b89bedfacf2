"""Model selection for the propagation nets: the ground-truth protocol on the first half of the
CamVid val sequence, fast enough to run every few hundred training steps.

The keyframe net is frozen, so its scores and the 1/8 frames of the sequence are computed once;
each evaluation then runs only the propagation nets (``evaluation.protocol`` drives a stepper over
the cached tensors) and scores labels at the ground truth's full resolution, exactly as
``python -m evaluation camvid-sequence --half first`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gsvnet import GSVNet, PropagationState
from gsvnet.datasets.camvid import VOID, LabelledFrame, sequence_half
from evaluation.protocol import distance_confusions, resize_frame, summarise

from .clip import keyframe_scores


class CachedStepper:
    """A Stepper whose frames are indices into cached keyframe scores and 1/8 frames."""

    def __init__(self, model: GSVNet, small: torch.Tensor, scores: torch.Tensor) -> None:
        self.model, self.small, self.scores = model, small, scores
        self.device = model.mean.device  # the tensors may stay on the CPU (memory-mapped): frames move one at a time

    def keyframe_step(self, index: np.ndarray) -> PropagationState:
        t = int(index[0])
        return PropagationState(self.scores[t : t + 1].to(self.device), self.small[t : t + 1].to(self.device))

    def propagation_step(self, state: PropagationState, index: np.ndarray) -> PropagationState:
        t = int(index[0])
        with torch.inference_mode():
            small = self.small[t : t + 1].to(self.device)
            return PropagationState(self.model.propagate(state.scores, state.small, small), small)

    def labels(self, state: PropagationState, size: tuple[int, int]) -> np.ndarray:
        with torch.inference_mode():
            return self.model.labels(state, tuple(size)).cpu().numpy()


@dataclass
class SelectionSet:
    """The selection half of the val sequence with its cached keyframe-path tensors."""

    frames: list[LabelledFrame]
    small: torch.Tensor  # [T,3,h,w]
    scores: torch.Tensor  # [T,C,h,w]
    targets: list[int]  # frames scored at every distance 0..max_distance

    @classmethod
    def prepare(cls, model: GSVNet, val: list[LabelledFrame], size: tuple[int, int], max_distance: int,
                half: str = "first") -> "SelectionSet":
        frames = list(val)
        indices = sequence_half(list(range(len(frames))), half)
        targets = [t for t in indices if t >= max_distance]
        if not targets:
            raise SystemExit(f"error: the {half} half of the val sequence ({len(indices)} frames) has no frame with "
                             f"{max_distance} frames before it; use a longer sequence or a smaller --max-interval")
        images = np.stack([resize_frame(f.image, size) for f in frames[: targets[-1] + 1]])
        small, scores = keyframe_scores(model, images)
        return cls(frames, small, scores, targets)

    def evaluate(self, model: GSVNet, max_distance: int) -> dict:
        """evaluation.protocol summary (miou_by_distance, avg, min) of ``model``'s propagation."""
        model.eval()
        device = model.mean.device
        stepper = CachedStepper(model, self.small.to(device), self.scores.to(device))
        target_set = set(self.targets)
        cms = distance_confusions(stepper, lambda t: np.array(t), lambda t: self.frames[t].label if t in target_set else None,
                                  range(self.targets[0] - max_distance, self.targets[-1] + 1), list(range(max_distance + 1)),
                                  model.num_classes, VOID, self.targets[-1])
        return summarise(cms, max_distance)


def mean_over(summary: dict, distances: range) -> float:
    """Mean of D(d) over ``distances`` (the selection score)."""
    return float(np.mean([summary["miou_by_distance"][str(d)] for d in distances]))
