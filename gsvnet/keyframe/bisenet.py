"""BiSeNet-R18 (Yu et al., ECCV 2018): spatial path + ResNet-18 context path with attention
refinement (ARM) and feature fusion (FFM). Parameter names follow the official GSVNet/TorchSeg
code so its checkpoints map 1:1."""

from __future__ import annotations

import torch
from torch import nn

from .base import IMAGENET, KeyframeNet, Normalization
from .registry import register
from .resnet import ResNet18Encoder, resize_to


class ConvBnRelu(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, bn: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class GlobalPool(nn.Module):
    """Mean over H and W, keeping dims ([N,C,1,1]); exports as ReduceMean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class SpatialPath(nn.Module):
    def __init__(self, out: int = 128) -> None:
        super().__init__()
        self.conv_7x7 = ConvBnRelu(3, 64, 7, 2)
        self.conv_3x3_1 = ConvBnRelu(64, 64, 3, 2)
        self.conv_3x3_2 = ConvBnRelu(64, 64, 3, 2)
        self.conv_1x1 = ConvBnRelu(64, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.conv_3x3_2(self.conv_3x3_1(self.conv_7x7(x))))


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_3x3 = ConvBnRelu(cin, cout, 3)
        self.channel_attention = nn.Sequential(GlobalPool(), ConvBnRelu(cout, cout, 1, relu=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fm = self.conv_3x3(x)
        return fm * self.channel_attention(fm)


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int, reduction: int = 1) -> None:
        super().__init__()
        self.conv_1x1 = ConvBnRelu(cin, cout, 1)
        self.channel_attention = nn.Sequential(
            GlobalPool(),
            ConvBnRelu(cout, cout // reduction, 1, bn=False),
            ConvBnRelu(cout // reduction, cout, 1, bn=False, relu=False),
            nn.Sigmoid(),
        )

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        fm = self.conv_1x1(torch.cat([spatial, context], dim=1))
        return fm + fm * self.channel_attention(fm)


class Head(nn.Module):
    def __init__(self, cin: int, mid: int, num_classes: int) -> None:
        super().__init__()
        self.conv_3x3 = ConvBnRelu(cin, mid, 3)
        self.conv_1x1 = nn.Conv2d(mid, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.conv_3x3(x))


class BiSeNetR18(KeyframeNet):
    """forward: normalised [N,3,H,W] -> logits [N,C,~H/8,~W/8]."""

    output_stride = 8

    def __init__(self, num_classes: int = 19, normalization: Normalization = IMAGENET) -> None:
        super().__init__(num_classes)
        self.normalization = normalization
        ch = 128
        self.context_path = ResNet18Encoder()
        self.spatial_path = SpatialPath(ch)
        self.global_context = nn.Sequential(GlobalPool(), ConvBnRelu(512, ch, 1))
        self.arms = nn.ModuleList([AttentionRefinement(512, ch), AttentionRefinement(256, ch)])
        self.refines = nn.ModuleList([ConvBnRelu(ch, ch, 3), ConvBnRelu(ch, ch, 3)])
        self.ffm = FeatureFusion(2 * ch, 2 * ch, reduction=1)
        # heads[0], heads[1]: auxiliary (1/16 and 1/8 context), heads[2]: the output head
        self.heads = nn.ModuleList([Head(ch, 256, num_classes), Head(ch, 256, num_classes), Head(2 * ch, 64, num_classes)])

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spatial = self.spatial_path(x)
        c1, c2, c3, c4 = self.context_path.encode(x)
        last = self.global_context(c4)  # [N,128,1,1], broadcast over c4's grid
        refined = []
        for fm, target, arm, refine in zip((c4, c3), (c3, c2), self.arms, self.refines):
            last = refine(resize_to(arm(fm) + last, target.shape[-2:], align_corners=True))
            refined.append(last)
        context = resize_to(last, spatial.shape[-2:], align_corners=True)
        return self.ffm(spatial, context), refined

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused, _ = self._features(x)
        return self.heads[2](fused)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fused, refined = self._features(x)
        return self.heads[2](fused), [self.heads[0](refined[0]), self.heads[1](refined[1])]


@register("bisenet_r18")
def bisenet_r18(num_classes: int = 19, **kwargs) -> BiSeNetR18:
    return BiSeNetR18(num_classes=num_classes, **kwargs)
