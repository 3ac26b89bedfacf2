"""The propagation networks of GSVNet, all working on the 1/8 grid.

Structure and parameter names follow the official implementation (github robert80203/GSVNet)
where the paper is silent; ``gsvnet.official`` maps its checkpoints onto these modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1, k: int = 3, act: nn.Module | None = None) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation),
        nn.BatchNorm2d(cout),
        act if act is not None else nn.ReLU(),
    )


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.1)


class FlowNet(nn.Module):
    """Light optical flow from two 1/8-resolution frames.

    Two stride-2 convs, then a hierarchical feature fusion block (dilations 1, 2, 4, 8 whose
    outputs are summed cumulatively and merged by a 1x1 conv, with a residual), a 3x3 conv to
    2 channels at 1/4 of the input grid, and a bilinear upsample back to the input grid.

    forward(current [N,3,h,w], previous [N,3,h,w]) -> flow [N,2,h,w], backward motion
    (current -> previous) in pixels of the 1/8 grid, channel 0 = x, 1 = y.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c2 = 2 * channels
        self.conv1 = _conv_bn(6, channels, stride=2, act=_leaky())
        self.conv2 = _conv_bn(channels, c2, stride=2, act=_leaky())
        self.conv_dilate_1 = _conv_bn(c2, c2, dilation=1, act=_leaky())
        self.conv_dilate_2 = _conv_bn(c2, c2, dilation=2, act=_leaky())
        self.conv_dilate_3 = _conv_bn(c2, c2, dilation=4, act=_leaky())
        self.conv_dilate_4 = _conv_bn(c2, c2, dilation=8, act=_leaky())
        self.conv_merge = _conv_bn(4 * c2, c2, k=1, act=_leaky())
        self.toflow = nn.Conv2d(c2, 2, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        # start from zero motion: the warp is then the identity
        nn.init.zeros_(self.toflow.weight)

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        size = current.shape[-2:]
        x = self.conv2(self.conv1(torch.cat((current, previous), dim=1)))
        x1 = self.conv_dilate_1(x)
        x2 = self.conv_dilate_2(x) + x1
        x3 = self.conv_dilate_3(x) + x2
        x4 = self.conv_dilate_4(x) + x3
        x = self.conv_merge(torch.cat((x1, x2, x3, x4), dim=1)) + x
        flow = self.toflow(x)
        return F.interpolate(flow, size=size, mode="bilinear", align_corners=True)


class IntraNet(nn.Module):
    """Three 3x3 convs without resolution change: current 1/8 frame [N,3,h,w] -> scores [N,C,h,w]."""

    def __init__(self, num_classes: int, channels: int = 32) -> None:
        super().__init__()
        self.intra_net = nn.Sequential(
            nn.Conv2d(3, channels, 3, 1, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, num_classes, 3, 1, 1),
        )

    def forward(self, small: torch.Tensor) -> torch.Tensor:
        return self.intra_net(small)


class _ResizeTo(nn.Module):
    """Parameter-free bilinear (align_corners=True) resize to a size given at call time."""

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class GuidingNet(nn.Module):
    """Per-pixel kernel weights from the intra scores and the edge map of the warped scores.

    forward(intra [N,C,h,w], edge [N,1,h,w]) -> weights [N,K+2,h,w] >= 0 (ReLU output; the
    chunk filter normalises them; channels: K shifts, intra, null). A small U-shape: 3x3 conv, two stride-2 convs, two
    upsample+conv steps back to the input grid (any h, w), a residual, a 3x3 output conv.
    """

    def __init__(self, num_classes: int, num_weights: int, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.guide_conv = _conv_bn(num_classes + 1, c)
        self.guide_conv_feat = nn.Sequential(*_conv_bn(c, 2 * c, stride=2), *_conv_bn(2 * c, 4 * c, stride=2))
        self.guide_deconv = nn.Sequential(_ResizeTo(), *_conv_bn(4 * c, 2 * c), _ResizeTo(), *_conv_bn(2 * c, c))
        self.guide_decoder = _conv_bn(c, num_weights)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
        # a positive start keeps every candidate alive (all-zero weights give zero output)
        nn.init.constant_(self.guide_decoder[1].bias, 1.0)

    def forward(self, intra: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        feat = self.guide_conv(torch.cat((intra, edge.to(intra.dtype)), dim=1))
        sizes = [feat.shape[-2:]]
        x = feat
        for i, m in enumerate(self.guide_conv_feat):
            x = m(x)
            if i == 2:  # after the first stride-2 unit
                sizes.append(x.shape[-2:])
        targets = iter((sizes[1], sizes[0]))
        for m in self.guide_deconv:
            x = m(x, next(targets)) if isinstance(m, _ResizeTo) else m(x)
        return self.guide_decoder(feat + x)
