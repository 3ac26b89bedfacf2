"""Keyframe-net mIoU and pixel accuracy computed by hand (numpy only), independent of evaluation.metrics."""

from __future__ import annotations

import numpy as np

from gsvnet.datasets.camvid import VOID
from evaluation.protocol import resize_frame


def keyframe_scores_by_hand(stepper, frames, size: tuple[int, int], classes: int = 11) -> tuple[float, float]:
    """(mIoU over classes present in truth or prediction, pixel accuracy), void ignored."""
    confusion = np.zeros((classes, classes), np.int64)
    for frame in frames:
        labels = stepper.labels(stepper.keyframe_step(resize_frame(frame.image, size)[None]), frame.label.shape)[0]
        scored = frame.label != VOID
        truth = frame.label[scored].astype(np.int64)
        confusion += np.bincount(truth * classes + labels[scored], minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()), float(tp.sum() / confusion.sum())
