"""Depth adjustments a person asks for: invert, near/far levels, gamma, blur.

They apply before the conditioning rule. With none asked for the depth passes through untouched,
so the default path stays exactly the model's training rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lib_depth2img.errors import Depth2ImgError

# (low, high, step) of each adjustment: the accepted range, and the slider's
ADJUSTMENT_BOUNDS = {"near": (0.0, 1.0, 0.01), "far": (0.0, 1.0, 0.01), "gamma": (0.1, 5.0, 0.05),
                     "blur": (0.0, 10.0, 0.1)}


@dataclass(frozen=True)
class DepthAdjustments:
    invert: bool = False
    near: float = 1.0   # depth levels at or above this (0..1 of the map's range) become the nearest
    far: float = 0.0    # depth levels at or below this become the farthest
    gamma: float = 1.0  # above 1 pushes the middle distances away, below 1 pulls them near
    blur: float = 0.0   # Gaussian sigma, in percent of the map's shorter side

    def __post_init__(self):
        for name, (low, high, _) in ADJUSTMENT_BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:  # NaN fails this too
                raise Depth2ImgError(f"Depth-to-image setting '{name}' must be between {low:g} and {high:g}; "
                                     f"got {value}.")
        if not self.far < self.near:
            raise Depth2ImgError(f"Depth-to-image settings 'far' and 'near' need far < near; got far {self.far}, "
                                 f"near {self.near}.")

    @property
    def reshapes(self) -> bool:
        return (self.near, self.far, self.gamma, self.blur) != (1.0, 0.0, 1.0, 0.0)


def invert_depth(depth: torch.Tensor) -> torch.Tensor:
    """Near becomes far within each map's own range, so values stay in the range they had."""
    low = depth.amin(dim=(-2, -1), keepdim=True)
    high = depth.amax(dim=(-2, -1), keepdim=True)
    return low + high - depth


def _gaussian_blur(depth: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=depth.dtype, device=depth.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    height, width = depth.shape[-2:]
    # reflect padding must be shorter than the side; replicate covers what is left
    x = F.pad(depth, (min(radius, width - 1),) * 2 + (min(radius, height - 1),) * 2, mode="reflect")
    x = F.pad(x, (radius - min(radius, width - 1),) * 2 + (radius - min(radius, height - 1),) * 2, mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def adjust_depth(depth: torch.Tensor, adjustments: DepthAdjustments) -> torch.Tensor:
    """float ``[B,1,H,W]`` -> the same shape. Levels, gamma and blur work on each map scaled to [0, 1]."""
    if adjustments.invert:
        depth = invert_depth(depth)
    if not adjustments.reshapes:
        return depth
    low = depth.amin(dim=(-2, -1), keepdim=True)
    high = depth.amax(dim=(-2, -1), keepdim=True)
    d = torch.where(high > low, (depth - low) / (high - low).clamp_min(1e-12), torch.zeros_like(depth))
    d = ((d - adjustments.far) / (adjustments.near - adjustments.far)).clamp(0, 1)
    if adjustments.gamma != 1.0:
        d = d ** adjustments.gamma
    if adjustments.blur > 0:
        d = _gaussian_blur(d, adjustments.blur / 100 * min(d.shape[-2:]))
    return d
