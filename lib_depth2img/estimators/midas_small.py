"""MiDaS v2.1 small (``midas_v21_small-70d6b9c8.pt``) in plain torch, with the release file's key layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.estimators.dpt import FeatureFusionBlock
from lib_depth2img.estimators.efficientnet_lite import EfficientNetLite3
from lib_depth2img.estimators.memory_format import match_memory_format


class Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class SmallDecoder(nn.Module):
    def __init__(self, features: int = 64):
        super().__init__()
        widths = (features, features * 2, features * 4, features * 8)  # MiDaS "expand" blocks
        for level, (in_channels, width) in enumerate(zip((32, 48, 136, 384), widths, strict=True), start=1):
            self.add_module(f"layer{level}_rn", nn.Conv2d(in_channels, width, 3, padding=1, bias=False))
            self.add_module(f"refinenet{level}", FeatureFusionBlock(width, width // 2 if level > 1 else width))
        self.output_conv = nn.Sequential(nn.Conv2d(features, features // 2, 3, padding=1), Upsample(),
                                         nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(32, 1, 1), nn.ReLU(), nn.Identity())

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        rn = [self._modules[f"layer{level}_rn"](x) for level, x in enumerate(maps, start=1)]
        path = self.refinenet4(rn[3])
        for level in (3, 2, 1):
            path = self._modules[f"refinenet{level}"](path, rn[level - 1])
        return self.output_conv(path)


class MidasSmall(nn.Module):
    """ImageNet-normalised RGB ``[B,3,h,w]`` (sides multiples of 32) -> relative inverse depth ``[B,h,w]``."""

    def __init__(self):
        super().__init__()
        self.pretrained = EfficientNetLite3()
        self.scratch = SmallDecoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = match_memory_format(self, x)
        return self.scratch(self.pretrained(x)).squeeze(1)
