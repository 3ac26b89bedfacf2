"""A user's own segmentation model as the keyframe net: what it expects and returns
(``KeyframeImport``), and the PyTorch definition of the steps around it in the keyframe graph:

    uint8 frame [N,H,W,3] -> ``ImportedInput`` (normalise, resize to the model's input size, channel
    order and layout) -> the user's ONNX model -> ``ImportedOutput`` (probabilities to log scores,
    resize to the 1/8 grid) -> scores [N,C,h,w]

The model itself runs only as ONNX (``export.keyframe_import`` joins the three into one graph);
in a GSVNet it is the parameter-free ``gsvnet.keyframe.imported.ImportedKeyframe`` stand-in, whose
scores come from that graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import ops

#: ImageNet statistics on 0..1 RGB, what most exported segmenters expect
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class KeyframeImport:
    """How to feed the user's model and read its output (recorded in the manifest's model config)."""

    source: str  # the file imported
    sha256: str
    input_name: str
    output_name: str
    input_size: tuple[int, int]  # (H, W) the model takes
    layout: str  # "NCHW" or "NHWC"
    num_classes: int
    mean: tuple[float, float, float]  # on 0..1 values, in the model's channel order's RGB terms
    std: tuple[float, float, float]
    bgr: bool
    output: str  # "logits" or "probabilities" (probabilities are turned into log scores)
    output_size: tuple[int, int]  # (h, w) of the model's scores
    opset: int  # of the user's graph as imported

    @property
    def output_stride(self) -> float:
        return self.input_size[0] / self.output_size[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_stride"] = self.output_stride
        return d

    @classmethod
    def from_dict(cls, d: dict) -> KeyframeImport:
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for name in ("input_size", "output_size", "mean", "std"):
            fields[name] = tuple(fields[name])
        return cls(**fields)


class ImportedInput(nn.Module):
    """uint8 RGB frames [N,H,W,3] -> the model's input: (x / 255 - mean) / std, bilinear resize to
    ``input_size`` (half-pixel centres), RGB or BGR, NCHW or NHWC, float32."""

    def __init__(self, spec: KeyframeImport) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("mean", 255.0 * torch.tensor(spec.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", 255.0 * torch.tensor(spec.std, dtype=torch.float32), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = ops.resize(ops.normalize(image, self.mean, self.std), self.spec.input_size)
        if self.spec.bgr:
            x = torch.flip(x, dims=[1])
        return x.permute(0, 2, 3, 1) if self.spec.layout == "NHWC" else x


class ImportedOutput(nn.Module):
    """The model's scores [N,C,h',w'] -> scores on the 1/8 grid [N,C,h,w] (bilinear, half-pixel);
    probabilities become log probabilities, so warping and fusing see scores like logits."""

    def __init__(self, spec: KeyframeImport, grid: tuple[int, int]) -> None:
        super().__init__()
        self.spec, self.grid = spec, tuple(grid)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        if self.spec.output == "probabilities":
            scores = torch.log(scores.clamp_min(1e-6))
        return ops.resize(scores, self.grid)
