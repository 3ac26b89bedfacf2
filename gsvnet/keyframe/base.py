"""What every keyframe (image segmentation) network provides."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Normalization:
    """Input normalisation: x = (rgb - mean) / std, with rgb in 0..255, channel order RGB."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def tensors(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.mean, dtype=torch.float32, device=device),
                torch.tensor(self.std, dtype=torch.float32, device=device))

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "range": "0..255", "order": "RGB"}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


#: ImageNet statistics in 0..255 units, RGB.
IMAGENET = Normalization(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


class KeyframeNet(nn.Module):
    """An image segmentation network used on keyframes.

    forward(x [N,3,H,W] normalised) -> logits [N,num_classes,~H/s,~W/s] where s is
    ``output_stride``; callers resize the logits to the size they need.
    ``forward_train`` additionally returns auxiliary logits for deep supervision (may be empty).
    """

    #: set by subclasses
    output_stride: int = 1
    normalization: Normalization = IMAGENET

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.forward(x), []
