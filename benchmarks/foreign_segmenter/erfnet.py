"""ERFNet (Romera, Alvarez, Bergasa, Arroyo: "ERFNet: Efficient Residual Factorized ConvNet for
Real-Time Semantic Segmentation", IEEE T-ITS 2018), written here from the paper's Table I.

Encoder: two downsampler blocks (a stride-2 3x3 convolution concatenated with a 2x2 max pool),
five non-bottleneck-1D blocks at 64 channels, a third downsampler, then twice the dilations
2, 4, 8, 16 at 128 channels. Decoder: transposed-convolution upsamplers with two
non-bottleneck-1D blocks each at 64 and 16 channels, and a final 2x2 transposed convolution to
full-resolution class scores. Its conventions are not ours: float NCHW input on 0..1 RGB
normalised by (x - 0.5) / 0.25 is what this module is trained with (stated on import).
"""

from __future__ import annotations

import torch
from torch import nn


class Downsampler(nn.Module):
    """Concat(3x3 stride-2 conv to ``out - in`` channels, 2x2 max pool), BN, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout - cin, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class NonBottleneck1D(nn.Module):
    """Two factorised (3x1, 1x3) convolution pairs, the second dilated, with a residual."""

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        c, d = channels, dilation
        self.conv1 = nn.Conv2d(c, c, (3, 1), padding=(1, 0))
        self.conv2 = nn.Conv2d(c, c, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(c, eps=1e-3)
        self.conv3 = nn.Conv2d(c, c, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv4 = nn.Conv2d(c, c, (1, 3), padding=(0, d), dilation=(1, d))
        self.bn2 = nn.BatchNorm2d(c, eps=1e-3)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv2(torch.relu(self.conv1(x)))))
        y = self.drop(self.bn2(self.conv4(torch.relu(self.conv3(y)))))
        return torch.relu(x + y)


class Upsampler(nn.Module):
    """3x3 stride-2 transposed convolution, BN, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class ERFNet(nn.Module):
    """float [N,3,H,W] (H, W multiples of 8) -> class scores [N,C,H,W]."""

    def __init__(self, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = [Downsampler(3, 16), Downsampler(16, 64)]
        layers += [NonBottleneck1D(64, 1, dropout / 10) for _ in range(5)]
        layers.append(Downsampler(64, 128))
        for _ in range(2):
            layers += [NonBottleneck1D(128, d, dropout) for d in (2, 4, 8, 16)]
        layers += [Upsampler(128, 64), NonBottleneck1D(64, 1, 0.0), NonBottleneck1D(64, 1, 0.0)]
        layers += [Upsampler(64, 16), NonBottleneck1D(16, 1, 0.0), NonBottleneck1D(16, 1, 0.0)]
        layers.append(nn.ConvTranspose2d(16, num_classes, 2, stride=2))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
