"""Segmentation losses for from-scratch keyframe training: class-balanced and hard-pixel cross-entropy.

On CamVid's 367 training images the thin classes (pole, sign, pedestrian, bicyclist, fence)
cover a few percent of the pixels; plain cross-entropy lets the net ignore them. Two remedies:
- ``enet`` class weights w_c = 1 / ln(1.02 + p_c), p_c the class's share of the labelled
  training pixels (Paszke et al., ENet): bounded (at most 1/ln 1.02 ~ 50), rare classes weigh more;
- online hard-example mining (``ohem``): the loss is averaged over the pixels whose predicted
  probability of the true class is below ``threshold``, and at least ``min_kept`` of them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("ce", "enet", "ohem")


def class_frequencies(labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Share of each class among the labelled pixels (void and out-of-range ids excluded), [C] summing to 1."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        flat = label.ravel().astype(np.int64)
        counts += np.bincount(flat[(flat >= 0) & (flat < num_classes)], minlength=num_classes)[:num_classes]
    total = counts.sum()
    if total == 0:
        raise ValueError("no labelled pixels to compute class frequencies from")
    return counts / total


def enet_weights(frequencies: np.ndarray, c: float = 1.02) -> np.ndarray:
    """w = 1 / ln(c + p) for class shares p (float32 [C])."""
    return (1.0 / np.log(c + np.asarray(frequencies, dtype=np.float64))).astype(np.float32)


CLASS_WEIGHTS = ("enet", "sqrt", "none")


def class_weights(kind: str, frequencies: np.ndarray) -> np.ndarray:
    """Per-class loss weights (float32 [C]): ``enet`` weights, their square root (milder), or ones (``none``)."""
    if kind == "enet":
        return enet_weights(frequencies)
    if kind == "sqrt":
        return np.sqrt(enet_weights(frequencies)).astype(np.float32)
    if kind == "none":
        return np.ones(len(frequencies), np.float32)
    raise ValueError(f"unknown class weighting {kind!r}; choose one of {CLASS_WEIGHTS}")


class SegmentationLoss:
    """Cross-entropy of logits [B,C,H,W] against labels [B,H,W] (``ignore`` skipped), in one of LOSSES."""

    def __init__(self, kind: str, ignore: int, weights: torch.Tensor | None = None,
                 threshold: float = 0.7, min_kept: int = 10_000) -> None:
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
        if kind == "enet" and weights is None:
            raise ValueError("the enet loss needs class weights")
        self.kind, self.ignore, self.weights = kind, ignore, weights
        self.threshold, self.min_kept = threshold, min_kept

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.kind == "ce":
            return F.cross_entropy(logits, labels, ignore_index=self.ignore)
        if self.kind == "enet":
            return F.cross_entropy(logits, labels, weight=self.weights.to(logits.device), ignore_index=self.ignore)
        return self._ohem(logits, labels)

    def _ohem(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pixel = F.cross_entropy(logits, labels, ignore_index=self.ignore, reduction="none").flatten()
        valid = labels.flatten() != self.ignore
        losses = pixel[valid]
        if losses.numel() == 0:
            return logits.sum() * 0.0
        # probability of the true class below threshold  <=>  loss above -ln(threshold)
        hard = losses > -float(np.log(self.threshold))
        if int(hard.sum()) < min(self.min_kept, losses.numel()):
            return losses.topk(min(self.min_kept, losses.numel())).values.mean()
        return losses[hard].mean()
