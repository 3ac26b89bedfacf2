"""Per-frame accuracy of a stepper on labelled images (keyframe path only)."""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from gsvnet.loop import Stepper

from .camvid import LabelledFrame
from .metrics import ConfusionMatrix


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [size[0],size[1],3] (area filter when shrinking, bilinear otherwise)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    shrink = size[0] < h and size[1] < w
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def keyframe_confusion(stepper: Stepper, frames: Iterable[LabelledFrame], frame_size: tuple[int, int],
                       num_classes: int, void: int) -> ConfusionMatrix:
    """Run ``keyframe_step`` on every image resized to ``frame_size`` (H, W multiples of 8) and
    score the labels at each ground truth's own resolution."""
    cm = ConfusionMatrix(num_classes, ignore=void)
    for frame in frames:
        batch = resize_frame(frame.image, frame_size)[None]
        labels = np.asarray(stepper.labels(stepper.keyframe_step(batch), frame.label.shape))
        cm.update(frame.label, labels[0])
    return cm
