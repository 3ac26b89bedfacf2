"""SwiftNet-R18 (Orsic et al., CVPR 2019): ResNet-18, spatial pyramid pooling, ladder upsampling.

Parameter names follow the official SwiftNet/GSVNet code so its checkpoints map 1:1.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import KeyframeNet, Normalization
from .registry import register
from .resnet import ResNet18Encoder, adaptive_avg_pool, resize_to

#: Cityscapes statistics used by the official SwiftNet (0..255, RGB).
CITYSCAPES_NORMALIZATION = Normalization(mean=(73.15, 82.90, 72.30), std=(47.67, 48.49, 47.73))


class BNReluConv(nn.Sequential):
    """BatchNorm -> ReLU -> Conv (SwiftNet's pre-activation unit)."""

    def __init__(self, cin: int, cout: int, k: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=False))
        self.add_module("conv", nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias))


class SpatialPyramidPooling(nn.Module):
    """Bottleneck, pooled levels on grids of ``grids`` rows (aspect-ratio aware), fuse."""

    def __init__(self, cin: int, bottleneck: int = 128, levels: int = 3, out: int = 128,
                 grids: tuple[int, ...] = (8, 4, 2)) -> None:
        super().__init__()
        level_size = bottleneck // levels
        self.grids = grids[:levels]
        self.spp = nn.Sequential()
        self.spp.add_module("spp_bn", BNReluConv(cin, bottleneck, k=1))
        for i in range(levels):
            self.spp.add_module(f"spp{i}", BNReluConv(bottleneck, level_size, k=1))
        self.spp.add_module("spp_fuse", BNReluConv(bottleneck + levels * level_size, out, k=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        aspect = size[1] / size[0]
        x = self.spp[0](x)
        levels = [x]
        for i, g in enumerate(self.grids):
            pooled = adaptive_avg_pool(x, (g, max(1, round(aspect * g))))
            levels.append(resize_to(self.spp[i + 1](pooled), size))
        return self.spp[-1](torch.cat(levels, dim=1))


class Upsample(nn.Module):
    """Ladder step: project the skip, upsample the coarse path onto it, add, blend with a 3x3."""

    def __init__(self, channels: int, skip_channels: int) -> None:
        super().__init__()
        self.bottleneck = BNReluConv(skip_channels, channels, k=1)
        self.blend_conv = BNReluConv(channels, channels, k=3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        skip = self.bottleneck(skip)
        return self.blend_conv(resize_to(x, skip.shape[-2:]) + skip)


class SwiftNetBackbone(ResNet18Encoder):
    def __init__(self, features: int = 128) -> None:
        super().__init__()
        self.spp = SpatialPyramidPooling(512, bottleneck=features, out=features)
        self.upsample = nn.ModuleList([Upsample(features, c) for c in (256, 128, 64)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1, s2, s3, s4 = self.encode(x)
        x = self.spp(s4)
        for skip, up in zip((s3, s2, s1), self.upsample):
            x = up(x, skip)
        return x


class SwiftNetR18(KeyframeNet):
    """forward: normalised [N,3,H,W] -> logits [N,C,~H/4,~W/4]."""

    output_stride = 4

    def __init__(self, num_classes: int = 19, normalization: Normalization = CITYSCAPES_NORMALIZATION) -> None:
        super().__init__(num_classes)
        self.normalization = normalization
        self.backbone = SwiftNetBackbone(128)
        self.logits = BNReluConv(128, num_classes, k=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.backbone(x))


@register("swiftnet_r18")
def swiftnet_r18(num_classes: int = 19, **kwargs) -> SwiftNetR18:
    return SwiftNetR18(num_classes=num_classes, **kwargs)
