"""Depth Anything V2 (Small, Base, Large) in plain torch, with the official checkpoints' key layout.

DINOv2 (patch 14, layer scale) feeds a DPT head. Module names follow the official
``depth_anything_v2/dpt.py`` and ``dinov2.py`` so ``depth_anything_v2_vit{s,b,l}.pth`` load
strictly. Output: relative inverse depth ``[B,h,w]``, like MiDaS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.estimators.dpt import FeatureFusionBlock
from lib_depth2img.estimators.vit import Block

PATCH = 14


@dataclass(frozen=True)
class DepthAnythingConfig:
    dim: int
    depth: int
    heads: int
    taps: tuple[int, ...]
    features: int
    out_channels: tuple[int, int, int, int]


VITS = DepthAnythingConfig(384, 12, 6, (2, 5, 8, 11), 64, (48, 96, 192, 384))
VITB = DepthAnythingConfig(768, 12, 12, (2, 5, 8, 11), 128, (96, 192, 384, 768))
VITL = DepthAnythingConfig(1024, 24, 16, (4, 11, 17, 23), 256, (256, 512, 1024, 1024))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DINOv2(nn.Module):
    def __init__(self, config: DepthAnythingConfig, trained_grid: int = 37):
        super().__init__()
        self.patch_embed = PatchEmbed(config.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + trained_grid**2, config.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, config.dim))  # training only; kept so files load strictly
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, layer_scale=True) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.trained_grid = trained_grid

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        if (grid_h, grid_w) == (self.trained_grid, self.trained_grid):
            return self.pos_embed
        pos = self.pos_embed.float()
        side = self.trained_grid
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        # DINOv2 resizes by scale factor, with 0.1 added against rounding down; the factor, not the
        # output size, sets where samples fall, so it must be passed as DINOv2 passes it.
        scale = ((grid_h + 0.1) / math.sqrt(side**2), (grid_w + 0.1) / math.sqrt(side**2))
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([pos[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """Normalised patch tokens after each tapped block."""
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(grid_h, grid_w)
        tapped = []
        for index, block in enumerate(self.blocks[: max(taps) + 1]):
            tokens = block(tokens)
            if index in taps:
                tapped.append(self.norm(tokens)[:, 1:])
        return tapped


class HeadScratch(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], features: int):
        super().__init__()
        for level, channels in enumerate(in_channels, start=1):
            self.add_module(f"layer{level}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
            self.add_module(f"refinenet{level}", FeatureFusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(),
                                          nn.Conv2d(32, 1, 1), nn.ReLU(), nn.Identity())


class DPTHead(nn.Module):
    def __init__(self, config: DepthAnythingConfig):
        super().__init__()
        c = config.out_channels
        self.projects = nn.ModuleList(nn.Conv2d(config.dim, channels, 1) for channels in c)
        self.resize_layers = nn.ModuleList([nn.ConvTranspose2d(c[0], c[0], 4, stride=4),
                                            nn.ConvTranspose2d(c[1], c[1], 2, stride=2), nn.Identity(),
                                            nn.Conv2d(c[3], c[3], 3, stride=2, padding=1)])
        self.scratch = HeadScratch(c, config.features)

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int) -> torch.Tensor:
        maps = []
        for project, resize, x in zip(self.projects, self.resize_layers, tokens, strict=True):
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], grid_h, grid_w)
            maps.append(resize(project(x)))
        s = self.scratch
        rn = [s.layer1_rn(maps[0]), s.layer2_rn(maps[1]), s.layer3_rn(maps[2]), s.layer4_rn(maps[3])]
        path = s.refinenet4(rn[3], size=rn[2].shape[-2:])
        path = s.refinenet3(path, rn[2], size=rn[1].shape[-2:])
        path = s.refinenet2(path, rn[1], size=rn[0].shape[-2:])
        path = s.refinenet1(path, rn[0])
        out = F.interpolate(s.output_conv1(path), (grid_h * PATCH, grid_w * PATCH), mode="bilinear",
                            align_corners=True)
        return s.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """ImageNet-normalised RGB ``[B,3,h,w]`` (sides multiples of 14) -> relative inverse depth ``[B,h,w]``."""

    def __init__(self, config: DepthAnythingConfig):
        super().__init__()
        self.config = config
        self.pretrained = DINOv2(config)
        self.depth_head = DPTHead(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        depth = self.depth_head(self.pretrained(x, self.config.taps), grid_h, grid_w)
        return F.relu(depth).squeeze(1)
