"""MiDaS v3 DPT (Dense Prediction Transformer) depth models in plain torch.

Submodule names mirror the MiDaS release code (``pretrained.*`` for the ViT encoder
and its reassemble layers, ``scratch.*`` for the fusion decoder) so the official
``dpt_hybrid-midas-501f0c75.pt`` / ``dpt_large-midas-2f21e586.pt`` files, and the
``depth_model.model.`` slice of an SD2 depth checkpoint, load strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.estimators.memory_format import match_memory_format
from lib_depth2img.estimators.vit import PATCH, VisionTransformer


@dataclass(frozen=True)
class DPTConfig:
    vit_dim: int
    depth: int
    heads: int
    hybrid: bool
    taps: tuple[int, ...]              # ViT blocks whose tokens become feature maps
    features: tuple[int, int, int, int]  # channels of the four maps entering the decoder


DPT_HYBRID = DPTConfig(vit_dim=768, depth=12, heads=12, hybrid=True, taps=(8, 11), features=(256, 512, 768, 768))
DPT_LARGE = DPTConfig(vit_dim=1024, depth=24, heads=16, hybrid=False, taps=(5, 11, 17, 23),
                      features=(256, 512, 1024, 1024))


class ProjectReadout(nn.Module):
    """Folds the class token into every patch token, by a learned projection."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        readout = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat([patches, readout], dim=-1))


class Reassemble(nn.Module):
    """Tokens -> a feature map at the target stride. Children are named "0", "3", "4" as in the release files."""

    def __init__(self, vit_dim: int, channels: int, resample: nn.Module | None):
        super().__init__()
        self.add_module("0", ProjectReadout(vit_dim))
        self.add_module("3", nn.Conv2d(vit_dim, channels, 1))
        if resample is not None:
            self.add_module("4", resample)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self._modules["0"](tokens).transpose(1, 2).unflatten(2, grid)
        x = self._modules["3"](x)
        return self._modules["4"](x) if "4" in self._modules else x


class DPTEncoder(nn.Module):
    def __init__(self, config: DPTConfig):
        super().__init__()
        self.config = config
        self.model = VisionTransformer(config.vit_dim, config.depth, config.heads, config.hybrid)
        f, dim = config.features, config.vit_dim
        resamples = {
            1: nn.ConvTranspose2d(f[0], f[0], 4, stride=4),
            2: nn.ConvTranspose2d(f[1], f[1], 2, stride=2),
            3: None,
            4: nn.Conv2d(f[3], f[3], 3, stride=2, padding=1),
        }
        # The hybrid takes its first two maps from the ResNet, so only levels 3 and 4 reassemble tokens.
        levels = (3, 4) if config.hybrid else (1, 2, 3, 4)
        for level in levels:
            self.add_module(f"act_postprocess{level}", Reassemble(dim, f[level - 1], resamples[level]))
        self.levels = levels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid = (x.shape[-2] // PATCH, x.shape[-1] // PATCH)
        early, tapped = self.model(x, self.config.taps)
        reassembled = [self._modules[f"act_postprocess{level}"](tokens, grid)
                       for level, tokens in zip(self.levels, tapped, strict=True)]
        return early + reassembled


class ResidualConvUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place only on the maps made here: fewer large allocations (and page faults) per forward.
        return self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True)).add_(x)


class FeatureFusionBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, out_channels or channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """Fuses ``skip`` in, then upsamples to ``size`` (default twice the size)."""
        if skip is not None:
            x = self.resConfUnit1(skip).add_(x)
        x = self.resConfUnit2(x)
        size = size or (x.shape[-2] * 2, x.shape[-1] * 2)
        # The release code resizes, then convolves. A 1x1 convolution and a bilinear resize commute (each
        # output pixel of the resize is a weighted mean of input pixels, the weights summing to one), so the
        # convolution runs on the smaller map: a quarter of the work, the same numbers up to rounding.
        return F.interpolate(self.out_conv(x), size=size, mode="bilinear", align_corners=True)


class DepthHead(nn.Sequential):
    def __init__(self, channels: int):
        super().__init__(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(),  # non_negative: inverse depth is never below zero
        )


class Decoder(nn.Module):
    def __init__(self, features: tuple[int, int, int, int], channels: int = 256):
        super().__init__()
        for level, in_channels in enumerate(features, start=1):
            self.add_module(f"layer{level}_rn", nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
            self.add_module(f"refinenet{level}", FeatureFusionBlock(channels))
        self.output_conv = DepthHead(channels)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        rn = [self._modules[f"layer{level}_rn"](x) for level, x in enumerate(maps, start=1)]
        path = self._modules["refinenet4"](rn[3])
        for level in (3, 2, 1):
            path = self._modules[f"refinenet{level}"](path, rn[level - 1])
        return self.output_conv(path)


class DPTDepthModel(nn.Module):
    """Normalised RGB ``[B,3,h,w]`` (sides multiples of 32) -> relative inverse depth ``[B,h,w]``."""

    def __init__(self, config: DPTConfig):
        super().__init__()
        self.pretrained = DPTEncoder(config)
        self.scratch = Decoder(config.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = match_memory_format(self, x)
        return self.scratch(self.pretrained(x)).squeeze(1)
