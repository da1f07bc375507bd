"""EfficientNet-Lite3, the backbone of MiDaS v2.1 small, with gen-efficientnet's parameter names.

TensorFlow-ported weights: BatchNorm eps 1e-3, ReLU6, and TF "same" padding (the extra pixel at
the end) for strided convolutions. Grouped as MiDaS groups it: ``layer1``..``layer4`` at strides
4, 8, 16 and 32 with 32, 48, 136 and 384 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.estimators.resnetv2 import pad_same

BN_EPS = 1e-3


class ConvSame(nn.Conv2d):
    """Bias-free convolution; strided ones pad like TensorFlow's "same", others symmetrically."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False,
                         padding=0 if stride > 1 else kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_dw = ConvSame(in_channels, in_channels, 3, groups=in_channels)
        self.bn1 = _bn(in_channels)
        self.conv_pw = ConvSame(in_channels, out_channels, 1)
        self.bn2 = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__()
        mid = in_channels * 6
        self.conv_pw = ConvSame(in_channels, mid, 1)
        self.bn1 = _bn(mid)
        self.conv_dw = ConvSame(mid, mid, kernel, stride=stride, groups=mid)
        self.bn2 = _bn(mid)
        self.conv_pwl = ConvSame(mid, out_channels, 1)
        self.bn3 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.residual else y


def _stage(in_channels: int, out_channels: int, kernel: int, stride: int, repeats: int) -> nn.Sequential:
    return nn.Sequential(*[InvertedResidual(in_channels if i == 0 else out_channels, out_channels, kernel,
                                            stride if i == 0 else 1) for i in range(repeats)])


class EfficientNetLite3(nn.Module):
    def __init__(self):
        super().__init__()
        # (channels, kernel, stride, repeats) of each inverted-residual stage, as Lite3 scales them
        self.layer1 = nn.Sequential(ConvSame(3, 32, 3, stride=2), _bn(32), nn.ReLU6(),
                                    nn.Sequential(DepthwiseSeparable(32, 24)), _stage(24, 32, 3, 2, 3))
        self.layer2 = nn.Sequential(_stage(32, 48, 5, 2, 3))
        self.layer3 = nn.Sequential(_stage(48, 96, 3, 2, 5), _stage(96, 136, 5, 1, 5))
        self.layer4 = nn.Sequential(_stage(136, 232, 5, 2, 6), _stage(232, 384, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features
