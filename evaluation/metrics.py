"""Segmentation accuracy: confusion matrix, per-class IoU and mIoU with an ignored label."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a [C,C] matrix, rows = ground truth, columns = prediction.

    Ground-truth pixels equal to ``ignore`` (or outside 0..C-1) are not counted; predictions
    outside 0..C-1 count as wrong for their ground-truth class.
    """

    def __init__(self, num_classes: int, ignore: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore = ignore
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)  # gt pixels predicted as an out-of-range id

    def update(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """truth, prediction: integer arrays of the same shape (any number of dimensions)."""
        truth = np.asarray(truth).astype(np.int64).ravel()
        prediction = np.asarray(prediction).astype(np.int64).ravel()
        if truth.shape != prediction.shape:
            raise ValueError(f"truth has {truth.size} pixels, prediction {prediction.size}")
        c = self.num_classes
        valid = (truth >= 0) & (truth < c)
        if self.ignore is not None:
            valid &= truth != self.ignore
        truth, prediction = truth[valid], prediction[valid]
        in_range = (prediction >= 0) & (prediction < c)
        self.matrix += np.bincount(truth[in_range] * c + prediction[in_range], minlength=c * c).reshape(c, c)
        self.missed += np.bincount(truth[~in_range], minlength=c)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix
        self.missed += other.missed

    def iou(self) -> np.ndarray:
        """Per-class IoU [C]; NaN for a class absent from both truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        gt = self.matrix.sum(axis=1) + self.missed
        pred = self.matrix.sum(axis=0)
        union = gt + pred - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (NaN-free mean); 0..1."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum() + self.missed.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")


def miou(truth: np.ndarray, prediction: np.ndarray, num_classes: int, ignore: int | None = None) -> float:
    """mIoU of one pair of label maps."""
    cm = ConfusionMatrix(num_classes, ignore)
    cm.update(truth, prediction)
    return cm.miou()
