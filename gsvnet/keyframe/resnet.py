"""ResNet-18 encoder shared by the keyframe networks (parameter names as in torchvision)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pooling_matrix(in_size: int, out_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[out_size, in_size] averaging matrix with PyTorch's adaptive-pooling bins."""
    m = torch.zeros(out_size, in_size, dtype=dtype, device=device)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)  # ceil
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Same result as ``F.adaptive_avg_pool2d`` but as two matmuls with constant matrices.

    Exports to ONNX (and TensorRT) for any input/output sizes, where adaptive pooling with
    sizes that do not divide each other has no ONNX equivalent.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    ph = pooling_matrix(h, size[0], x.dtype, x.device)
    pw = pooling_matrix(w, size[1], x.dtype, x.device)
    return torch.matmul(torch.matmul(ph, x), pw.t())


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of x to ``size`` (a no-op when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; returns the sum before the final ReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + identity


class ResNet18Encoder(nn.Module):
    """ResNet-18 stem and four stages (strides 4, 8, 16, 32)."""

    stage_channels = (64, 128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, planes in enumerate(self.stage_channels):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of each residual branch: each block starts as identity,
        # which trains faster from scratch
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage outputs after each stage's last ReLU. (The official SwiftNet code returns
        (relu, out) from its blocks, but its in-place ReLU makes ``out`` the activated tensor
        too, so its skips are post-activation; checked against its modules by
        ``python -m gsvnet.official_parity``.)"""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for stage in self.stages():
            for block in stage:
                x = F.relu(block(x))
            feats.append(x)
        return feats
