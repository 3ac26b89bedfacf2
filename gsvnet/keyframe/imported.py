"""The stand-in keyframe net of a GSVNet whose keyframe net is a user's ONNX model (gsvnet/imported.py)."""

from __future__ import annotations

import torch

from .base import KeyframeNet
from .registry import register

NAME = "onnx"  # the keyframe_net of such a GSVNet (not offered by --keyframe-net: it comes from --keyframe-onnx)


class ImportedKeyframe(KeyframeNet):
    """Stand-in for an imported keyframe net inside a GSVNet: no parameters; its scores come from
    the engines folder's keyframe graph (``runtime`` runs that graph on every backend)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this GSVNet's keyframe net is an imported ONNX model: run the engines folder's "
                           "keyframe graph (keyframe.onnx) for its scores")


@register(NAME)
def imported_keyframe(num_classes: int, **_: object) -> ImportedKeyframe:
    return ImportedKeyframe(num_classes)
